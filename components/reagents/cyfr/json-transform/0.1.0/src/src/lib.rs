//! `reagent:cyfr.json-transform` — a small, dependable JSON transformer.
//!
//! Input: `{"data": <any>, "ops": [<op>, ...], "debug": false}`.
//! Each op is applied in order to the current value; the result is `{"data": <result>}`.
//! With no ops, the result is `{"data": <data>}` plus summary stats when `data` is an
//! array (`count`; and `sum`, `min`, `max`, `mean` when every element is a number).
//!
//! Ops (a `field` may be a dotted path such as `"user.age"`):
//! - `{"op":"get","path":"a.b"}`                       — descend into the value
//! - `{"op":"pick","fields":["a","b"]}`                — keep only these keys (object or array of objects)
//! - `{"op":"omit","fields":["a"]}`                    — drop these keys
//! - `{"op":"rename","from":"a","to":"b"}`             — rename a key
//! - `{"op":"filter","field":"x","eq":<v>}`            — keep array elements matching; also
//!   `ne`, `gt`, `gte`, `lt`, `lte`, `contains`, `exists` (all given conditions must hold)
//! - `{"op":"sort","field":"x","desc":false}`          — stable sort (field optional)
//! - `{"op":"limit","count":n}` / `{"op":"skip","count":n}`
//! - `{"op":"unique","field":"x"}`                     — drop later duplicates (field optional)
//! - `{"op":"group_by","field":"x"}`                   — object of arrays keyed by the field
//! - `{"op":"sum"|"min"|"max"|"mean","field":"x"}`     — reduce an array to a number (field optional)
//! - `{"op":"count"}`                                  — length of an array / number of keys
//!
//! Errors come back as `{"error":{"type":"invalid_input","message":"..."}}`.

wit_bindgen::generate!({
    path: "../../../../../../guest-wit",
    world: "cyfr:reagent/reagent",
});

use serde_json::{json, Map, Value};
use std::cmp::Ordering;

struct Component;

impl exports::cyfr::reagent::compute::Guest for Component {
    fn compute(input: String) -> String {
        match run(&input) {
            Ok(v) => v.to_string(),
            Err(message) => {
                json!({"error": {"type": "invalid_input", "message": message}}).to_string()
            }
        }
    }
}

export!(Component);

type R<T> = Result<T, String>;

fn run(input: &str) -> R<Value> {
    let input: Value =
        serde_json::from_str(input).map_err(|e| format!("input is not valid JSON: {e}"))?;
    let obj = input.as_object().ok_or("input must be a JSON object")?;
    let data = obj.get("data").cloned().ok_or("missing field `data`")?;
    let ops = match obj.get("ops") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ops)) => ops.clone(),
        Some(_) => return Err("`ops` must be an array".into()),
    };
    if obj.get("debug").and_then(Value::as_bool) == Some(true) {
        println!("json-transform: applying {} op(s)", ops.len());
        eprintln!("json-transform: debug enabled");
    }

    if ops.is_empty() {
        let mut out = Map::new();
        if let Value::Array(items) = &data {
            out.insert("count".into(), json!(items.len()));
            let nums: Option<Vec<f64>> = items.iter().map(Value::as_f64).collect();
            if let Some(nums) = nums.filter(|n| !n.is_empty()) {
                let sum: f64 = nums.iter().sum();
                out.insert("sum".into(), number(sum));
                out.insert(
                    "min".into(),
                    number(nums.iter().copied().fold(f64::INFINITY, f64::min)),
                );
                out.insert(
                    "max".into(),
                    number(nums.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                );
                out.insert("mean".into(), number(sum / nums.len() as f64));
            }
        }
        out.insert("data".into(), data);
        return Ok(Value::Object(out));
    }

    let mut current = data;
    for (i, op) in ops.iter().enumerate() {
        current = apply(op, current).map_err(|e| format!("ops[{i}]: {e}"))?;
    }
    Ok(json!({ "data": current }))
}

