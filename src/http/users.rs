//! `/api/whoami`, `/api/users…` and `/api/user-limits…`
//! (rabbit_mgmt_wm_whoami, _wm_users, _wm_user, _wm_user_limits,
//! _wm_user_limit; JSON as rabbit_mgmt_format:internal_user).

use super::{body_object, created_or_updated, ok, Api, ApiError, Creds, Level};
use crate::admin::{PasswordSpec, UserView};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// A user as `GET /api/users` shows it.
#[derive(Serialize)]
struct UserJson<'a> {
    name: &'a str,
    password_hash: &'a str,
    hashing_algorithm: &'a str,
    tags: &'a [String],
    limits: Map<String, Value>,
}

/// `{"max-connections": 5, …}` from `(name, value)` pairs.
pub(crate) fn limits_map(list: Vec<(String, i64)>) -> Map<String, Value> {
    list.into_iter().map(|(k, v)| (k, Value::from(v))).collect()
}

fn user_json(u: &UserView) -> Value {
    serde_json::to_value(UserJson {
        name: &u.name,
        password_hash: &u.password_hash,
        hashing_algorithm: &u.hashing_algorithm,
        tags: &u.tags,
        limits: limits_map(u.limits.to_list()),
    })
    .unwrap_or(Value::Null)
}

pub(crate) async fn whoami(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Management, |_, u| {
        Ok(ok(&serde_json::json!({ "name": u.name, "tags": u.tags })))
    })
    .await
}

pub(crate) async fn list(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Administrator, |a, _| {
        let users: Vec<Value> = a.list_users().iter().map(user_json).collect();
        Ok(ok(&users))
    })
    .await
}

pub(crate) async fn without_permissions(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Administrator, |a, _| {
        let perms = a.list_permissions();
        let users: Vec<Value> = a
            .list_users()
            .iter()
            .filter(|u| !perms.iter().any(|p| p.user == u.name))
            .map(user_json)
            .collect();
        Ok(ok(&users))
    })
    .await
}

pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        Ok(ok(&user_json(&a.user(&name)?)))
    })
    .await
}

/// Tags as RabbitMQ takes them: `"a,b"` or `["a","b"]`.
fn parse_tags(v: &Value) -> Result<Vec<String>, ApiError> {
    let tags: Vec<String> = match v {
        Value::String(s) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Value::Array(items) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| ApiError::bad_request("tags must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Value::Null => Vec::new(),
        _ => return Err(ApiError::bad_request("tags must be a string or a list")),
    };
    Ok(tags.into_iter().filter(|t| !t.is_empty()).collect())
}

fn string_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(&format!("{} must be a string", key))),
    }
}

/// `PUT /api/users/{user}`: `{"password"}` or `{"password_hash",
/// "hashing_algorithm"}`, and `"tags"`. Without either password field the
/// user has no password afterwards, as in RabbitMQ (`warrenctl
/// set_user_tags` sends the stored hash back to keep it).
pub(crate) async fn put(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let body = body_object(&body)?;
        let tags = match body.get("tags") {
            Some(v) => parse_tags(v)?,
            None => return Err(ApiError::bad_request("tags_not_present")),
        };
        let password = string_field(&body, "password")?;
        let hash = string_field(&body, "password_hash")?;
        let spec = match (password, hash) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "both_password_and_password_hash_are_provided",
                ))
            }
            (Some(p), None) => PasswordSpec::Clear(p),
            (None, Some(h)) => PasswordSpec::Hash {
                algorithm: string_field(&body, "hashing_algorithm")?
                    .unwrap_or_else(|| "rabbit_password_hashing_sha256".into()),
                hash: h,
            },
            // RabbitMQ (rabbit_auth_backend_internal:put_user): an update
            // without either clears the password.
            (None, None) => PasswordSpec::None,
        };
        let created = a.put_user(&name, spec, tags)?;
        Ok(created_or_updated(created))
    })
    .await
}

pub(crate) async fn delete(State(api): State<Api>, c: Creds, Path(name): Path<String>) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.delete_user(&name)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `POST /api/users/bulk-delete` `{"users": [...]}`: deletes each, in
/// order; a missing one stops there with 404, the ones before it stay
/// deleted (RabbitMQ's `rabbit_mgmt_wm_users_bulk_delete` is not atomic
/// either).
pub(crate) async fn bulk_delete(State(api): State<Api>, c: Creds, body: Bytes) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let body = body_object(&body)?;
        let Some(Value::Array(users)) = body.get("users") else {
            return Err(ApiError::bad_request("[{key_missing,users}]"));
        };
        for u in users {
            let Some(name) = u.as_str() else {
                return Err(ApiError::bad_request("users must be a list of names"));
            };
            a.delete_user(name)?;
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `GET /api/auth/hash_password/{password}` (3.13): a salted hash of the
/// password with the default algorithm (SHA-256), base64 as in definitions
/// files, for tools that create users from a hash.
pub(crate) async fn hash_password(
    State(api): State<Api>,
    c: Creds,
    Path(password): Path<String>,
) -> Response {
    api.call(c, Level::Management, move |_, _| {
        let hash = crate::core::auth::password::PasswordHash::new(&password);
        Ok(ok(&serde_json::json!({ "ok": hash.to_base64() })))
    })
    .await
}

fn user_limits_json(u: &UserView) -> Value {
    serde_json::json!({ "user": u.name, "value": limits_map(u.limits.to_list()) })
}

/// `GET /api/user-limits`: the users that have limits.
pub(crate) async fn limits_all(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Administrator, |a, _| {
        let out: Vec<Value> = a
            .list_users()
            .iter()
            .filter(|u| !u.limits.to_list().is_empty())
            .map(user_limits_json)
            .collect();
        Ok(ok(&out))
    })
    .await
}

/// `GET /api/user-limits/{user}`: a list of at most one.
pub(crate) async fn limits_of(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let u = a.user(&name)?;
        let out: Vec<Value> = if u.limits.to_list().is_empty() {
            Vec::new()
        } else {
            vec![user_limits_json(&u)]
        };
        Ok(ok(&out))
    })
    .await
}

/// The `{"value": N}` of a limit PUT, with RabbitMQ's reasons.
pub(crate) fn limit_value(body: &[u8], name: &str) -> Result<i64, ApiError> {
    let body = body_object(body)?;
    match body.get("value") {
        None => Err(ApiError::bad_request("[{key_missing,value}]")),
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(&format!(
                "Validation failed\n\n{} should be a number, actually was {}\n",
                name, v
            ))
        }),
    }
}

/// `PUT /api/user-limits/{user}/{name}` `{"value": N}`: 204 (a negative
/// value clears the limit).
pub(crate) async fn limit_put(
    State(api): State<Api>,
    c: Creds,
    Path((user, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.user(&user)?;
        let value = limit_value(&body, &name)?;
        a.set_user_limit(&user, &name, value)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

pub(crate) async fn limit_delete(
    State(api): State<Api>,
    c: Creds,
    Path((user, name)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.user(&user)?;
        a.set_user_limit(&user, &name, -1)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
