//! `/api/queues…` (RabbitMQ 3.13's `rabbit_mgmt_wm_queues`, `_wm_queue`,
//! `_wm_queue_purge`, `_wm_queue_get`): list, show, declare, delete, purge
//! and get. The work is `admin::objects`; this file reads requests and
//! writes RabbitMQ's JSON.
//!
//! warren adds `latency` to one queue and to the detailed list:
//! histograms of time in queue and publish → confirm (`core::latency`).
//!
//! Shapes, as 3.13 answers them: a list without `columns` gets the "basic"
//! statistics (no `idle_since`, no null fields), a list with `columns` or
//! `/api/queues/detailed` the detailed ones, one queue everything plus
//! `consumer_details`, `deliveries` and `incoming`; `disable_stats=true`
//! leaves only the definition (`enable_queue_totals=true` adds the message
//! counts). Keys come out sorted, as RabbitMQ's `strip_pids` sorts them.
//!
//! Approximations: `messages_ram` / `message_bytes_ram` count what is not
//! paged out (bytes proportionally), `messages_persistent` and
//! `message_bytes_persistent` are 0 (not counted per queue), `memory` is the
//! queue's own structures (`Queue::memory`), `reductions` 0. Rates of
//! message counts (`messages_details`) are 0.0; `message_stats` rates come
//! from the sampler.

use super::cluster_view::{local_only, Quorums};
use super::listing::ListQuery;
use super::message_json::{payload_to_json, properties_to_json};
use super::objects::{
    bad_request_json, body_arguments, body_bool, channel_error, direct_error, not_found,
    query_flag, rate, rfc3339_ms, vhost_not_found,
};
use super::scope::check_vhost;
use super::{body_object, created_or_updated, json, ok, Api, ApiError, Creds, Level};
use crate::admin::objects::{AckMode, QueueInfo};
use crate::admin::stats::RateView;
use crate::admin::Admin;
use crate::core::definitions_json::table_to_json;
use crate::core::latency::{Histogram, BOUNDS_US};
use crate::core::ops::queue::QueueSpec;
use crate::core::queue_args;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Which of RabbitMQ's queue shapes to write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `disable_stats=true`: the definition only.
    Definition,
    /// `disable_stats=true&enable_queue_totals=true`.
    Totals,
    /// A list without `columns` (3.13's `detailed_queues_endpoint`).
    Basic,
    /// A list with `columns`, or `/api/queues/detailed`.
    Detailed,
    /// One queue.
    Full,
}

fn shape(q: &HashMap<String, String>, list: bool, detailed: bool) -> Shape {
    if query_flag(q, "disable_stats") {
        if query_flag(q, "enable_queue_totals") {
            Shape::Totals
        } else {
            Shape::Definition
        }
    } else if !list {
        Shape::Full
    } else if detailed || q.contains_key("columns") {
        Shape::Detailed
    } else {
        Shape::Basic
    }
}

/// One queue as RabbitMQ's JSON.
/// The value of a plain sort field of a queue without rendering it (None:
/// a field this does not know, e.g. `message_stats.…`, sorted the slow way).
fn sort_key(qi: &QueueInfo, field: &str) -> Option<Value> {
    let s = &qi.snap;
    Some(match field {
        "name" => json!(s.name),
        "vhost" => json!(&*qi.vhost),
        "messages" => json!(s.messages_ready + s.messages_unacked),
        "messages_ready" => json!(s.messages_ready),
        "messages_unacknowledged" => json!(s.messages_unacked),
        "message_bytes" => json!(s.bytes_ready + s.bytes_unacked),
        "message_bytes_ready" => json!(s.bytes_ready),
        "message_bytes_unacknowledged" => json!(s.bytes_unacked),
        "consumers" => json!(s.consumers),
        "memory" => json!(s.memory),
        "durable" => json!(s.durable),
        "auto_delete" => json!(s.auto_delete),
        "exclusive" => json!(s.exclusive_owner.is_some()),
        "type" | "state" | "node" => json!(""),
        _ => return None,
    })
}