/// A JSON number, written as an integer when it is one (so `6.0` prints as `6`).
fn number(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        json!(f as i64)
    } else if f.is_finite() {
        json!(f)
    } else {
        Value::Null
    }
}

fn apply(op: &Value, data: Value) -> R<Value> {
    let spec = op.as_object().ok_or("each op must be an object")?;
    let name = spec
        .get("op")
        .and_then(Value::as_str)
        .ok_or("missing string field `op`")?;
    let field = spec
        .get("field")
        .map(|f| f.as_str().ok_or("`field` must be a string"))
        .transpose()?;
    match name {
        "get" => {
            let path = str_arg(spec, "path")?;
            Ok(lookup(&data, path).cloned().unwrap_or(Value::Null))
        }
        "pick" | "omit" => {
            let fields = str_list(spec, "fields")?;
            let keep = name == "pick";
            map_objects(data, name, |obj| {
                let mut out = Map::new();
                for (k, v) in obj {
                    if fields.contains(&k.as_str()) == keep {
                        out.insert(k, v);
                    }
                }
                out
            })
        }
        "rename" => {
            let from = str_arg(spec, "from")?.to_string();
            let to = str_arg(spec, "to")?.to_string();
            map_objects(data, name, |mut obj| {
                if let Some(v) = obj.remove(&from) {
                    obj.insert(to.clone(), v);
                }
                obj
            })
        }
        "filter" => {
            let items = array(data, name)?;
            let field = field.ok_or("filter needs `field`")?;
            let conds: Vec<(&str, &Value)> = ["eq", "ne", "gt", "gte", "lt", "lte", "contains", "exists"]
                .iter()
                .filter_map(|c| spec.get(*c).map(|v| (*c, v)))
                .collect();
            if conds.is_empty() {
                return Err("filter needs one of eq, ne, gt, gte, lt, lte, contains, exists".into());
            }
            let mut kept = Vec::new();
            for item in items {
                if conds.iter().all(|(c, v)| matches(lookup(&item, field), c, v)) {
                    kept.push(item);
                }
            }
            Ok(Value::Array(kept))
        }
        "sort" => {
            let mut items = array(data, name)?;
            let desc = spec.get("desc").and_then(Value::as_bool).unwrap_or(false);
            items.sort_by(|a, b| {
                let (ka, kb) = match field {
                    Some(f) => (lookup(a, f), lookup(b, f)),
                    None => (Some(a), Some(b)),
                };
                let ord = compare_opt(ka, kb);
                if desc { ord.reverse() } else { ord }
            });
            Ok(Value::Array(items))
        }
        "limit" | "skip" => {
            let n = spec.get("count").and_then(Value::as_u64).ok_or("needs a non-negative integer `count`")?;
            let items = array(data, name)?;
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            Ok(Value::Array(if name == "limit" {
                items.into_iter().take(n).collect()
            } else {
                items.into_iter().skip(n).collect()
            }))
        }
        "unique" => {
            let items = array(data, name)?;
            let mut seen: Vec<Value> = Vec::new();
            let mut out = Vec::new();
            for item in items {
                let key = match field {
                    Some(f) => lookup(&item, f).cloned().unwrap_or(Value::Null),
                    None => item.clone(),
                };
                if !seen.iter().any(|s| *s == key || numbers_equal(Some(s), &key)) {
                    seen.push(key);
                    out.push(item);
                }
            }
            Ok(Value::Array(out))
        }
        "group_by" => {
            let field = field.ok_or("group_by needs `field`")?;
            let mut groups: Map<String, Value> = Map::new();
            for item in array(data, name)? {
                let key = match lookup(&item, field) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => "null".to_string(),
                    Some(other) => other.to_string(),
                };
                match groups.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
                    Value::Array(list) => list.push(item),
                    _ => unreachable!("groups only hold arrays"),
                }
            }
            Ok(Value::Object(groups))
        }
        "count" => match data {
            Value::Array(items) => Ok(json!(items.len())),
            Value::Object(obj) => Ok(json!(obj.len())),
            _ => Err("count needs an array or an object".into()),
        },
        "sum" | "min" | "max" | "mean" => {
            let items = array(data, name)?;
            let mut nums = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let v = match field {
                    Some(f) => lookup(item, f),
                    None => Some(item),
                };
                match v {
                    Some(Value::Number(n)) => nums.push(n.as_f64().unwrap_or(0.0)),
                    Some(Value::Null) | None => {} // missing values are skipped
                    Some(_) => return Err(format!("{name}: element {i} is not a number")),
                }
            }
            if nums.is_empty() {
                return Ok(if name == "sum" { json!(0) } else { Value::Null });
            }
            let sum: f64 = nums.iter().sum();
            Ok(number(match name {
                "sum" => sum,
                "min" => nums.iter().copied().fold(f64::INFINITY, f64::min),
                "max" => nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                _ => sum / nums.len() as f64,
            }))
        }
        other => Err(format!(
            "unknown op `{other}` (expected get, pick, omit, rename, filter, sort, limit, skip, unique, group_by, count, sum, min, max, mean)"
        )),
    }
}

