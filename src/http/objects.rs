//! What the queue, exchange and binding endpoints share (`queues.rs`,
//! `exchanges.rs`, `bindings.rs`): RabbitMQ's vhost check
//! (`rabbit_mgmt_util:is_authorized_vhost`), how a refusal of the core is
//! answered (`rabbit_mgmt_util:direct_request` for declare, delete, bind and
//! purge, `with_channel` for get, `rabbit_mgmt_wm_exchange_publish:bad` for
//! publish), the request-body fields they read, and the timestamp format.

use super::ApiError;
use crate::core::definitions_json::json_to_table;
use crate::core::error::CoreError;
use crate::protocol::FieldTable;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// 401 `not_authorised` with `reason`.
pub(crate) fn not_authorised(reason: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        error: "not_authorised",
        reason: reason.to_string(),
        challenge: false,
    }
}

fn error(status: StatusCode, error: &'static str, reason: String) -> ApiError {
    ApiError {
        status,
        error,
        reason,
        challenge: false,
    }
}

/// 404 `{"error":"not_found","reason":"vhost_not_found"}` (a PUT, POST or
/// publish into a vhost that does not exist).
pub(crate) fn vhost_not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "not_found", "vhost_not_found".into())
}

/// 404 `not_found` with RabbitMQ's reason (`queue_not_found`, …).
pub(crate) fn not_found(reason: &str) -> ApiError {
    error(StatusCode::NOT_FOUND, "not_found", reason.into())
}

/// A refusal as `direct_request` answers it: not found is 404 with the
/// text, access refused 401 `Access refused.`, anything else 400 with the
/// text.
pub(crate) fn direct_error(e: CoreError) -> ApiError {
    match e {
        CoreError::NotFound(d) => error(StatusCode::NOT_FOUND, "not_found", d),
        CoreError::AccessRefused(_) => not_authorised("Access refused."),
        CoreError::Internal(d) => ApiError::internal(&d),
        CoreError::Unavailable(d) => ApiError::unavailable(&d),
        other => ApiError::bad_request(other.detail()),
    }
}

/// The 0-9-1 reply code of a refusal (`~tp` of `bad_request_exception`).
fn code(e: &CoreError) -> u16 {
    match e {
        CoreError::NotFound(_) => 404,
        CoreError::AccessRefused(_) => 403,
        CoreError::ResourceLocked(_) => 405,
        CoreError::PreconditionFailed(_) => 406,
        CoreError::NotImplemented(_) => 540,
        CoreError::Internal(_) => 541,
        CoreError::Unavailable(_) => 406,
    }
}

/// A refusal as `with_channel` answers it (the channel was closed with
/// it): 404 and 401 with the channel's close text, anything else 400
/// `"<code> <text>"`.
pub(crate) fn channel_error(e: CoreError) -> ApiError {
    match &e {
        CoreError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        CoreError::AccessRefused(_) => not_authorised(&e.to_string()),
        CoreError::Internal(d) => ApiError::internal(d),
        CoreError::Unavailable(d) => ApiError::unavailable(d),
        _ => ApiError::bad_request(&format!("{} {}", code(&e), e)),
    }
}

/// A refused publish: the channel closed while RabbitMQ's API waited for
/// the confirm, 400 `"<code> <text>"` whatever the code.
pub(crate) fn publish_error(e: CoreError) -> ApiError {
    match &e {
        CoreError::Internal(d) => ApiError::internal(d),
        CoreError::Unavailable(d) => ApiError::unavailable(d),
        _ => ApiError::bad_request(&format!("{} {}", code(&e), e)),
    }
}

/// A flag of the request body as `rabbit_mgmt_format:format_accept_content`
/// reads it: true/false or "true"/"false"; missing is false. Anything else
/// is refused with the reason `["not_boolean", value]`
/// ([`bad_request_json`]).
pub(crate) fn body_bool(body: &Map<String, Value>, key: &str) -> Result<bool, Value> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(v) => Err(json!(["not_boolean", v])),
    }
}

/// 400 `bad_request` whose `reason` is a JSON term (RabbitMQ prints an
/// Erlang tuple as a list: `["not_int","delivery_mode"]`).
pub(crate) fn bad_request_json(reason: Value) -> Response {
    super::json(
        StatusCode::BAD_REQUEST,
        &json!({ "error": "bad_request", "reason": reason }),
    )
}

/// `arguments` of a request body: an object (JSON values as RabbitMQ's
/// `to_amqp_table`), or missing, null or `[]` for none.
pub(crate) fn body_arguments(body: &Map<String, Value>) -> Result<FieldTable, ApiError> {
    match body.get("arguments") {
        None | Some(Value::Null) => Ok(FieldTable::new()),
        Some(Value::Array(a)) if a.is_empty() => Ok(FieldTable::new()),
        Some(Value::Object(m)) => json_to_table(m).map_err(|e| ApiError::bad_request(&e)),
        Some(_) => Err(ApiError::bad_request("arguments must be an object")),
    }
}

/// A string field of a request body (missing or null: `default`).
pub(crate) fn body_str(
    body: &Map<String, Value>,
    key: &str,
    default: &str,
) -> Result<String, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(&format!("{key} must be a string"))),
    }
}

/// `true` query parameter.
pub(crate) fn query_flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true")
}

/// `{"rate": x}`.
pub(crate) fn rate(x: f64) -> Value {
    json!({ "rate": x })
}

/// Milliseconds since the epoch as RabbitMQ 3.13's `now_to_str`
/// (`calendar:system_time_to_rfc3339`, milliseconds, UTC):
/// `2024-01-01T12:00:00.000+00:00`.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_rabbitmq_3_13() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(
            rfc3339_ms(1_704_110_400_123),
            "2024-01-01T12:00:00.123+00:00"
        );
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000+00:00");
    }

    #[test]
    fn refusals_as_the_management_api() {
        let e = direct_error(CoreError::AccessRefused("x".into()));
        assert_eq!(
            (e.status.as_u16(), e.reason.as_str()),
            (401, "Access refused.")
        );
        let e = direct_error(CoreError::precondition("queue 'q' in vhost '/' not empty"));
        assert_eq!((e.status.as_u16(), e.error), (400, "bad_request"));
        assert_eq!(e.reason, "queue 'q' in vhost '/' not empty");
        let e = channel_error(CoreError::ResourceLocked("locked".into()));
        assert_eq!(e.reason, "405 RESOURCE_LOCKED - locked");
        let e = channel_error(CoreError::AccessRefused("no".into()));
        assert_eq!(
            (e.status.as_u16(), e.reason.as_str()),
            (401, "ACCESS_REFUSED - no")
        );
        let e = publish_error(CoreError::AccessRefused("no".into()));
        assert_eq!(
            (e.status.as_u16(), e.reason.as_str()),
            (400, "403 ACCESS_REFUSED - no")
        );
    }
}