/// A latency histogram for the API: `buckets` as `[upper bound in ms (null
/// for +Inf), count in that bucket]`, not cumulative, plus `count` and
/// `sum_ms`.
fn histogram_json(h: &Histogram) -> Value {
    let buckets: Vec<Value> = h
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let le = BOUNDS_US.get(i).map(|us| *us as f64 / 1000.0);
            json!([le, c])
        })
        .collect();
    json!({
        "buckets": buckets,
        "count": h.count(),
        "sum_ms": h.sum_us as f64 / 1000.0,
    })
}

/// A queue's JSON, with a quorum queue's cluster fields
/// (`cluster_view::Quorums`; on a single node it is its own leader).
fn queue_json(
    qi: &QueueInfo,
    node: &str,
    shape: Shape,
    rates: Option<&RateView>,
    quorums: Option<&Quorums>,
) -> Value {
    let mut v = queue_json_alone(qi, node, shape, rates);
    if queue_args::is_quorum(&qi.snap.arguments) {
        if let Value::Object(m) = &mut v {
            m.insert("type".into(), json!("quorum"));
            if !quorums.is_some_and(|q| q.put(m, &qi.vhost, &qi.snap.name)) {
                m.insert("leader".into(), json!(node));
                m.insert("members".into(), json!([node]));
                m.insert("online".into(), json!([node]));
            }
        }
    }
    v
}

