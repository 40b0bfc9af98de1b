//! Rate limiting as GCRA, with its state in the database so it holds across router
//! instances: one statement per check.

use crate::db::{Db, Value};
use crate::errors::{Code, Error, Result};
use crate::units::Rate;

/// Takes one request from `bucket`'s allowance. Allowed requests return `Ok(())`;
/// refused ones return -33005 with `retry_after_ms` in the error data.
pub async fn take(db: &impl Db, bucket: &str, rate: Rate, now_ms: u64) -> Result<()> {
    // Microseconds, so that e.g. 7 requests per second keep an exact interval.
    let window = (rate.window_ms as i64).saturating_mul(1000);
    let interval = (window / rate.requests as i64).max(1);
    let now = (now_ms as i64).saturating_mul(1000);
    // The upsert's WHERE leaves the row alone (and RETURNING yields nothing) when the
    // request would push the theoretical arrival time past one window ahead of now.
    let rows = db
        .query(
            "INSERT INTO rate_limits (bucket, tat) VALUES (?1, ?2 + ?3) \
             ON CONFLICT(bucket) DO UPDATE SET tat = max(rate_limits.tat, ?2) + ?3 \
             WHERE max(rate_limits.tat, ?2) + ?3 - ?2 <= ?4 \
             RETURNING tat",
            &[
                bucket.into(),
                Value::Integer(now),
                Value::Integer(interval),
                Value::Integer(window),
            ],
        )
        .await?;
    if !rows.rows.is_empty() {
        return Ok(());
    }
    let rows = db
        .query(
            "SELECT tat FROM rate_limits WHERE bucket = ?1",
            &[bucket.into()],
        )
        .await?;
    let tat = rows.first().map(|r| r.int("tat")).unwrap_or(now);
    let retry_after_ms = ((tat + interval - now - window).max(0) + 999) / 1000;
    Err(Error::new(
        Code::RateLimited,
        format!(
            "rate limit of {} exceeded; retry in {retry_after_ms} ms",
            rate.to_text()
        ),
    )
    .with_data(serde_json::json!({ "retry_after_ms": retry_after_ms, "limit": rate.to_text() })))
}
