//! `/api/exchanges…` (RabbitMQ 3.13's `rabbit_mgmt_wm_exchanges`,
//! `_wm_exchange`, `_wm_exchange_publish`): list, show, declare, delete and
//! publish. `amq.default` in a path names the default exchange (`""`), as
//! in RabbitMQ. The work is `admin::exchanges`.
//!
//! `message_stats` holds `publish_in` and `publish_out` (messages published
//! to the exchange, and those it routed to a queue) once it routed
//! something, as RabbitMQ shows them; rates from the sampler.
//!
//! Omitted: `user_who_performed_action` of exchanges declared by clients
//! (not recorded; the predeclared ones say `rmq-internal`).

use super::listing::ListQuery;
use super::message_json::{payload_from_json, properties_from_json, Refused};
use super::objects::{
    bad_request_json, body_arguments, body_bool, body_str, direct_error, not_found, publish_error,
    query_flag, vhost_not_found,
};
use super::queues::vhost_checked;
use super::scope::check_vhost;
use super::{body_object, created_or_updated, ok, Api, ApiError, Creds, Level};
use crate::admin::stats::{RateView, Sampler};
use crate::admin::ExchangeView;
use crate::core::definitions::ExchangeDef;
use crate::core::definitions::PREDECLARED;
use crate::core::definitions_json::table_to_json;
use crate::core::ids::VhostId;
use crate::core::ops::exchange::ExchangeSpec;
use crate::core::stats::ExchangeStats;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;

/// `amq.default` in a path is the default exchange.
pub(crate) fn exchange_name(path: &str) -> String {
    if path == "amq.default" {
        String::new()
    } else {
        path.to_string()
    }
}

/// The counters of every exchange and a rate view, for one request.
struct XStats {
    counts: HashMap<(VhostId, String), ExchangeStats>,
    rates: RateView,
}

impl XStats {
    fn new(a: &crate::admin::Admin, sampler: &Sampler) -> XStats {
        XStats {
            counts: a.exchange_stats(),
            rates: sampler.view(),
        }
    }

    /// RabbitMQ's exchange `message_stats`, if it routed anything.
    fn message_stats(&self, d: &ExchangeDef) -> Option<Value> {
        let c = self.counts.get(&(d.vhost, d.name.clone()))?;
        let (rin, rout) = self.rates.exchange(d.vhost, &d.name);
        Some(json!({
            "publish_in": c.publish_in,
            "publish_in_details": {"rate": rin},
            "publish_out": c.publish_out,
            "publish_out_details": {"rate": rout},
        }))
    }
}

fn exchange_json(x: &ExchangeView, stats: Option<&XStats>) -> Value {
    let d = &x.def;
    let mut v = json!({
        "name": d.name,
        "vhost": &*x.vhost,
        "type": d.kind.as_str(),
        "durable": d.durable,
        "auto_delete": d.auto_delete,
        "internal": d.internal,
        "arguments": table_to_json(&d.args),
    });
    if PREDECLARED.iter().any(|p| p.0 == d.name) {
        v["user_who_performed_action"] = json!("rmq-internal");
    }
    if let Some(ms) = stats.and_then(|s| s.message_stats(d)) {
        v["message_stats"] = ms;
    }
    v
}

/// `GET /api/exchanges`.
pub(crate) async fn list(
    State(api): State<Api>,
    c: Creds,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_exchanges(api, c, None, q).await
}

/// `GET /api/exchanges/{vhost}`.
pub(crate) async fn list_vhost(
    State(api): State<Api>,
    c: Creds,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_exchanges(api, c, Some(vhost), q).await
}

async fn list_exchanges(
    api: Api,
    c: Creds,
    vhost: Option<String>,
    q: HashMap<String, String>,
) -> Response {
    let sampler = api.rates.clone();
    api.call(c, Level::Management, move |a, user| {
        if let Some(v) = &vhost {
            vhost_checked(a, user, v)?;
        }
        let lq = ListQuery::parse(&q)?;
        let stats = (!lq.disable_stats).then(|| XStats::new(a, &sampler));
        let visible = a.listed_vhosts(user);
        let items: Vec<Value> = a
            .exchanges(vhost.as_deref())
            .iter()
            .filter(|x| visible.contains(&*x.vhost))
            .map(|x| exchange_json(x, stats.as_ref()))
            .collect();
        Ok(ok(&lq.apply(items)?))
    })
    .await
}

