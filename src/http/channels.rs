//! `/api/channels…`, `/api/vhosts/{vhost}/channels` and `/api/consumers…`
//! (rabbit_mgmt_wm_channels, _wm_channel, _wm_channels_vhost,
//! _wm_consumers; JSON as rabbit_mgmt_format and the management agent's
//! channel and consumer stats, 3.13).
//!
//! A channel's name is its connection's name and its number, `"<conn>
//! (N)"`. A user who is not a monitor sees only their own channels and
//! consumers (`scope`). warren does not track which consumer of a
//! single-active-consumer queue is the active one per consumer: every
//! consumer shows `active: true`, `activity_status: "up"`.

use super::connections::sort_vhost_name;
use super::listing::ListQuery;
use super::scope::{check_owner, check_vhost, sees_user};
use super::stats_json::{channel_message_stats, VhostNames};
use super::{ok, Api, ApiError, Creds, Level};
use crate::admin::stats::RateView;
use crate::core::definitions_json::table_to_json;
use crate::core::stats::{ChannelSnap, ConnSnap, ConsumerSnap, ShardSnapshot, Want};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;

/// `"<connection name> (<number>)"`.
pub(crate) fn channel_name(conn: &str, number: u16) -> String {
    format!("{conn} ({number})")
}

/// One channel as RabbitMQ's `GET /api/channels` shows it.
pub(crate) fn channel_json(
    ch: &ChannelSnap,
    conn: &ConnSnap,
    node: &str,
    vhost: &str,
    rates: &RateView,
) -> Value {
    let mut v = json!({
        "acks_uncommitted": 0,
        "confirm": ch.confirm,
        "connection_details": {
            "name": conn.name,
            "peer_host": conn.peer_host,
            "peer_port": conn.peer_port,
        },
        "consumer_count": ch.consumer_count,
        "global_prefetch_count": ch.global_prefetch_count,
        "messages_unacknowledged": ch.messages_unacknowledged,
        "messages_uncommitted": 0,
        "messages_unconfirmed": ch.messages_unconfirmed,
        "name": channel_name(&ch.connection, ch.number),
        "node": node,
        "number": ch.number,
        "pending_raft_commands": 0,
        "prefetch_count": ch.prefetch_count,
        "state": ch.state,
        "transactional": ch.transactional,
        "user": ch.user,
        "user_who_performed_action": ch.user,
        "vhost": vhost,
    });
    if let Some(ms) = channel_message_stats(&ch.stats, &rates.channel(&ch.connection, ch.number)) {
        v["message_stats"] = ms;
    }
    v
}

/// One consumer as RabbitMQ's `GET /api/consumers` shows it.
fn consumer_json(c: &ConsumerSnap, conn: Option<&ConnSnap>, node: &str, vhost: &str) -> Value {
    json!({
        "arguments": table_to_json(&c.arguments),
        "ack_required": c.ack_required,
        "active": true,
        "activity_status": "up",
        "channel_details": {
            "connection_name": c.connection,
            "name": channel_name(&c.connection, c.channel),
            "node": node,
            "number": c.channel,
            "peer_host": conn.map_or("", |c| c.peer_host.as_str()),
            "peer_port": conn.map_or(0, |c| c.peer_port),
            "user": c.user,
        },
        "consumer_tag": c.tag,
        "exclusive": c.exclusive,
        "prefetch_count": c.prefetch_count,
        "queue": { "name": c.queue, "vhost": vhost },
    })
}

/// Connections by name, to join channels and consumers with.
fn conns_by_name(snaps: &[ShardSnapshot]) -> HashMap<&str, &ConnSnap> {
    snaps
        .iter()
        .flat_map(|s| &s.connections)
        .map(|c| (c.name.as_str(), c))
        .collect()
}

fn channel_list(
    api: &Api,
    a: &crate::admin::Admin,
    u: &crate::admin::UserView,
    vhost: Option<&str>,
) -> Vec<Value> {
    let want = Want {
        connections: true,
        channels: true,
        ..Want::TOTALS
    };
    let snaps = a.snapshot(want);
    let conns = conns_by_name(&snaps);
    let names = VhostNames(a.vhost_names());
    let rates = api.rates.view();
    let mut items: Vec<Value> = snaps
        .iter()
        .flat_map(|s| &s.channels)
        .filter(|ch| sees_user(u, &ch.user))
        .filter(|ch| vhost.is_none_or(|v| names.name(ch.vhost) == v))
        .filter_map(|ch| {
            let conn = conns.get(ch.connection.as_str())?;
            Some(channel_json(
                ch,
                conn,
                &api.node,
                names.name(ch.vhost),
                &rates,
            ))
        })
        .collect();
    sort_vhost_name(&mut items);
    items
}