fn queue_json_alone(qi: &QueueInfo, node: &str, shape: Shape, rates: Option<&RateView>) -> Value {
    let s = &qi.snap;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("name", json!(s.name));
    put("vhost", json!(&*qi.vhost));
    put("durable", json!(s.durable));
    put("auto_delete", json!(s.auto_delete));
    put("exclusive", json!(s.exclusive_owner.is_some()));
    put("arguments", Value::Object(table_to_json(&s.arguments)));
    put(
        "type",
        json!(if s.stream.is_some() {
            "stream"
        } else {
            "classic"
        }),
    );
    put("state", json!("running"));
    put("node", json!(node));
    let (ready, unacked) = (s.messages_ready, s.messages_unacked);
    if shape == Shape::Totals {
        put("messages", json!(ready + unacked));
        put("messages_ready", json!(ready));
        put("messages_unacknowledged", json!(unacked));
    }
    if matches!(shape, Shape::Definition | Shape::Totals) {
        return Value::Object(m);
    }
    let zero = [0.0; 12];
    let r = rates.map_or(zero, |v| v.queue(s.vhost, &s.name));
    let in_ram = ready - s.messages_paged_out;
    let bytes_ram = s
        .bytes_ready
        .checked_mul(in_ram)
        .map_or(0, |x| x / ready.max(1));
    let active = s.consumers > 0;
    put("consumers", json!(s.consumers));
    let capacity = if active { json!(1.0) } else { json!(0) };
    put("consumer_capacity", capacity.clone());
    put("consumer_utilisation", capacity);
    put("memory", json!(s.memory));
    put("messages", json!(ready + unacked));
    put("messages_details", rate(0.0));
    put("messages_ready", json!(ready));
    put("messages_ready_details", rate(0.0));
    put("messages_unacknowledged", json!(unacked));
    put("messages_unacknowledged_details", rate(0.0));
    put("messages_ram", json!(in_ram + unacked));
    put("messages_ready_ram", json!(in_ram));
    put("messages_unacknowledged_ram", json!(unacked));
    put("messages_persistent", json!(0));
    put("messages_paged_out", json!(s.messages_paged_out));
    put("message_bytes", json!(s.bytes_ready + s.bytes_unacked));
    put("message_bytes_ready", json!(s.bytes_ready));
    put("message_bytes_unacknowledged", json!(s.bytes_unacked));
    put("message_bytes_ram", json!(bytes_ram + s.bytes_unacked));
    put("message_bytes_persistent", json!(0));
    put("message_bytes_paged_out", json!(s.bytes_ready - bytes_ram));
    if let Some(st) = &s.stream {
        // RabbitMQ's stream queue items, and warren's per-reader offsets.
        put("members", json!([node]));
        put("online", json!([node]));
        put("leader", json!(node));
        put("readers", json!({ node: st.readers.len() }));
        put("first_offset", json!(st.first_offset));
        put("committed_offset", json!(st.next_offset.checked_sub(1)));
        put("segments", json!(st.segments));
        put("stream_cached_bytes", json!(st.cached_bytes));
        let readers: Vec<Value> = st
            .readers
            .iter()
            .map(|r| json!({"consumer_tag": r.tag, "offset": r.offset, "offset_lag": r.offset_lag}))
            .collect();
        put("stream_readers", json!(readers));
        put(
            "max_offset_lag",
            json!(st.readers.iter().map(|r| r.offset_lag).max().unwrap_or(0)),
        );
    }
    put("reductions", json!(0));
    put("reductions_details", rate(0.0));
    put("effective_policy_definition", json!({}));
    put("storage_version", json!(2));
    let stats = s.stats;
    let mut ms = Map::new();
    let fields = stats.fields();
    for (i, (name, value)) in fields.iter().enumerate() {
        let group_moved = if *name == "publish" {
            stats.publish > 0
        } else {
            stats.deliver_get() + stats.redeliver + stats.ack + stats.get_empty > 0
        };
        let queue_field = !matches!(*name, "confirm" | "return_unroutable" | "drop_unroutable");
        if queue_field && group_moved {
            ms.insert(name.to_string(), json!(value));
            ms.insert(format!("{name}_details"), rate(r[i]));
        }
    }
    if !ms.is_empty() {
        put("message_stats", Value::Object(ms));
    }
    // warren's own: the latency histograms (`core::latency`), in the
    // detailed shapes only (21 buckets each: too much for every row of a
    // plain list).
    if shape != Shape::Basic {
        put(
            "latency",
            json!({
                "time_in_queue": histogram_json(&s.time_in_queue),
                "publish_to_confirm": histogram_json(&s.confirm_latency),
            }),
        );
    }
    let tag = qi
        .exclusive_consumer_tag
        .as_ref()
        .map_or(Value::Null, |t| json!(t));
    if shape == Shape::Basic {
        if !tag.is_null() {
            put("exclusive_consumer_tag", tag);
        }
        return Value::Object(m);
    }
    put("exclusive_consumer_tag", tag);
    for k in [
        "policy",
        "operator_policy",
        "single_active_consumer_tag",
        "head_message_timestamp",
        "recoverable_slaves",
    ] {
        put(k, Value::Null);
    }
    if let Some(ms) = s.idle_since {
        put("idle_since", json!(rfc3339_ms(ms)));
    }
    if shape == Shape::Full {
        let consumers: Vec<Value> = qi
            .consumers
            .iter()
            .map(|(c, peer)| {
                let (peer_host, peer_port) = peer.clone().unwrap_or_default();
                json!({
                    "arguments": table_to_json(&c.arguments),
                    "ack_required": c.ack_required,
                    "active": true,
                    "activity_status": "up",
                    "channel_details": {
                        "connection_name": c.connection,
                        "name": format!("{} ({})", c.connection, c.channel),
                        "node": node,
                        "number": c.channel,
                        "peer_host": peer_host,
                        "peer_port": peer_port,
                        "user": c.user,
                    },
                    "consumer_tag": c.tag,
                    "exclusive": c.exclusive,
                    "prefetch_count": c.prefetch_count,
                    "queue": { "name": s.name, "vhost": &*qi.vhost },
                })
            })
            .collect();
        put("consumer_details", Value::Array(consumers));
        put("deliveries", json!([]));
        put("incoming", json!([]));
        if let Some(o) = &qi.owner {
            put(
                "owner_pid_details",
                json!({ "name": o.name, "peer_host": o.peer_host, "peer_port": o.peer_port }),
            );
        }
    }
    Value::Object(m)
}

/// `GET /api/queues`.
pub(crate) async fn list(
    State(api): State<Api>,
    c: Creds,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_queues(api, c, &h, None, q, false).await
}

/// `GET /api/queues/detailed`.
pub(crate) async fn list_detailed(
    State(api): State<Api>,
    c: Creds,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_queues(api, c, &h, None, q, true).await
}

/// `GET /api/queues/{vhost}`.
pub(crate) async fn list_vhost(
    State(api): State<Api>,
    c: Creds,
    h: HeaderMap,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_queues(api, c, &h, Some(vhost), q, false).await
}

