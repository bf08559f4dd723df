//! `/api/shovels…`: the shovels' status and controls, as RabbitMQ's
//! `rabbitmq_shovel_management` serves them (`rabbit_shovel_mgmt_shovels`,
//! `rabbit_shovel_mgmt_shovel`, `rabbit_shovel_mgmt_util:format`).
//! Creating and changing a shovel is `PUT /api/parameters/shovel/…`
//! (`parameters.rs`).
//!
//! A status entry has `node`, `timestamp` (node local time, hour not
//! padded: `2026-12-05 0:55:32`), `name`, `vhost`, `type` (`dynamic`),
//! `state`; while running the endpoints (URIs without credentials, the
//! source and destination queue or exchange) and 3.11+'s `blocked_status`;
//! when terminated, the `reason`. The message figures are RabbitMQ 4.1's
//! (`forwarded`, `pending`, `remaining`, `remaining_unacked`).

use super::scope::{check_vhost, visible_vhosts};
use super::{ok, Api, ApiError, Creds, Level};
use crate::core::shovel_def::{Protocol, Source};
use crate::shovel::status::{State, Status};
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// One status entry as RabbitMQ shows it.
pub(crate) fn status_json(s: &Status, node: &str) -> Value {
    let mut o = Map::new();
    o.insert("node".into(), json!(node));
    o.insert("timestamp".into(), json!(local_time(s.since)));
    o.insert("name".into(), json!(s.name));
    o.insert("vhost".into(), json!(s.vhost));
    o.insert("type".into(), json!("dynamic"));
    let proto = |p: Protocol| match p {
        Protocol::Amqp091 => "amqp091",
        Protocol::Amqp10 => "amqp10",
    };
    match &s.state {
        State::Running => {
            let blocked = if s.blocked { "blocked" } else { "running" };
            o.insert("state".into(), json!(blocked));
            o.insert("blocked_status".into(), json!(blocked));
            o.insert("src_uri".into(), json!(s.src_uri));
            o.insert("dest_uri".into(), json!(s.dest_uri));
            o.insert("src_protocol".into(), json!(proto(s.src_protocol)));
            o.insert("dest_protocol".into(), json!(proto(s.dest_protocol)));
            match &s.source {
                Some(Source::Queue { name, .. }) => {
                    o.insert("src_queue".into(), json!(name));
                }
                Some(Source::Exchange { name, key }) => {
                    o.insert("src_exchange".into(), json!(name));
                    o.insert("src_exchange_key".into(), json!(key));
                }
                Some(Source::Address(a)) => {
                    o.insert("src_address".into(), json!(a));
                }
                None => {}
            }
            if let Some(d) = &s.dest {
                for (k, v) in [
                    ("dest_exchange", &d.exchange),
                    ("dest_exchange_key", &d.exchange_key),
                    ("dest_queue", &d.queue),
                    ("dest_address", &d.address),
                ] {
                    if let Some(v) = v {
                        o.insert(k.into(), json!(v));
                    }
                }
            }
        }
        State::Starting => {
            o.insert("state".into(), json!("starting"));
        }
        State::Terminated(reason) => {
            o.insert("state".into(), json!("terminated"));
            o.insert("reason".into(), json!(reason));
        }
    }
    o.insert("forwarded".into(), json!(s.forwarded));
    o.insert("pending".into(), json!(s.pending));
    o.insert("remaining_unacked".into(), json!(s.pending));
    o.insert(
        "remaining".into(),
        match s.remaining {
            Some(n) => json!(n),
            None => json!("unlimited"),
        },
    );
    Value::Object(o)
}

/// `GET /api/shovels`: every shovel in the vhosts the user sees.
pub(crate) async fn list(AxState(api): AxState<Api>, c: Creds) -> Response {
    let node = api.node.clone();
    let shovels = api.shovels.clone();
    api.call(c, Level::Monitor, move |a, user| {
        let visible = visible_vhosts(a, user);
        let out: Vec<Value> = shovels
            .status(None)
            .iter()
            .filter(|s| visible.as_ref().is_none_or(|v| v.contains(&s.vhost)))
            .map(|s| status_json(s, &node))
            .collect();
        Ok(ok(&out))
    })
    .await
}

/// `GET /api/shovels/{vhost}`; 404 for an unknown vhost.
pub(crate) async fn list_vhost(
    AxState(api): AxState<Api>,
    c: Creds,
    Path(vhost): Path<String>,
) -> Response {
    let node = api.node.clone();
    let shovels = api.shovels.clone();
    api.call(c, Level::Monitor, move |a, user| {
        a.vhost(&vhost)?;
        check_vhost(a, user, &vhost)?;
        let out: Vec<Value> = shovels
            .status(Some(&vhost))
            .iter()
            .map(|s| status_json(s, &node))
            .collect();
        Ok(ok(&out))
    })
    .await
}

/// `GET /api/shovels/vhost/{vhost}/{name}`: the shovel's definition (the
/// runtime parameter), as RabbitMQ 3.11+ answers.
pub(crate) async fn get_one(
    AxState(api): AxState<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let p = a
            .list_parameters(Some("shovel"), Some(&vhost))
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(ApiError::not_found)?;
        Ok(ok(&json!({
            "component": "shovel",
            "name": p.name,
            "value": p.value,
            "vhost": p.vhost,
        })))
    })
    .await
}

/// `DELETE /api/shovels/vhost/{vhost}/{name}`: removes the shovel (clears
/// its parameter); 404 if there is none.
pub(crate) async fn delete(
    AxState(api): AxState<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        a.clear_parameter(&vhost, "shovel", &name)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `DELETE /api/shovels/vhost/{vhost}/{name}/restart`: stops and starts
/// the worker again; 404 if the shovel has no status.
pub(crate) async fn restart(
    AxState(api): AxState<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
) -> Response {
    let shovels = api.shovels.clone();
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        if !shovels.restart(&vhost, &name) {
            return Err(ApiError::not_found());
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `YYYY-MM-DD H:MM:SS` in the node's local time, the hour not padded
/// (RabbitMQ formats it with `~w`).
pub(crate) fn local_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r writes into `tm`, which we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return String::new();
    }
    format!(
        "{}-{:02}-{:02} {}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
