//! A whole [`Db::batch`](crate::db::Db::batch) as ONE `spin:sqlite` `execute` call, for a
//! runner that says it understands it (our `cyfr up` runner sets the Spin variable
//! `sqlite_batch`; Spin itself does not, and the router then loops statement by statement).
//! One host call and one hold of the database instead of one per statement, and a loose
//! batch becomes one commit — Spin's SQLite interface itself is unchanged.
//!
//! Request: the statement [`PREFIX`] + `atomic`|`loose`; its parameters, per statement, the
//! SQL as text, the parameter count, then the parameters. Answer: one result whose rows are,
//! per statement, a header `[column count, row count, column names…]` and then its rows.

use crate::db::{Rows, Stmt, Value};

/// How a batch statement starts (an SQL comment: on a runner that does not know it, it is
/// no statement at all).
pub const PREFIX: &str = "-- cyfr:batch ";

/// `stmts` as one statement and its parameters.
pub fn encode(stmts: &[Stmt], atomic: bool) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    for s in stmts {
        params.push(Value::Text(s.sql.to_string()));
        params.push(Value::Integer(s.params.len() as i64));
        params.extend(s.params.iter().cloned());
    }
    let mode = if atomic { "atomic" } else { "loose" };
    (format!("{PREFIX}{mode}"), params)
}

/// A decoded batch: each statement's SQL and parameters, and whether it is atomic.
pub type Batch = (Vec<(String, Vec<Value>)>, bool);

/// The statements and atomicity of a batch statement; `None` when `sql` is not one, an
/// error when it is one but malformed.
pub fn decode(sql: &str, params: Vec<Value>) -> Option<Result<Batch, String>> {
    let mode = sql.strip_prefix(PREFIX)?;
    let atomic = match mode.trim() {
        "atomic" => true,
        "loose" => false,
        other => return Some(Err(format!("unknown batch mode `{other}`"))),
    };
    let mut it = params.into_iter();
    let mut out = Vec::new();
    while let Some(sql) = it.next() {
        let (Value::Text(sql), Some(Value::Integer(n))) = (sql, it.next()) else {
            return Some(Err(
                "malformed batch: expected SQL text and a parameter count".into(),
            ));
        };
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let ps: Vec<Value> = it.by_ref().take(n).collect();
        if ps.len() != n {
            return Some(Err("malformed batch: too few parameters".into()));
        }
        out.push((sql, ps));
    }
    Some(Ok((out, atomic)))
}

/// Each statement's result as the one result of the batch statement.
pub fn encode_results(results: Vec<Rows>) -> Rows {
    let mut rows = Vec::new();
    for r in results {
        let mut header = vec![
            Value::Integer(r.columns.len() as i64),
            Value::Integer(r.rows.len() as i64),
        ];
        header.extend(r.columns.into_iter().map(Value::Text));
        rows.push(header);
        rows.extend(r.rows);
    }
    Rows {
        columns: vec!["cyfr:batch".into()],
        rows,
    }
}

/// The per-statement results inside a batch statement's result.
pub fn decode_results(all: Rows) -> Result<Vec<Rows>, String> {
    if all.columns != ["cyfr:batch"] {
        return Err("the database did not answer the batch as a batch".into());
    }
    let mut it = all.rows.into_iter();
    let mut out = Vec::new();
    while let Some(header) = it.next() {
        let mut h = header.into_iter();
        let (Some(Value::Integer(ncols)), Some(Value::Integer(nrows))) = (h.next(), h.next())
        else {
            return Err("malformed batch answer".into());
        };
        let columns: Vec<String> = h
            .map(|v| match v {
                Value::Text(s) => Ok(s),
                _ => Err("malformed batch answer: a column name is not text".to_string()),
            })
            .collect::<Result<_, _>>()?;
        if columns.len() as i64 != ncols {
            return Err("malformed batch answer: column count".into());
        }
        let rows: Vec<Vec<Value>> = it.by_ref().take(nrows.max(0) as usize).collect();
        if rows.len() as i64 != nrows {
            return Err("malformed batch answer: row count".into());
        }
        out.push(Rows { columns, rows });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_and_its_results_survive_the_round_trip() {
        let stmts = vec![
            Stmt::new("SELECT ?", vec![Value::Blob(vec![0, 1])]),
            Stmt::new(
                "UPDATE t SET a = ? WHERE b = ?",
                vec![Value::Null, "x".into()],
            ),
            Stmt::new("SELECT 1", vec![]),
        ];
        let (sql, params) = encode(&stmts, false);
        let (back, atomic) = decode(&sql, params).unwrap().unwrap();
        assert!(!atomic);
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].0, "UPDATE t SET a = ? WHERE b = ?");
        assert_eq!(back[1].1, vec![Value::Null, Value::Text("x".into())]);
        assert!(back[2].1.is_empty());
        let results = vec![
            Rows {
                columns: vec!["a".into(), "b".into()],
                rows: vec![vec![Value::Integer(1), Value::Null]; 2],
            },
            Rows::default(),
        ];
        let got = decode_results(encode_results(results.clone())).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].columns, results[0].columns);
        assert_eq!(got[0].rows, results[0].rows);
        assert!(got[1].rows.is_empty() && got[1].columns.is_empty());
    }

    #[test]
    fn plain_sql_is_no_batch_and_a_short_batch_is_refused() {
        assert!(decode("SELECT 1", vec![]).is_none());
        let r = decode(
            &format!("{PREFIX}loose"),
            vec![
                Value::Text("SELECT ?".into()),
                Value::Integer(2),
                Value::Null,
            ],
        );
        assert!(matches!(r, Some(Err(_))));
        assert!(decode_results(Rows {
            columns: vec!["x".into()],
            rows: vec![]
        })
        .is_err());
    }
}