async fn list_queues(
    api: Api,
    c: Creds,
    h: &HeaderMap,
    vhost: Option<String>,
    q: HashMap<String, String>,
    detailed: bool,
) -> Response {
    let (node, rates) = (api.node.clone(), api.rates.clone());
    // Another node asking for this node's own queues gets them rendered
    // with their cluster fields, and no fan-out.
    let quorums_of = api.cluster.clone();
    let cluster = api.cluster.clone().filter(|_| !local_only(h));
    if let Some(cluster) = cluster {
        let creds = c.clone();
        return api
            .call(c, Level::Management, move |a, user| {
                if let Some(v) = &vhost {
                    check_vhost(a, user, v)?;
                    if !a.has_vhost(v) {
                        return Err(ApiError::not_found());
                    }
                }
                let lq = ListQuery::parse(&q)?;
                let shape = shape(&q, true, detailed);
                let view = (!lq.disable_stats).then(|| rates.view());
                let visible = a.listed_vhosts(user);
                let quorums = cluster.quorums();
                let mut items = a.queues(vhost.as_deref());
                items.retain(|qi| visible.contains(&*qi.vhost));
                let mut values: Vec<Value> = items
                    .iter()
                    .map(|qi| queue_json(qi, &node, shape, view.as_ref(), Some(&quorums)))
                    .collect();
                values.extend(super::cluster_view::other_nodes_queues(
                    a,
                    &cluster,
                    &creds,
                    &quorums,
                    vhost.as_deref(),
                    &visible,
                    &q,
                    detailed,
                ));
                let listed = lq.apply(values)?;
                Ok(ok(&listed))
            })
            .await;
    }
    api.call(c, Level::Management, move |a, user| {
        if let Some(v) = &vhost {
            check_vhost(a, user, v)?;
            if !a.has_vhost(v) {
                return Err(ApiError::not_found());
            }
        }
        let quorums = quorums_of.as_ref().map(|c| c.quorums());
        let lq = ListQuery::parse(&q)?;
        let shape = shape(&q, true, detailed);
        let view = (!lq.disable_stats).then(|| rates.view());
        let visible = a.listed_vhosts(user);
        let mut items = a.queues(vhost.as_deref());
        items.retain(|qi| visible.contains(&*qi.vhost));
        let listed = lq.apply_lazy(
            items,
            |qi| &qi.snap.name,
            sort_key,
            |qi| queue_json(qi, &node, shape, view.as_ref(), quorums.as_ref()),
        )?;
        Ok(super::ok_bytes(listed))
    })
    .await
}

/// `GET /api/queues/{vhost}/{name}`.
pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    h: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (node, rates) = (api.node.clone(), api.rates.clone());
    let quorums_of = api.cluster.clone();
    let cluster = api.cluster.clone().filter(|_| !local_only(&h));
    let creds = c.clone();
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let lq = ListQuery::parse(&q)?;
        let quorums = quorums_of.as_ref().map(|c| c.quorums());
        let Some(qi) = a.queue_info(&vhost, &name) else {
            // Held by another node: as it answers.
            let v = cluster
                .as_ref()
                .zip(quorums.as_ref())
                .and_then(|(c, qs)| {
                    super::cluster_view::other_node_queue(a, c, &creds, qs, &vhost, &name, &q)
                })
                .ok_or_else(ApiError::not_found)?;
            return Ok(ok(&lq.trim_one(v)));
        };
        let view = (!lq.disable_stats).then(|| rates.view());
        let v = queue_json(
            &qi,
            &node,
            shape(&q, false, false),
            view.as_ref(),
            quorums.as_ref(),
        );
        Ok(ok(&lq.trim_one(v)))
    })
    .await
}

