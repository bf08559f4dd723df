//! `/api/connections…` and `/api/vhosts/{vhost}/connections`
//! (rabbit_mgmt_wm_connections, _wm_connection, _wm_connections_vhost,
//! _wm_connection_channels, _wm_connection_user_name; JSON as
//! rabbit_mgmt_format and the management agent's connection stats, 3.13).
//!
//! Every list takes the usual query parameters (`listing::ListQuery`) and
//! is sorted by vhost, then name, unless `sort` says otherwise. A user who
//! is not a monitor sees only their own connections (`scope`).
//!
//! Beyond RabbitMQ's fields, a connection carries `blocked_by` (only while
//! it is blocked): "memory alarm", "disk alarm" or "flow control (ring to
//! shard N full)", the reason RabbitMQ's `state: blocked`/`flow` leaves
//! out.

use super::channels::channel_json;
use super::listing::ListQuery;
use super::scope::{check_owner, check_vhost, sees_user};
use super::stats_json::{details, VhostNames};
use super::{ok, Api, ApiError, Creds, Level};
use crate::admin::stats::RateView;
use crate::admin::Admin;
use crate::core::definitions_json::table_to_json;
use crate::core::stats::{ConnSnap, ShardSnapshot, Want};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The reason a connection closed over the API gets when the request has
/// no `X-Reason` header (RabbitMQ's).
pub(crate) const DEFAULT_CLOSE_REASON: &str = "Closed via management plugin";

const CONNECTIONS: Want = Want {
    queues: false,
    connections: true,
    channels: false,
    consumers: false,
    exchanges: false,
};

/// One connection as RabbitMQ's `GET /api/connections` shows it.
pub(crate) fn connection_json(c: &ConnSnap, node: &str, vhost: &str, rates: &RateView) -> Value {
    let (recv_rate, send_rate) = rates.connection(&c.name);
    let client_properties = table_to_json(&c.client_properties);
    let mut m = Map::new();
    m.insert("auth_mechanism".into(), json!(c.auth_mechanism));
    m.insert("channel_max".into(), json!(c.channel_max));
    m.insert("channels".into(), json!(c.channels));
    if let Some(Value::String(n)) = client_properties.get("connection_name") {
        m.insert("user_provided_name".into(), json!(n));
    }
    m.insert("client_properties".into(), Value::Object(client_properties));
    m.insert("connected_at".into(), json!(c.connected_at));
    m.insert("frame_max".into(), json!(c.frame_max));
    m.insert("host".into(), json!(c.host));
    m.insert("name".into(), json!(c.name));
    m.insert("node".into(), json!(node));
    m.insert("peer_cert_issuer".into(), Value::Null);
    m.insert("peer_cert_subject".into(), json!(c.peer_cert_subject));
    m.insert("peer_cert_validity".into(), Value::Null);
    m.insert("peer_host".into(), json!(c.peer_host));
    m.insert("peer_port".into(), json!(c.peer_port));
    m.insert("port".into(), json!(c.port));
    m.insert("protocol".into(), json!(c.protocol));
    m.insert("recv_cnt".into(), json!(c.recv_cnt));
    m.insert("recv_oct".into(), json!(c.recv_oct));
    m.insert("recv_oct_details".into(), details(recv_rate));
    m.insert("send_cnt".into(), json!(c.send_cnt));
    m.insert("send_oct".into(), json!(c.send_oct));
    m.insert("send_oct_details".into(), details(send_rate));
    m.insert("send_pend".into(), json!(c.send_pend));
    m.insert("ssl".into(), json!(c.ssl));
    m.insert("ssl_cipher".into(), json!(c.ssl_cipher));
    m.insert("ssl_hash".into(), Value::Null);
    m.insert("ssl_key_exchange".into(), Value::Null);
    m.insert("ssl_protocol".into(), json!(c.ssl_protocol));
    m.insert("state".into(), json!(c.state));
    m.insert("timeout".into(), json!(c.heartbeat));
    m.insert("type".into(), json!("network"));
    m.insert("user".into(), json!(c.user));
    m.insert("user_who_performed_action".into(), json!(c.user));
    m.insert("vhost".into(), json!(vhost));
    if let Some(b) = &c.blocked_by {
        m.insert("blocked_by".into(), json!(b.describe()));
    }
    Value::Object(m)
}

/// A connection as RabbitMQ lists tracked connections (`disable_stats`,
/// `/api/connections/username/{user}`).
fn tracked_json(c: &ConnSnap, node: &str, vhost: &str) -> Value {
    json!({ "name": c.name, "vhost": vhost, "user": c.user, "node": node })
}

/// Sorts by vhost, then name: RabbitMQ's default order for lists.
pub(crate) fn sort_vhost_name(items: &mut [Value]) {
    let key = |v: &Value| {
        (
            v["vhost"].as_str().unwrap_or("").to_string(),
            v["name"].as_str().unwrap_or("").to_string(),
        )
    };
    items.sort_by_key(key);
}

fn all_connections(snaps: &[ShardSnapshot]) -> impl Iterator<Item = &ConnSnap> {
    snaps.iter().flat_map(|s| &s.connections)
}