/// `GET /api/channels`.
pub(crate) async fn list_all(
    State(api): State<Api>,
    c: Creds,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        let query = ListQuery::parse(&q)?;
        stats_enabled(&query)?;
        Ok(ok(&query.apply(channel_list(&api2, a, u, None))?))
    })
    .await
}

/// `GET /api/vhosts/{vhost}/channels`.
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
        stats_enabled(&query)?;
        Ok(ok(&query.apply(channel_list(&api2, a, u, Some(&vhost)))?))
    })
    .await
}

/// Channel and consumer lists are statistics: RabbitMQ refuses them with
/// `disable_stats`.
fn stats_enabled(q: &ListQuery) -> Result<(), ApiError> {
    if q.disable_stats {
        return Err(ApiError::bad_request(
            "Stats in management UI are disabled on this node",
        ));
    }
    Ok(())
}

/// `GET /api/channels/{name}`: the channel, with `consumer_details`.
pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        let query = ListQuery::parse(&q)?;
        stats_enabled(&query)?;
        let snaps = a.snapshot(Want::ALL);
        let ch = snaps
            .iter()
            .flat_map(|s| &s.channels)
            .find(|ch| channel_name(&ch.connection, ch.number) == name);
        check_owner(u, ch.map(|c| c.user.as_str()), false)?;
        let ch = ch.ok_or_else(ApiError::not_found)?;
        let conns = conns_by_name(&snaps);
        let conn = conns
            .get(ch.connection.as_str())
            .ok_or_else(ApiError::not_found)?;
        let names = VhostNames(a.vhost_names());
        let vhost = names.name(ch.vhost);
        let mut v = channel_json(ch, conn, &api2.node, vhost, &api2.rates.view());
        let consumers: Vec<Value> = snaps
            .iter()
            .flat_map(|s| &s.consumers)
            .filter(|c| c.connection == ch.connection && c.channel == ch.number)
            .map(|c| consumer_json(c, Some(conn), &api2.node, names.name(c.vhost)))
            .collect();
        v["consumer_details"] = json!(consumers);
        v["deliveries"] = json!([]);
        v["publishes"] = json!([]);
        Ok(ok(&query.trim_one(v)))
    })
    .await
}

fn consumer_list(
    api: &Api,
    a: &crate::admin::Admin,
    u: &crate::admin::UserView,
    vhost: Option<&str>,
) -> Vec<Value> {
    let want = Want {
        connections: true,
        consumers: true,
        ..Want::TOTALS
    };
    let snaps = a.snapshot(want);
    let conns = conns_by_name(&snaps);
    let names = VhostNames(a.vhost_names());
    let mut items: Vec<Value> = snaps
        .iter()
        .flat_map(|s| &s.consumers)
        .filter(|c| sees_user(u, &c.user))
        .filter(|c| vhost.is_none_or(|v| names.name(c.vhost) == v))
        .map(|c| {
            let conn = conns.get(c.connection.as_str()).copied();
            consumer_json(c, conn, &api.node, names.name(c.vhost))
        })
        .collect();
    items.sort_by(|x, y| {
        let k = |v: &Value| {
            (
                v["queue"]["vhost"].as_str().unwrap_or("").to_string(),
                v["queue"]["name"].as_str().unwrap_or("").to_string(),
                v["consumer_tag"].as_str().unwrap_or("").to_string(),
            )
        };
        k(x).cmp(&k(y))
    });
    items
}

/// `GET /api/consumers`.
pub(crate) async fn consumers_all(
    State(api): State<Api>,
    c: Creds,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        let query = ListQuery::parse(&q)?;
        stats_enabled(&query)?;
        Ok(ok(&query.apply(consumer_list(&api2, a, u, None))?))
    })
    .await
}

/// `GET /api/consumers/{vhost}`: 404 for a vhost that does not exist.
pub(crate) async fn consumers_vhost(
    State(api): State<Api>,
    c: Creds,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api2 = api.clone();
    api.call(c, Level::Management, move |a, u| {
        a.vhost(&vhost)?;
        let query = ListQuery::parse(&q)?;
        stats_enabled(&query)?;
        Ok(ok(&query.apply(consumer_list(
            &api2,
            a,
            u,
            Some(&vhost),
        ))?))
    })
    .await
}
