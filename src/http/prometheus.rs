//! The Prometheus endpoint, RabbitMQ's `rabbitmq_prometheus` plugin
//! (rabbit_prometheus_dispatcher, rabbit_prometheus_handler): a listener of
//! its own (`--prometheus-port`, 15692 by default) served by the HTTP API's
//! runtime thread, without authentication, as RabbitMQ's.
//!
//! - `GET /metrics`: node-wide figures, object metrics summed;
//! - `GET /metrics/per-object`: one sample per queue, channel and
//!   connection;
//! - `GET /metrics/detailed?family=…&vhost=…`: the families named (RabbitMQ
//!   table names), per object, prefixed `rabbitmq_detailed_`.
//!
//! A scrape takes one snapshot of every shard (one control round trip; a
//! shard copies its numbers between two events) on a blocking thread, then
//! renders it (`prometheus_text`) off the shards.

use super::prometheus_text::{render, Endpoint, NodeFigures, ScrapeData};
use super::Api;
use crate::core::stats::Want;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashSet;

/// The Prometheus listener's routes.
pub(crate) fn router(api: Api) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/per-object", get(per_object))
        .route("/metrics/detailed", get(detailed))
        .fallback(unknown_registry)
        .with_state(api)
}

/// Any other path: 404 `Unknown Registry`, text, as RabbitMQ's handler.
async fn unknown_registry() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        "Unknown Registry",
    )
        .into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    scrape(api, Endpoint::Aggregated).await
}

async fn per_object(State(api): State<Api>) -> Response {
    scrape(api, Endpoint::PerObject).await
}

/// `family` and `vhost` may repeat.
async fn detailed(State(api): State<Api>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let families: HashSet<String> = q
        .iter()
        .filter(|(k, _)| k == "family")
        .map(|(_, v)| v.clone())
        .collect();
    let vhosts: HashSet<String> = q
        .iter()
        .filter(|(k, _)| k == "vhost")
        .map(|(_, v)| v.clone())
        .collect();
    let vhosts = (!vhosts.is_empty()).then_some(vhosts);
    scrape(api, Endpoint::Detailed { families, vhosts }).await
}

/// Takes the snapshot and renders it, on a blocking thread.
async fn scrape(api: Api, endpoint: Endpoint) -> Response {
    let job = tokio::task::spawn_blocking(move || {
        let data = collect(&api, &endpoint);
        render(&data, &endpoint)
    });
    match job.await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What a scrape needs of the broker: queues, channels and connections
/// only when the endpoint shows them (a `/metrics/detailed` without
/// families copies no object).
fn collect(api: &Api, endpoint: &Endpoint) -> ScrapeData {
    let want = match endpoint {
        Endpoint::Detailed { families, .. } => {
            let has = |f: &str| families.contains(f);
            Want {
                queues: has("queue_coarse_metrics")
                    || has("queue_metrics")
                    || has("queue_delivery_metrics")
                    || has("queue_latency_metrics")
                    || has("queue_consumer_count")
                    || has("channel_queue_exchange_metrics"),
                connections: has("connection_coarse_metrics") || has("connection_metrics"),
                channels: has("channel_metrics")
                    || has("channel_exchange_metrics")
                    || has("channel_queue_metrics"),
                consumers: false,
                exchanges: false,
            }
        }
        _ => Want {
            queues: true,
            connections: true,
            channels: true,
            consumers: false,
            exchanges: false,
        },
    };
    let a = &api.admin;
    let node = a.node();
    let (fd_used, fd_total) = node.fds();
    ScrapeData {
        node: api.node.to_string(),
        // RabbitMQ's cluster name: dashboards group the nodes by it.
        cluster: match &api.cluster {
            Some(c) => c.membership.cluster_name().to_string(),
            None => api.node.to_string(),
        },
        quorum: api
            .cluster
            .as_ref()
            .map(super::prometheus_quorum::collect)
            .unwrap_or_default(),
        snaps: a.snapshot(want),
        shovels: api.shovels.status(None),
        vhosts: a.vhost_names(),
        figures: NodeFigures {
            fd_used,
            fd_total,
            mem_used: node.memory_used(),
            mem_limit: node.memory_limit(),
            disk_free: node.disk_free(),
            disk_free_limit: node.disk_free_limit(),
            uptime_ms: node.uptime_ms(),
            memory_alarm: node.memory_alarm(),
            disk_alarm: node.disk_alarm(),
        },
    }
}