/// The connections `u` may see, in `vhost` if given, as JSON.
fn list(
    a: &Admin,
    api: &Api,
    u: &crate::admin::UserView,
    vhost: Option<&str>,
    tracked: bool,
) -> Vec<Value> {
    let snaps = a.snapshot(CONNECTIONS);
    let names = VhostNames(a.vhost_names());
    let rates = (!tracked).then(|| api.rates.view());
    let mut items: Vec<Value> = all_connections(&snaps)
        .filter(|c| sees_user(u, &c.user))
        .filter(|c| vhost.is_none_or(|v| names.name(c.vhost) == v))
        .map(|c| match &rates {
            Some(r) => connection_json(c, &api.node, names.name(c.vhost), r),
            None => tracked_json(c, &api.node, names.name(c.vhost)),
        })
        .collect();
    sort_vhost_name(&mut items);
    items
}

/// `GET /api/connections`.
pub(crate) async fn list_all(
    State(api): State<Api>,
    c: Creds,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        let query = ListQuery::parse(&q)?;
        let items = list(a, &api2, u, None, query.disable_stats);
        Ok(ok(&query.apply(items)?))
    })
    .await
}

/// `GET /api/vhosts/{vhost}/connections`.
pub(crate) async fn list_vhost(
    State(api): State<Api>,
    c: Creds,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        check_vhost(a, u, &vhost)?;
        a.vhost(&vhost)?;
        let query = ListQuery::parse(&q)?;
        let items = list(a, &api2, u, Some(&vhost), query.disable_stats);
        Ok(ok(&query.apply(items)?))
    })
    .await
}

/// The connection named `name`, if any.
fn find(a: &Admin, name: &str) -> Option<ConnSnap> {
    a.snapshot(CONNECTIONS)
        .into_iter()
        .flat_map(|s| s.connections)
        .find(|c| c.name == name)
}

/// `GET /api/connections/{name}`.
pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        let conn = find(a, &name);
        check_owner(u, conn.as_ref().map(|c| c.user.as_str()), false)?;
        let conn = conn.ok_or_else(ApiError::not_found)?;
        let query = ListQuery::parse(&q)?;
        if query.disable_stats {
            return Ok(ok(&json!({ "name": conn.name })));
        }
        let names = VhostNames(a.vhost_names());
        let v = connection_json(
            &conn,
            &api2.node,
            names.name(conn.vhost),
            &api2.rates.view(),
        );
        Ok(ok(&query.trim_one(v)))
    })
    .await
}

/// The `X-Reason` header, or RabbitMQ's default reason.
fn close_reason(headers: &HeaderMap) -> String {
    headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| DEFAULT_CLOSE_REASON.to_string(), str::to_string)
}

/// `DELETE /api/connections/{name}` (header `X-Reason`): the client gets
/// connection.close 320 `CONNECTION_FORCED - <reason>`; 204.
pub(crate) async fn delete_one(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let reason = close_reason(&headers);
    api.call(c, Level::Management, move |a, u| {
        let conn = find(a, &name);
        check_owner(u, conn.as_ref().map(|c| c.user.as_str()), true)?;
        if conn.is_none() || !a.close_connection(&name, &reason) {
            return Err(ApiError::not_found());
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `GET /api/connections/{name}/channels`.
pub(crate) async fn channels_of(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        let want = Want {
            connections: true,
            channels: true,
            ..Want::TOTALS
        };
        let snaps = a.snapshot(want);
        let conn = all_connections(&snaps).find(|c| c.name == name);
        check_owner(u, conn.map(|c| c.user.as_str()), false)?;
        let conn = conn.ok_or_else(ApiError::not_found)?;
        let names = VhostNames(a.vhost_names());
        let rates = api2.rates.view();
        let mut items: Vec<Value> = snaps
            .iter()
            .flat_map(|s| &s.channels)
            .filter(|ch| ch.connection == name && sees_user(u, &ch.user))
            .map(|ch| channel_json(ch, conn, &api2.node, names.name(ch.vhost), &rates))
            .collect();
        sort_vhost_name(&mut items);
        let query = ListQuery::parse(&q)?;
        Ok(ok(&query.apply(items)?))
    })
    .await
}

/// `GET /api/connections/username/{user}`: that user's connections, as
/// tracked connections (`name`, `vhost`, `user`, `node`).
pub(crate) async fn of_user(
    State(api): State<Api>,
    c: Creds,
    Path(user): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let node = api.node.clone();
    api.call(c, Level::Management, move |a, u| {
        check_owner(u, Some(&user), false)?;
        let snaps = a.snapshot(CONNECTIONS);
        let names = VhostNames(a.vhost_names());
        let mut items: Vec<Value> = all_connections(&snaps)
            .filter(|c| c.user == user && sees_user(u, &c.user))
            .map(|c| tracked_json(c, &node, names.name(c.vhost)))
            .collect();
        sort_vhost_name(&mut items);
        let query = ListQuery::parse(&q)?;
        Ok(ok(&query.apply(items)?))
    })
    .await
}

/// `DELETE /api/connections/username/{user}` (header `X-Reason`): closes
/// every connection of the user; 204, also when there was none.
pub(crate) async fn delete_of_user(
    State(api): State<Api>,
    c: Creds,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let reason = close_reason(&headers);
    api.call(c, Level::Management, move |a, u| {
        check_owner(u, Some(&user), true)?;
        let snaps = a.snapshot(CONNECTIONS);
        for conn in all_connections(&snaps).filter(|c| c.user == user) {
            a.close_connection(&conn.name, &reason);
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
