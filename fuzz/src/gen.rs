//! Structure-aware generation: JSON values whose keys and strings come mostly from a
//! target's dictionary, read from the fuzzer's bytes with `arbitrary`.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Value};

/// Deepest nesting generated (the parsers' own limits are tested by the mutated corpus).
const MAX_DEPTH: u32 = 5;

/// Strings that steer parsers into their interesting branches.
pub const COMMON: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "1.0.0",
    "0.1.0-rc.1",
    "1.2.3+build",
    "01.2.3",
    "1.2",
    "1.2.3.4",
    "99999999999999999999.0.0",
    "reagent",
    "catalyst",
    "formula",
    "local",
    "cyfr",
    "json-transform",
    "a",
    "-a",
    "a-",
    "UPPER",
    "reagent:local.x:1.0.0",
    "r:local.x",
    "c:cyfr.http:0.1.0",
    "formula:local.f",
    "local.x:1.0.0",
    "a.b.c:1",
    "10/1m",
    "5/s",
    "0/1m",
    "1/0s",
    "5s",
    "100ms",
    "1h",
    "2d",
    "1MB",
    "64KiB",
    "1.5GB",
    "-5",
    "1e3",
    "18446744073709551615",
    "api.example.com",
    "*.example.com",
    "*",
    "localhost",
    "127.0.0.1",
    "::1",
    "10.0.0.0/8",
    "GET",
    "POST",
    "get",
    "TRACE",
    "execution",
    "run",
    "list",
    "key",
    "create",
    "secret",
    "set",
    "component",
    "policy",
    "{{secret:API_KEY}}",
    "\u{0}",
    "\u{ffff}",
    "é",
];

/// Longest generated string (repeats of repeats would otherwise grow without bound).
const MAX_STRING: usize = 2048;

/// A string: usually from `dict` or [`COMMON`], sometimes arbitrary, sometimes a mix.
pub fn string(u: &mut Unstructured<'_>, dict: &[&str]) -> Result<String> {
    let mut s = string_at(u, dict, 0)?;
    if s.len() > MAX_STRING {
        let mut cut = MAX_STRING;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    Ok(s)
}

fn string_at(u: &mut Unstructured<'_>, dict: &[&str], depth: u32) -> Result<String> {
    let pick = if depth >= 3 {
        u.int_in_range(0u8..=5)?
    } else {
        u.int_in_range(0u8..=9)?
    };
    Ok(match pick {
        0..=3 if !dict.is_empty() => dict[u.choose_index(dict.len())?].to_string(),
        0..=5 => COMMON[u.choose_index(COMMON.len())?].to_string(),
        6 => format!(
            "{}{}",
            string_at(u, dict, depth + 1)?,
            string_at(u, dict, depth + 1)?
        ),
        7 => {
            let s = string_at(u, dict, depth + 1)?;
            s.repeat(
                u.int_in_range(2usize..=40)?
                    .min(MAX_STRING / s.len().max(1) + 1),
            )
        }
        _ => u.arbitrary::<String>()?,
    })
}

/// Any JSON value, biased to objects keyed by `dict`.
pub fn value(u: &mut Unstructured<'_>, dict: &[&str], depth: u32) -> Result<Value> {
    let deep = depth >= MAX_DEPTH;
    Ok(match u.int_in_range(0u8..=12)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => serde_json::Number::from_f64(u.arbitrary()?)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        5 => Value::from(u.int_in_range(0i64..=100)?),
        6..=8 => Value::String(string(u, dict)?),
        9 if !deep => {
            let n = u.int_in_range(0usize..=6)?;
            Value::Array(
                (0..n)
                    .map(|_| value(u, dict, depth + 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ if !deep => Value::Object(object(u, dict, depth + 1)?),
        _ => Value::String(string(u, dict)?),
    })
}

/// An object of a few entries whose keys mostly come from `dict`.
pub fn object(u: &mut Unstructured<'_>, dict: &[&str], depth: u32) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for _ in 0..u.int_in_range(0usize..=8)? {
        let k = if dict.is_empty() || u.ratio(1u8, 6)? {
            u.arbitrary::<String>()?
        } else {
            dict[u.choose_index(dict.len())?].to_string()
        };
        m.insert(k, value(u, dict, depth)?);
    }
    Ok(m)
}

/// Whether an input asks for structured generation (first byte ≥ 0x80) rather than raw
/// text; corpus entries are ASCII text, so their mutations stay raw.
pub fn structured(data: &[u8]) -> Option<Unstructured<'_>> {
    match data.split_first() {
        Some((b, rest)) if *b >= 0x80 => Some(Unstructured::new(rest)),
        _ => None,
    }
}

/// The input as text, lossily (the entry points take `&str`).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