/// `GET /api/exchanges/{vhost}/{name}`.
pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sampler = api.rates.clone();
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let lq = ListQuery::parse(&q)?;
        let x = a
            .exchange(&vhost, &exchange_name(&name))
            .ok_or_else(ApiError::not_found)?;
        let stats = (!lq.disable_stats).then(|| XStats::new(a, &sampler));
        let mut v = exchange_json(&x, stats.as_ref());
        if !query_flag(&q, "disable_stats") {
            v["incoming"] = json!([]);
            v["outgoing"] = json!([]);
        }
        Ok(ok(&lq.trim_one(v)))
    })
    .await
}

/// `PUT /api/exchanges/{vhost}/{name}` `{type, durable, auto_delete,
/// internal, arguments}`: 201 created, 204 an equivalent one existed.
pub(crate) async fn put(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        if !a.has_vhost(&vhost) {
            return Err(vhost_not_found());
        }
        let body = body_object(&body)?;
        let flags = ["durable", "auto_delete", "internal"].map(|k| body_bool(&body, k));
        let [durable, auto_delete, internal] = match flags {
            [Ok(d), Ok(a), Ok(i)] => [d, a, i],
            [d, a, i] => return Ok(bad_request_json(d.and(a).and(i).unwrap_err())),
        };
        let spec = ExchangeSpec {
            name: exchange_name(&name),
            kind: body_str(&body, "type", "direct")?,
            durable,
            auto_delete,
            internal,
            arguments: body_arguments(&body)?,
        };
        let created = a
            .declare_exchange(&user.name, &vhost, spec)
            .map_err(direct_error)?;
        Ok(created_or_updated(created))
    })
    .await
}

/// `DELETE /api/exchanges/{vhost}/{name}` (`if-unused=true`).
pub(crate) async fn delete(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let name = exchange_name(&name);
        if a.exchange(&vhost, &name).is_none() {
            return Err(ApiError::not_found());
        }
        a.delete_exchange(&user.name, &vhost, &name, query_flag(&q, "if-unused"))
            .map_err(direct_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

fn refused(reason: Refused) -> Response {
    bad_request_json(reason)
}

/// `POST /api/exchanges/{vhost}/{name}/publish` `{routing_key, properties,
/// payload, payload_encoding}`: `{"routed": bool}`.
pub(crate) async fn publish(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let name = exchange_name(&name);
        if a.exchange(&vhost, &name).is_none() {
            let what = if a.has_vhost(&vhost) {
                "exchange_not_found"
            } else {
                "vhost_not_found"
            };
            return Err(not_found(what));
        }
        let body = body_object(&body)?;
        let missing: Vec<String> = ["routing_key", "properties", "payload", "payload_encoding"]
            .iter()
            .filter(|k| body.get(**k).is_none_or(Value::is_null))
            .map(|k| format!("{{key_missing,{k}}}"))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::bad_request(&format!("[{}]", missing.join(","))));
        }
        let Value::String(key) = &body["routing_key"] else {
            return Err(ApiError::bad_request("routing_key must be a string"));
        };
        if !body["payload"].is_string() {
            return Ok(refused(json!("payload_not_string")));
        }
        let props = match properties_from_json(&body["properties"]) {
            Ok(p) => p,
            Err(r) => return Ok(refused(r)),
        };
        let payload = match payload_from_json(&body["payload"], &body["payload_encoding"]) {
            Ok(p) => p,
            Err(r) => return Ok(refused(r)),
        };
        let routed = a
            .publish(&user.name, &vhost, &name, key, props, payload)
            .map_err(publish_error)?;
        Ok(ok(&json!({ "routed": routed })))
    })
    .await
}
