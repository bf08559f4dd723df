//! `/api/vhosts…`, `/api/vhost-limits…` and `/api/definitions`
//! (rabbit_mgmt_wm_vhosts, _wm_vhost, _wm_limits, _wm_limit,
//! _wm_definitions).
//!
//! Only what warren can say truthfully: no message or queue counts and no
//! rates (those come with the statistics part of the API).

use super::users::{limit_value, limits_map};
use super::{body_object, created_or_updated, ok, Api, ApiError, Creds, Level};
use crate::admin::VhostView;
use crate::core::definitions_json::DefinitionsFile;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

fn vhost_json(v: &VhostView, node: &str) -> Value {
    let mut metadata = json!({ "description": v.meta.description, "tags": v.meta.tags });
    if !v.meta.default_queue_type.is_empty() {
        metadata["default_queue_type"] = json!(v.meta.default_queue_type);
    }
    let dqt = if v.meta.default_queue_type.is_empty() {
        "classic"
    } else {
        &v.meta.default_queue_type
    };
    json!({
        "name": v.name,
        "description": v.meta.description,
        "tags": v.meta.tags,
        "default_queue_type": dqt,
        "metadata": metadata,
        "tracing": false,
        "cluster_state": { node: "running" },
    })
}

pub(crate) async fn list(State(api): State<Api>, c: Creds) -> Response {
    let node = api.node.clone();
    api.call(c, Level::Administrator, move |a, _| {
        let out: Vec<Value> = a
            .list_vhosts()
            .iter()
            .map(|v| vhost_json(v, &node))
            .collect();
        Ok(ok(&out))
    })
    .await
}

pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
) -> Response {
    let node = api.node.clone();
    api.call(c, Level::Administrator, move |a, _| {
        Ok(ok(&vhost_json(&a.vhost(&name)?, &node)))
    })
    .await
}

/// `PUT /api/vhosts/{vhost}`, body optional: `description`, `tags` (list or
/// comma string), `default_queue_type`. As in RabbitMQ, a PUT replaces the
/// description and tags (missing ones become empty).
pub(crate) async fn put(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let body = body_object(&body)?;
        let description = match body.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::bad_request("description must be a string")),
        };
        let tags: Vec<String> = match body.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_string()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|t| t.as_str().map(|s| s.trim().to_string()))
                .collect(),
            Some(_) => return Err(ApiError::bad_request("tags must be a string or a list")),
        };
        let tags = tags.into_iter().filter(|t| !t.is_empty()).collect();
        let dqt = match body.get("default_queue_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::bad_request("default_queue_type must be a string")),
        };
        let created = a.put_vhost(&name, Some(description), Some(tags), dqt)?;
        Ok(created_or_updated(created))
    })
    .await
}

pub(crate) async fn delete(State(api): State<Api>, c: Creds, Path(name): Path<String>) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.delete_vhost(&name)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

fn vhost_limits_json(v: &VhostView) -> Value {
    json!({ "vhost": v.name, "value": limits_map(v.meta.limits.to_list()) })
}

/// `GET /api/vhost-limits`: the vhosts that have limits.
pub(crate) async fn limits_all(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Administrator, |a, _| {
        let out: Vec<Value> = a
            .list_vhosts()
            .iter()
            .filter(|v| !v.meta.limits.to_list().is_empty())
            .map(vhost_limits_json)
            .collect();
        Ok(ok(&out))
    })
    .await
}

/// `GET /api/vhost-limits/{vhost}`: a list of at most one.
pub(crate) async fn limits_of(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        let v = a.vhost(&name)?;
        let out: Vec<Value> = if v.meta.limits.to_list().is_empty() {
            Vec::new()
        } else {
            vec![vhost_limits_json(&v)]
        };
        Ok(ok(&out))
    })
    .await
}

/// `PUT /api/vhost-limits/{vhost}/{name}` `{"value": N}`: 204, even when
/// the limit is new (RabbitMQ's); a negative value clears it.
pub(crate) async fn limit_put(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.vhost(&vhost)?;
        let value = limit_value(&body, &name)?;
        a.set_vhost_limit(&vhost, &name, value)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `DELETE /api/vhost-limits/{vhost}/{name}`: 204, also when it was not set.
pub(crate) async fn limit_delete(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        a.vhost(&vhost)?;
        a.set_vhost_limit(&vhost, &name, -1)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

pub(crate) async fn definitions_get(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Administrator, |a, _| {
        Ok(ok(&a.export_definitions()))
    })
    .await
}

/// `POST /api/definitions`: imports a definitions file, 204; 400 with the
/// reason when it is not JSON or cannot be imported.
pub(crate) async fn definitions_post(State(api): State<Api>, c: Creds, body: Bytes) -> Response {
    api.call(c, Level::Administrator, move |a, _| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(ApiError::bad_request("failed_to_parse_json"));
        }
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("failed_to_parse_json"))?;
        let file = DefinitionsFile::parse(text).map_err(|e| ApiError::bad_request(&e))?;
        let report = a.import_definitions(&file)?;
        if !report.warnings.is_empty() {
            log::info!(
                "definitions imported over HTTP with {} warning(s)",
                report.warnings.len()
            );
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
