//! Who may call the API, as RabbitMQ's management plugin decides it
//! (`rabbit_web_dispatch_access_control:is_authorized/8` in 3.13): HTTP basic
//! auth against the internal users; a failed login is 401 `not_authorized`
//! with `WWW-Authenticate`; a loopback user from elsewhere, a user with no
//! management tag, or a non-administrator on an administrator's resource
//! is 401 `not_authorised` (British spelling, no `WWW-Authenticate`).

use crate::admin::{Admin, AdminError, UserView};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::net::{IpAddr, SocketAddr};

/// An error answer: status, `{"error":…,"reason":…}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
    /// Add `WWW-Authenticate: Basic realm="RabbitMQ Management"`.
    pub challenge: bool,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, reason: &str) -> ApiError {
        ApiError {
            status,
            error,
            reason: reason.to_string(),
            challenge: false,
        }
    }

    /// 404 `{"error":"Object Not Found","reason":"Not Found"}`.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 400 `{"error":"bad_request","reason":…}`.
    pub fn bad_request(reason: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 500.
    pub fn internal(reason: &str) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", reason)
    }

    /// 503: the storage cannot take the change now (disk full, I/O error).
    pub fn unavailable(reason: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            reason,
        )
    }

    /// 401 for a login that failed (3.13's text).
    fn not_authenticated() -> ApiError {
        ApiError {
            challenge: true,
            ..ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", "Not_Authorized")
        }
    }

    /// 401 for a user who logged in but may not do this.
    pub fn not_authorised(reason: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::NotFound(_) => ApiError::not_found(),
            AdminError::BadRequest(r) => ApiError::bad_request(&r),
            AdminError::Internal(r) => ApiError::internal(&r),
            AdminError::Unavailable(r) => ApiError::unavailable(&r),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = super::json(
            self.status,
            &serde_json::json!({ "error": self.error, "reason": self.reason }),
        );
        if self.challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        r
    }
}

/// What a resource asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// Any management user (`whoami`, `overview`).
    Management,
    /// Tag `administrator` or `monitoring` (`/api/nodes`).
    Monitor,
    /// Tag `administrator` (users, vhosts, permissions, limits, definitions).
    Administrator,
}

/// RabbitMQ's `is_monitor`: tag `administrator` or `monitoring` (sees every
/// vhost, every connection, the node's figures).
pub(crate) fn is_monitor(user: &UserView) -> bool {
    user.tags
        .iter()
        .any(|t| t == "administrator" || t == "monitoring")
}

/// Tag `administrator`.
pub(crate) fn is_admin(user: &UserView) -> bool {
    user.tags.iter().any(|t| t == "administrator")
}

/// The caller's credentials and address, taken from the request; checked
/// later, on a blocking thread ([`authorize`]).
#[derive(Clone, Debug)]
pub(crate) struct Creds {
    basic: Option<(String, String)>,
    peer: Option<IpAddr>,
}

impl Creds {
    /// The caller's `Authorization` header, to pass to another node of
    /// the cluster (`cluster_view`).
    pub(crate) fn basic_header(&self) -> Option<String> {
        use base64::Engine;
        let (u, p) = self.basic.as_ref()?;
        let raw = format!("{u}:{p}");
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Creds {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Creds, Self::Rejection> {
        let basic = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Creds { basic, peer })
    }
}

/// `Basic base64(user:password)`.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// RabbitMQ's management tags: any of them lets a user log in to the API.
const MANAGEMENT_TAGS: &[&str] = &["administrator", "monitoring", "policymaker", "management"];

/// The checks of `is_authorized/8`, in its order: credentials, loopback,
/// a management tag, then the resource's own test.
pub(crate) fn authorize(admin: &Admin, creds: &Creds, level: Level) -> Result<UserView, ApiError> {
    let (name, password) = creds
        .basic
        .as_ref()
        .ok_or_else(ApiError::not_authenticated)?;
    let user = admin
        .authenticate(name, password)
        .ok_or_else(ApiError::not_authenticated)?;
    let loopback = creds.peer.is_some_and(|ip| ip.to_canonical().is_loopback());
    if !loopback && admin.config().loopback_users.contains(&user.name) {
        log::warn!(
            "HTTP access denied: user '{}' - User can only log in via localhost",
            user.name
        );
        return Err(ApiError::not_authorised(
            "User can only log in via localhost",
        ));
    }
    if !user
        .tags
        .iter()
        .any(|t| MANAGEMENT_TAGS.contains(&t.as_str()))
    {
        return Err(ApiError::not_authorised("Not management user"));
    }
    if level == Level::Administrator && !is_admin(&user) {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    if level == Level::Monitor && !is_monitor(&user) {
        return Err(ApiError::not_authorised("Not monitor user"));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::parse_basic;

    #[test]
    fn basic_header() {
        assert_eq!(
            parse_basic("Basic Z3Vlc3Q6Z3Vlc3Q="),
            Some(("guest".into(), "guest".into()))
        );
        assert_eq!(
            parse_basic("basic dTpwOnE="),
            Some(("u".into(), "p:q".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic"), None);
    }
}