fn str_arg<'a>(spec: &'a Map<String, Value>, key: &str) -> R<&'a str> {
    spec.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("needs a string `{key}`"))
}

fn str_list<'a>(spec: &'a Map<String, Value>, key: &str) -> R<Vec<&'a str>> {
    let list = spec
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("needs an array `{key}`"))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| format!("`{key}` must hold strings"))
        })
        .collect()
}

fn array(data: Value, op: &str) -> R<Vec<Value>> {
    match data {
        Value::Array(items) => Ok(items),
        other => Err(format!("{op} needs an array, got {}", kind(&other))),
    }
}

/// Applies `f` to an object, or to every object in an array (other elements pass through).
fn map_objects(
    data: Value,
    op: &str,
    f: impl Fn(Map<String, Value>) -> Map<String, Value>,
) -> R<Value> {
    match data {
        Value::Object(obj) => Ok(Value::Object(f(obj))),
        Value::Array(items) => Ok(Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(obj) => Value::Object(f(obj)),
                    other => other,
                })
                .collect(),
        )),
        other => Err(format!(
            "{op} needs an object or an array of objects, got {}",
            kind(&other)
        )),
    }
}

/// Dotted-path lookup: `"a.b.0"` walks objects by key and arrays by index.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    if let Some(v) = value.as_object().and_then(|o| o.get(path)) {
        return Some(v); // a literal key containing dots wins
    }
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(obj) => obj.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn matches(actual: Option<&Value>, cond: &str, expected: &Value) -> bool {
    match cond {
        "exists" => actual.is_some_and(|v| !v.is_null()) == expected.as_bool().unwrap_or(true),
        "eq" => actual.unwrap_or(&Value::Null) == expected || numbers_equal(actual, expected),
        "ne" => !(actual.unwrap_or(&Value::Null) == expected || numbers_equal(actual, expected)),
        "contains" => match (actual, expected) {
            (Some(Value::String(s)), Value::String(needle)) => s.contains(needle.as_str()),
            (Some(Value::Array(items)), needle) => items.contains(needle),
            _ => false,
        },
        _ => {
            let Some(actual) = actual else { return false };
            let comparable = matches!(
                (actual, expected),
                (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_))
            );
            if !comparable {
                return false;
            }
            let ord = compare(actual, expected);
            match cond {
                "gt" => ord == Ordering::Greater,
                "gte" => ord != Ordering::Less,
                "lt" => ord == Ordering::Less,
                _ => ord != Ordering::Greater, // lte
            }
        }
    }
}

/// `1` and `1.0` are equal here even though serde_json keeps them apart.
fn numbers_equal(actual: Option<&Value>, expected: &Value) -> bool {
    match (actual.and_then(Value::as_f64), expected.as_f64()) {
        (Some(a), Some(b)) => {
            actual.is_some_and(Value::is_number) && expected.is_number() && a == b
        }
        _ => false,
    }
}

fn compare_opt(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    compare(a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null))
}

/// A total order over JSON values: null < bool < number < string < array < object.
fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = compare(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
