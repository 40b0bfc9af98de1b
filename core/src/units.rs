//! Durations (`ms|s|m|h`), sizes (integers or `KB|MB|GB`) and rate limits (`100/1m`).

use serde_json::Value as Json;

/// Parses `500ms`, `30s`, `1m`, `2h` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86_400_000)
    } else {
        return Err(format!(
            "duration `{s}` needs a unit: ms, s, m, h or d (e.g. \"30s\")"
        ));
    };
    let n: u64 = num.parse().map_err(|_| {
        format!("duration `{s}` must be a whole number followed by ms, s, m, h or d")
    })?;
    if n == 0 {
        return Err(format!("duration `{s}` must be greater than zero"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration `{s}` is too large"))
}

/// The shortest exact text form of a duration: `2h`, `1m`, `30s`, `250ms`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms > 0 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms > 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms > 0 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a size given as an integer number of bytes or a string like `512KB`, `5MB`, `1GB`.
pub fn parse_size(v: &Json) -> Result<u64, String> {
    match v {
        Json::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("size {n} must be a non-negative integer")),
        Json::String(s) => {
            let t = s.trim().to_ascii_uppercase();
            let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
                (n, 1u64 << 30)
            } else if let Some(n) = t.strip_suffix("MB") {
                (n, 1 << 20)
            } else if let Some(n) = t.strip_suffix("KB") {
                (n, 1 << 10)
            } else if let Some(n) = t.strip_suffix('B') {
                (n, 1)
            } else {
                (t.as_str(), 1)
            };
            let n: u64 = num.trim().parse().map_err(|_| {
                format!("size `{s}` must look like 1048576, \"512KB\", \"5MB\" or \"1GB\"")
            })?;
            n.checked_mul(mult)
                .ok_or_else(|| format!("size `{s}` is too large"))
        }
        other => Err(format!(
            "size must be an integer or a string like \"5MB\", not {other}"
        )),
    }
}

/// A rate: `requests` per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// How many requests fit in one window.
    pub requests: u64,
    /// The window in milliseconds.
    pub window_ms: u64,
}

impl Rate {
    /// Parses `"100/1m"` or `{"requests": 100, "window": "1m"}`.
    pub fn parse(v: &Json) -> Result<Rate, String> {
        match v {
            Json::String(s) => {
                let (n, w) = s.split_once('/').ok_or_else(|| {
                    format!("rate limit `{s}` must look like \"100/1m\" ({{count}}/{{window}})")
                })?;
                let requests: u64 = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("rate limit `{s}`: `{n}` is not a whole number"))?;
                Rate::new(requests, parse_duration_ms(w)?)
            }
            Json::Object(o) => {
                let requests = o
                    .get("requests")
                    .and_then(Json::as_u64)
                    .ok_or("rate limit object needs an integer `requests`")?;
                let window = o
                    .get("window")
                    .and_then(Json::as_str)
                    .ok_or("rate limit object needs a `window` like \"1m\"")?;
                Rate::new(requests, parse_duration_ms(window)?)
            }
            other => Err(format!(
                "rate limit must be \"100/1m\" or {{\"requests\",\"window\"}}, not {other}"
            )),
        }
    }

    fn new(requests: u64, window_ms: u64) -> Result<Rate, String> {
        if requests == 0 {
            return Err("rate limit must allow at least one request per window".into());
        }
        Ok(Rate {
            requests,
            window_ms,
        })
    }

    /// A rate no looser than either: the smaller burst (`requests`) at the slower sustained
    /// pace (the longer interval between requests), rounded to the stricter side.
    pub fn narrowest(self, other: Rate) -> Rate {
        let requests = self.requests.min(other.requests);
        // The window that gives `requests` each rate's interval; the longer one wins.
        let window =
            |r: Rate| (r.window_ms as u128 * requests as u128).div_ceil(r.requests as u128);
        let window_ms = window(self).max(window(other)).min(u64::MAX as u128) as u64;
        Rate {
            requests,
            window_ms,
        }
    }

    /// The canonical text form, e.g. `100/1m`.
    pub fn to_text(self) -> String {
        format!("{}/{}", self.requests, format_duration_ms(self.window_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_parse_with_units_and_refuse_bare_numbers() {
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert!(parse_duration_ms("30").is_err());
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("-1s").is_err());
        for text in ["30s", "1m", "2h", "250ms", "90s"] {
            assert_eq!(format_duration_ms(parse_duration_ms(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes_accept_integers_and_units() {
        assert_eq!(parse_size(&json!(1048576)), Ok(1 << 20));
        assert_eq!(parse_size(&json!("5MB")), Ok(5 << 20));
        assert_eq!(parse_size(&json!("512kb")), Ok(512 << 10));
        assert!(parse_size(&json!("lots")).is_err());
        assert!(parse_size(&json!(-1)).is_err());
    }

    #[test]
    fn rates_parse_both_forms() {
        let r = Rate {
            requests: 100,
            window_ms: 60_000,
        };
        assert_eq!(Rate::parse(&json!("100/1m")), Ok(r));
        assert_eq!(
            Rate::parse(&json!({"requests": 100, "window": "1m"})),
            Ok(r)
        );
        assert_eq!(r.to_text(), "100/1m");
        assert!(Rate::parse(&json!("100")).is_err());
        assert!(Rate::parse(&json!("0/1m")).is_err());
    }

    #[test]
    fn the_narrowest_rate_is_no_looser_than_either_in_burst_or_pace() {
        let r = |s: &str| Rate::parse(&json!(s)).unwrap();
        assert_eq!(r("2/1h").narrowest(r("100/1m")), r("2/1h"));
        assert_eq!(r("100/1m").narrowest(r("2/1h")), r("2/1h"));
        // 100/1h paces one per 36 s, 2/1m allows a burst of 2: both bounds hold.
        assert_eq!(r("100/1h").narrowest(r("2/1m")), r("2/72s"));
        assert_eq!(r("7/1s").narrowest(r("7/1s")), r("7/1s"));
    }
}