/// `PUT /api/queues/{vhost}/{name}` `{durable, auto_delete, arguments}`:
/// 201 created, 204 an equivalent queue existed, 400 otherwise.
pub(crate) async fn put(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        if name.len() > 255 {
            return Err(ApiError::bad_request(&format!(
                "queue should be less than 255 bytes, actually was {}\n",
                name.len()
            )));
        }
        if !a.has_vhost(&vhost) {
            return Err(vhost_not_found());
        }
        let body = body_object(&body)?;
        // rabbit_channel: an exclusive declare without a connection is
        // owned by nobody, and never durable.
        let flags = ["durable", "auto_delete", "exclusive"].map(|k| body_bool(&body, k));
        let [durable, auto_delete, exclusive] = match flags {
            [Ok(d), Ok(a), Ok(e)] => [d, a, e],
            [d, a, e] => return Ok(bad_request_json(d.and(a).and(e).unwrap_err())),
        };
        let spec = QueueSpec {
            name,
            durable: durable && !exclusive,
            exclusive: false,
            auto_delete,
            arguments: body_arguments(&body)?,
        };
        let created = a
            .declare_queue(&user.name, &vhost, spec)
            .map_err(direct_error)?;
        Ok(created_or_updated(created))
    })
    .await
}

/// `DELETE /api/queues/{vhost}/{name}` (`if-unused=true`, `if-empty=true`).
pub(crate) async fn delete(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        if !a.has_queue(&vhost, &name) {
            return Err(ApiError::not_found());
        }
        let (if_unused, if_empty) = (query_flag(&q, "if-unused"), query_flag(&q, "if-empty"));
        a.delete_queue(&user.name, &vhost, &name, if_unused, if_empty)
            .map_err(direct_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `DELETE /api/queues/{vhost}/{name}/contents`: purge.
pub(crate) async fn purge(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        if !a.has_queue(&vhost, &name) {
            return Err(ApiError::not_found());
        }
        a.purge_queue(&user.name, &vhost, &name)
            .map_err(direct_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// A number given as a JSON number or a string (`rabbit_mgmt_util:parse_int`).
fn int_field(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `POST /api/queues/{vhost}/{name}/get` `{count, ackmode, encoding,
/// truncate}`: the messages taken, as a list.
pub(crate) async fn get_messages(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        if !a.has_queue(&vhost, &name) {
            let what = if a.has_vhost(&vhost) {
                "queue_not_found"
            } else {
                "vhost_not_found"
            };
            return Err(not_found(what));
        }
        let body = body_object(&body)?;
        let missing: Vec<String> = ["ackmode", "count", "encoding"]
            .iter()
            .filter(|k| body.get(**k).is_none_or(Value::is_null))
            .map(|k| format!("{{key_missing,{k}}}"))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::bad_request(&format!("[{}]", missing.join(","))));
        }
        let mode = body["ackmode"]
            .as_str()
            .and_then(AckMode::parse)
            // RabbitMQ crashes on it (500) before taking anything.
            .ok_or_else(|| ApiError::internal("invalid ackmode"))?;
        let count = int_field(&body["count"])
            .filter(|&n| n >= 0)
            .ok_or_else(|| ApiError::bad_request("count must be an integer"))?;
        let auto = match body["encoding"].as_str() {
            Some("auto") => true,
            Some("base64") => false,
            _ => {
                return Err(ApiError::bad_request(
                    "Unsupported encoding. Please use auto or base64.",
                ))
            }
        };
        let truncate = match body.get("truncate") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                int_field(v)
                    .filter(|&n| n >= 0)
                    .ok_or_else(|| ApiError::bad_request("truncate must be an integer"))?
                    as usize,
            ),
        };
        let got = a
            .get_messages(&user.name, &vhost, &name, count as usize, mode)
            .map_err(channel_error)?;
        let out: Vec<Value> = got
            .iter()
            .map(|g| {
                let (payload, encoding) = payload_to_json(g.msg.body(), auto, truncate);
                json!({
                    "payload_bytes": g.msg.body().len(),
                    "redelivered": g.redelivered,
                    "exchange": String::from_utf8_lossy(g.msg.exchange()),
                    "routing_key": String::from_utf8_lossy(g.msg.routing_key()),
                    "message_count": g.message_count,
                    "properties": properties_to_json(g.msg.properties()),
                    "payload": payload,
                    "payload_encoding": encoding,
                })
            })
            .collect();
        Ok(json(StatusCode::OK, &out))
    })
    .await
}

/// Used by the binding endpoints: the vhost check and its 404.
pub(crate) fn vhost_checked(
    a: &Admin,
    user: &crate::admin::UserView,
    vhost: &str,
) -> Result<(), ApiError> {
    check_vhost(a, user, vhost)?;
    if a.has_vhost(vhost) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}
