//! `/api/permissions…`, `/api/topic-permissions…` and the per-user and
//! per-vhost lists (rabbit_mgmt_wm_permissions, _wm_permission,
//! _wm_permissions_vhost, _wm_permissions_user, _wm_topic_permissions*).

use super::{body_object, created_or_updated, ok, Api, ApiError, Creds, Level};
use crate::admin::{Admin, PermissionView, TopicPermissionView};
use crate::core::auth::permissions::{Permission, TopicPermission};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

fn perm_json(p: &PermissionView) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "configure": p.permission.configure,
        "write": p.permission.write,
        "read": p.permission.read,
    })
}

fn topic_json(p: &TopicPermissionView) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "exchange": p.permission.exchange,
        "write": p.permission.write,
        "read": p.permission.read,
    })
}

/// The string fields `keys` of a body, or 400 with RabbitMQ's
/// `[{key_missing,write},…]` naming every missing one.
fn required(body: &Map<String, Value>, keys: &[&str]) -> Result<Vec<String>, ApiError> {
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| body.get(**k).is_none_or(Value::is_null))
        .map(|k| format!("{{key_missing,{}}}", k))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(&format!("[{}]", missing.join(","))));
    }
    keys.iter()
        .map(|k| match &body[*k] {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ApiError::bad_request(&format!("{} must be a string", k))),
        })
        .collect()
}

/// A PUT names a user and a vhost that must both exist: 400
/// `vhost_or_user_not_found` otherwise (RabbitMQ's).
fn both_exist(a: &Admin, vhost: &str, user: &str) -> Result<(), ApiError> {
    if a.user(user).is_err() || a.vhost(vhost).is_err() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    Ok(())
}

pub(crate) async fn list(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Administrator, |a, _| {
        let out: Vec<Value> = a.list_permissions().iter().map(perm_json).collect();
        Ok(ok(&out))
    })
    .await
}

/// `GET /api/users/{user}/permissions`.
pub(crate) async fn of_user(
    State(api): State<Api>,
    c: Creds,
    Path(user): Path<String>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.user(&user)?;
        let out: Vec<Value> = a
            .list_permissions()
            .iter()
            .filter(|p| p.user == user)
            .map(perm_json)
            .collect();
        Ok(ok(&out))
    })
    .await
}

/// `GET /api/vhosts/{vhost}/permissions`.
pub(crate) async fn of_vhost(
    State(api): State<Api>,
    c: Creds,
    Path(vhost): Path<String>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.vhost(&vhost)?;
        let out: Vec<Value> = a
            .list_permissions()
            .iter()
            .filter(|p| p.vhost == vhost)
            .map(perm_json)
            .collect();
        Ok(ok(&out))
    })
    .await
}

fn find(a: &Admin, vhost: &str, user: &str) -> Option<PermissionView> {
    a.list_permissions()
        .into_iter()
        .find(|p| p.vhost == vhost && p.user == user)
}

pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, user)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let p = find(a, &vhost, &user).ok_or_else(ApiError::not_found)?;
        Ok(ok(&perm_json(&p)))
    })
    .await
}

/// `PUT /api/permissions/{vhost}/{user}` `{"configure","write","read"}`.
pub(crate) async fn put(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let body = body_object(&body)?;
        let f = required(&body, &["configure", "write", "read"])?;
        both_exist(a, &vhost, &user)?;
        let created = find(a, &vhost, &user).is_none();
        let [configure, write, read] =
            <[String; 3]>::try_from(f).map_err(|_| ApiError::internal("permission fields"))?;
        a.set_permissions(
            &user,
            &vhost,
            Permission {
                configure,
                write,
                read,
            },
        )?;
        Ok(created_or_updated(created))
    })
    .await
}

pub(crate) async fn delete(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, user)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        find(a, &vhost, &user).ok_or_else(ApiError::not_found)?;
        a.clear_permissions(&user, &vhost)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

// ---- topic permissions ----

fn topic_filtered(a: &Admin, keep: impl Fn(&TopicPermissionView) -> bool) -> Vec<Value> {
    a.list_topic_permissions()
        .iter()
        .filter(|p| keep(p))
        .map(topic_json)
        .collect()
}

pub(crate) async fn topic_list(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Administrator, |a, _| {
        Ok(ok(&topic_filtered(a, |_| true)))
    })
    .await
}

/// `GET /api/users/{user}/topic-permissions`.
pub(crate) async fn topic_of_user(
    State(api): State<Api>,
    c: Creds,
    Path(user): Path<String>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.user(&user)?;
        Ok(ok(&topic_filtered(a, |p| p.user == user)))
    })
    .await
}

/// `GET /api/vhosts/{vhost}/topic-permissions`.
pub(crate) async fn topic_of_vhost(
    State(api): State<Api>,
    c: Creds,
    Path(vhost): Path<String>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.vhost(&vhost)?;
        Ok(ok(&topic_filtered(a, |p| p.vhost == vhost)))
    })
    .await
}

/// `GET /api/topic-permissions/{vhost}/{user}`: a list (one entry per
/// exchange); 404 when there is none.
pub(crate) async fn topic_get(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, user)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let out = topic_filtered(a, |p| p.vhost == vhost && p.user == user);
        if out.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(ok(&out))
    })
    .await
}

/// `PUT /api/topic-permissions/{vhost}/{user}` `{"exchange","write","read"}`.
pub(crate) async fn topic_put(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let body = body_object(&body)?;
        let f = required(&body, &["exchange", "write", "read"])?;
        both_exist(a, &vhost, &user)?;
        let [exchange, write, read] = <[String; 3]>::try_from(f)
            .map_err(|_| ApiError::internal("topic permission fields"))?;
        let created = !a
            .list_topic_permissions()
            .iter()
            .any(|p| p.vhost == vhost && p.user == user && p.permission.exchange == exchange);
        a.set_topic_permissions(
            &user,
            &vhost,
            TopicPermission {
                exchange,
                write,
                read,
            },
        )?;
        Ok(created_or_updated(created))
    })
    .await
}

/// `DELETE /api/topic-permissions/{vhost}/{user}`: every exchange's entry of
/// the user in the vhost; 404 when there is none.
pub(crate) async fn topic_delete(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, user)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        if topic_filtered(a, |p| p.vhost == vhost && p.user == user).is_empty() {
            return Err(ApiError::not_found());
        }
        a.clear_topic_permissions(&user, &vhost, None)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
