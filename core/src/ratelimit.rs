//! Rate limiting as GCRA, with its state in the database so it holds across router
//! instances: one statement per check.

use crate::db::{Db, Stmt, Value};
use crate::errors::{Code, Error, Result};
use crate::units::Rate;

/// A rate's GCRA parameters in microseconds, so that e.g. 7 requests per second keep an
/// exact interval: the emission interval and the window (the burst tolerance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// Microseconds between requests at the sustained pace.
    pub interval_us: i64,
    /// Microseconds the theoretical arrival time may run ahead of now.
    pub window_us: i64,
}

impl From<Rate> for Gcra {
    fn from(rate: Rate) -> Gcra {
        let window_us = (rate.window_ms as i64).saturating_mul(1000);
        Gcra {
            interval_us: (window_us / rate.requests as i64).max(1),
            window_us,
        }
    }
}

/// The statement that takes one request from `bucket`: it returns a row when the request is
/// allowed. The upsert's WHERE leaves the row alone (and RETURNING yields nothing) when the
/// request would push the theoretical arrival time past one window ahead of now.
pub fn take_stmt(bucket: &str, rate: Rate, now_ms: u64) -> Stmt {
    let g = Gcra::from(rate);
    Stmt::new(
        "INSERT INTO rate_limits (bucket, tat) VALUES (?1, ?2 + ?3) \
         ON CONFLICT(bucket) DO UPDATE SET tat = max(rate_limits.tat, ?2) + ?3 \
         WHERE max(rate_limits.tat, ?2) + ?3 - ?2 <= ?4 \
         RETURNING tat",
        vec![
            bucket.into(),
            Value::Integer(micros(now_ms)),
            Value::Integer(g.interval_us),
            Value::Integer(g.window_us),
        ],
    )
}

/// Takes one request from `bucket`'s allowance. Allowed requests return `Ok(())`;
/// refused ones return -33005 with `retry_after_ms` in the error data.
pub async fn take(db: &impl Db, bucket: &str, rate: Rate, now_ms: u64) -> Result<()> {
    let s = take_stmt(bucket, rate, now_ms);
    let rows = db.query(&s.sql, &s.params).await?;
    if !rows.rows.is_empty() {
        return Ok(());
    }
    Err(refusal(db, bucket, rate, now_ms).await)
}

/// Gives back the request a take allowed (one refused for another reason after all).
pub async fn give_back(db: &impl Db, bucket: &str, rate: Rate) -> Result<()> {
    db.query(
        "UPDATE rate_limits SET tat = tat - ?2 WHERE bucket = ?1",
        &[bucket.into(), Value::Integer(Gcra::from(rate).interval_us)],
    )
    .await?;
    Ok(())
}

/// The -33005 answer for a refused take, with how long until the next request fits (read
/// from the bucket: a refusal may cost a round trip; an allowed request never does).
pub async fn refusal(db: &impl Db, bucket: &str, rate: Rate, now_ms: u64) -> Error {
    let s = tat_stmt(bucket);
    let tat = match db.query(&s.sql, &s.params).await {
        Ok(rows) => rows.first().map(|r| r.int("tat")),
        Err(e) => return e.into(),
    };
    let retry_after_ms = peek(tat, rate, now_ms).err().unwrap_or(0);
    Error::new(
        Code::RateLimited,
        format!(
            "rate limit of {} exceeded; retry in {retry_after_ms} ms",
            rate.to_text()
        ),
    )
    .with_data(serde_json::json!({ "retry_after_ms": retry_after_ms, "limit": rate.to_text() }))
}

/// The bucket a caller's runs of one component (its canonical versioned reference) draw from.
pub fn run_bucket(budget_id: &str, reference: &str) -> String {
    format!("exec:{budget_id}:{reference}")
}

/// The read of a bucket's state, for [`peek`].
pub fn tat_stmt(bucket: &str) -> Stmt {
    Stmt::new(
        "SELECT tat FROM rate_limits WHERE bucket = ?1",
        vec![bucket.into()],
    )
}

/// What a bucket allows now, without taking anything: `Ok(remaining)` requests, or
/// `Err(retry_after_ms)` until the next one fits. `tat` is the bucket's state, if any.
pub fn peek(tat: Option<i64>, rate: Rate, now_ms: u64) -> std::result::Result<u64, u64> {
    let g = Gcra::from(rate);
    let now = micros(now_ms);
    let ahead = tat.map(|t| (t - now).max(0)).unwrap_or(0);
    // A request fits while ahead + interval <= window, as in `take_stmt`.
    let room = g.window_us - ahead;
    if room >= g.interval_us {
        Ok((room / g.interval_us) as u64)
    } else {
        Err(((g.interval_us - room).max(0) as u64).div_ceil(1000))
    }
}

fn micros(ms: u64) -> i64 {
    (ms as i64).saturating_mul(1000)
}
