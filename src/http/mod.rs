//! The management HTTP API: the part of RabbitMQ's (3.13 paths, JSON shapes
//! and status codes) that covers users, vhosts, permissions, topic
//! permissions, limits and definitions, for `warrenctl`, scripts and tools
//! such as rabbitmqadmin.
//!
//! It sits on top of everything else: the handlers call [`crate::admin`],
//! and nothing below imports this module. The server (axum on hyper) runs on
//! its own small tokio runtime on a dedicated thread, never on a shard; every
//! request's work (authentication included) runs in `spawn_blocking`, since
//! `Admin` calls block for a control round trip.
//!
//! - `auth.rs`: HTTP basic auth against warren's users, RabbitMQ's tag
//!   checks and loopback users, and [`auth::ApiError`], the `{"error",
//!   "reason"}` bodies.
//! - `users.rs`: `/api/whoami`, `/api/users…`, `/api/user-limits…`.
//! - `vhosts.rs`: `/api/vhosts…`, `/api/vhost-limits…`, `/api/definitions`.
//! - `permissions.rs`: `/api/permissions…`, `/api/topic-permissions…`.
//! - `parameters.rs`: `/api/parameters…` (vhost runtime parameters).
//! - `queues.rs`, `exchanges.rs`, `bindings.rs`: `/api/queues…`,
//!   `/api/exchanges…`, `/api/bindings…` (with `objects.rs`, what they
//!   share, `message_json.rs`, messages as JSON, and `binding_key.rs`,
//!   RabbitMQ's `properties_key`).
//! - `overview.rs`: `/api/overview`, `/api/nodes…`; `health.rs`:
//!   `/api/aliveness-test/…`, `/api/health/checks/…`; `connections.rs`,
//!   `channels.rs`: `/api/connections…`, `/api/channels…`,
//!   `/api/consumers…`, with `scope.rs` (who sees what) and
//!   `stats_json.rs` (counters with rates).
//! - `prometheus.rs`, `prometheus_text.rs`: the Prometheus endpoint
//!   (`--prometheus-port`), a second listener on the same runtime.
//! - `ui.rs`: the management web UI (`GET /`, `/ui/…`), static files from
//!   `ui/` embedded in the binary.

mod auth;
mod binding_key;
mod bindings;
mod channels;
mod cluster_view;
mod connections;
mod exchanges;
mod health;
mod listing;
mod maintenance;
mod message_json;
mod objects;
mod overview;
mod parameters;
mod permissions;
mod prometheus;
mod prometheus_objects;
mod prometheus_quorum;
mod prometheus_text;
mod queues;
mod scope;
mod shovels;
mod stats_json;
mod ui;
mod users;
mod vhosts;

pub use cluster_view::ClusterView;

use crate::admin::stats::{Sampler, SAMPLE_INTERVAL};
use crate::admin::Admin;
use crate::shovel::Shovels;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) use auth::{ApiError, Creds, Level};

/// A running HTTP API server.
pub struct HttpServer {
    port: Option<u16>,
    prometheus_port: Option<u16>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The API's port (the real one when `http_port` was 0); None when
    /// only the Prometheus endpoint runs.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The Prometheus endpoint's port, if it runs (`prometheus_port`).
    pub fn prometheus_port(&self) -> Option<u16> {
        self.prometheus_port
    }

    /// Stops accepting, lets the requests in progress finish (at most about
    /// a second), and waits for the server's thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What every handler gets: the administration handle and the node name.
#[derive(Clone)]
pub(crate) struct Api {
    pub admin: Admin,
    pub node: Arc<str>,
    /// The shovels' status and restart (`/api/shovels`).
    pub shovels: Shovels,
    /// The cluster's members, with `--etcd` (`/api/nodes`).
    pub membership: Option<crate::cluster::members::Membership>,
    /// The cluster (`cluster_view`), with `--etcd`.
    pub cluster: Option<ClusterView>,
    /// Message rates (`admin::stats::Sampler`), sampled by a task of this
    /// server's runtime every `SAMPLE_INTERVAL`.
    pub rates: Arc<Sampler>,
    /// The port this API listens on (overview's `listeners`; 0 when only
    /// the Prometheus endpoint runs).
    pub http_port: u16,
    /// The Prometheus endpoint's port, if it runs.
    pub prometheus_port: Option<u16>,
}

impl Api {
    /// Authenticates `creds` for `level`, then runs `f` on a blocking thread.
    pub async fn call<F>(&self, creds: Creds, level: Level, f: F) -> Response
    where
        F: FnOnce(&Admin, &crate::admin::UserView) -> Result<Response, ApiError> + Send + 'static,
    {
        let admin = self.admin.clone();
        let job = tokio::task::spawn_blocking(move || {
            let user = auth::authorize(&admin, &creds, level)?;
            f(&admin, &user)
        });
        match job.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => e.into_response(),
            Err(_) => ApiError::internal("the request failed").into_response(),
        }
    }
}

/// A JSON response.
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::internal(&e.to_string()).into_response(),
    }
}

/// 200 with a body that is JSON already.
pub(crate) fn ok_bytes(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// 200 with a JSON body.
pub(crate) fn ok<T: serde::Serialize>(value: &T) -> Response {
    json(StatusCode::OK, value)
}

/// 201 for a PUT that created, 204 for one that updated (RabbitMQ's).
pub(crate) fn created_or_updated(created: bool) -> Response {
    if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// The body of a PUT or POST as a JSON object; an empty body is `{}`.
/// Anything else is 400 `not_json`, as RabbitMQ's `with_decode`.
pub(crate) fn body_object(
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(ApiError::bad_request("not_json")),
    }
}

/// The API's routes.
fn router(api: Api) -> Router {
    Router::new()
        .route("/api/whoami", get(users::whoami))
        .route("/api/users", get(users::list))
        .route(
            "/api/users/bulk-delete",
            axum::routing::post(users::bulk_delete),
        )
        .route(
            "/api/auth/hash_password/{password}",
            get(users::hash_password),
        )
        .route(
            "/api/users/without-permissions",
            get(users::without_permissions),
        )
        .route(
            "/api/users/{user}",
            get(users::get_one).put(users::put).delete(users::delete),
        )
        .route("/api/users/{user}/permissions", get(permissions::of_user))
        .route(
            "/api/users/{user}/topic-permissions",
            get(permissions::topic_of_user),
        )
        .route("/api/user-limits", get(users::limits_all))
        .route("/api/user-limits/{user}", get(users::limits_of))
        .route(
            "/api/user-limits/{user}/{name}",
            axum::routing::put(users::limit_put).delete(users::limit_delete),
        )
        .route("/api/shovels", get(shovels::list))
        .route("/api/shovels/{vhost}", get(shovels::list_vhost))
        .route(
            "/api/shovels/vhost/{vhost}/{name}",
            get(shovels::get_one).delete(shovels::delete),
        )
        .route(
            "/api/shovels/vhost/{vhost}/{name}/restart",
            axum::routing::delete(shovels::restart),
        )
        .route("/api/vhosts", get(vhosts::list))
        .route(
            "/api/vhosts/{vhost}",
            get(vhosts::get_one).put(vhosts::put).delete(vhosts::delete),
        )
        .route(
            "/api/vhosts/{vhost}/permissions",
            get(permissions::of_vhost),
        )
        .route(
            "/api/vhosts/{vhost}/topic-permissions",
            get(permissions::topic_of_vhost),
        )
        .route("/api/vhost-limits", get(vhosts::limits_all))
        .route("/api/vhost-limits/{vhost}", get(vhosts::limits_of))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            axum::routing::put(vhosts::limit_put).delete(vhosts::limit_delete),
        )
        .route("/api/permissions", get(permissions::list))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(permissions::get_one)
                .put(permissions::put)
                .delete(permissions::delete),
        )
        .route("/api/topic-permissions", get(permissions::topic_list))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(permissions::topic_get)
                .put(permissions::topic_put)
                .delete(permissions::topic_delete),
        )
        .route(
            "/api/definitions",
            get(vhosts::definitions_get).post(vhosts::definitions_post),
        )
        .route("/api/parameters", get(parameters::list))
        .route(
            "/api/parameters/{component}",
            get(parameters::list_component),
        )
        .route(
            "/api/parameters/{component}/{vhost}",
            get(parameters::list_component_vhost),
        )
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(parameters::get_one)
                .put(parameters::put)
                .delete(parameters::delete),
        )
        // queues, exchanges, bindings
        .route("/api/queues", get(queues::list))
        .route("/api/queues/detailed", get(queues::list_detailed))
        .route("/api/queues/{vhost}", get(queues::list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queues::get_one).put(queues::put).delete(queues::delete),
        )
        .route(
            "/api/queues/{vhost}/{name}/bindings",
            get(bindings::of_queue),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(queues::purge),
        )
        .route(
            "/api/queues/{vhost}/{name}/get",
            axum::routing::post(queues::get_messages),
        )
        .route("/api/exchanges", get(exchanges::list))
        .route("/api/exchanges/{vhost}", get(exchanges::list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchanges::get_one)
                .put(exchanges::put)
                .delete(exchanges::delete),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            axum::routing::post(exchanges::publish),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(bindings::of_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(bindings::of_destination),
        )
        .route("/api/bindings", get(bindings::list))
        .route("/api/bindings/{vhost}", get(bindings::list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{dtype}/{dest}",
            get(bindings::between).post(bindings::create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{dtype}/{dest}/{props}",
            get(bindings::get_one).delete(bindings::delete),
        )
        // end of queues, exchanges, bindings
        // overview, nodes, health, connections, channels, consumers
        .route("/api/overview", get(overview::overview))
        .route("/api/nodes", get(overview::nodes))
        .route("/api/nodes/{node}", get(overview::node))
        .route(
            "/api/nodes/{node}/drain",
            axum::routing::put(maintenance::drain).delete(maintenance::revive),
        )
        .route(
            "/api/rebalance/queues",
            axum::routing::post(maintenance::rebalance),
        )
        .route("/api/aliveness-test/{vhost}", get(health::aliveness))
        .route("/api/healthchecks/node", get(health::node_healthcheck))
        .route(
            "/api/healthchecks/node/{node}",
            get(health::node_healthcheck_of),
        )
        .route("/api/health/checks/alarms", get(health::alarms_check))
        .route(
            "/api/health/checks/local-alarms",
            get(health::local_alarms_check),
        )
        .route(
            "/api/health/checks/port-listener/{port}",
            get(health::port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(health::protocol_listener),
        )
        .route(
            "/api/health/checks/virtual-hosts",
            get(health::virtual_hosts),
        )
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(health::single_node),
        )
        .route(
            "/api/health/checks/node-is-mirror-sync-critical",
            get(health::single_node),
        )
        .route(
            "/api/health/checks/certificate-expiration/{within}/{unit}",
            get(health::certificate_expiration),
        )
        .route("/api/connections", get(connections::list_all))
        .route(
            "/api/connections/{name}",
            get(connections::get_one).delete(connections::delete_one),
        )
        .route(
            "/api/connections/{name}/channels",
            get(connections::channels_of),
        )
        .route(
            "/api/connections/username/{user}",
            get(connections::of_user).delete(connections::delete_of_user),
        )
        .route(
            "/api/vhosts/{vhost}/connections",
            get(connections::list_vhost),
        )
        .route("/api/channels", get(channels::list_all))
        .route("/api/channels/{name}", get(channels::get_one))
        .route("/api/vhosts/{vhost}/channels", get(channels::list_vhost))
        .route("/api/consumers", get(channels::consumers_all))
        .route("/api/consumers/{vhost}", get(channels::consumers_vhost))
        // end of overview … consumers
        .merge(ui::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(api)
}

/// Largest request body (a definitions file).
const MAX_BODY: usize = 64 << 20;

async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

/// Errors axum produces itself (405, a path that is not UTF-8, a body over
/// the limit) get a JSON body like every other error.
async fn json_errors(r: Response) -> Response {
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return r;
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let error = reason.to_ascii_lowercase().replace(' ', "_");
    let (mut parts, _) = r.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::json!({ "error": error, "reason": reason }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Binds `port` (0: an ephemeral one, the same on every address) on each
/// of `addrs`; `what` names the server in errors. Returns the listeners
/// and the port.
fn bind_all(
    addrs: &[std::net::IpAddr],
    mut port: u16,
    what: &str,
) -> io::Result<(Vec<TcpListener>, u16)> {
    let mut listeners = Vec::new();
    for ip in addrs {
        let l = match crate::net::listener::bind_one(SocketAddr::new(*ip, port)) {
            Ok(l) => l,
            // As for AMQP: a machine without that address (no IPv6) still
            // serves the others.
            Err(e)
                if e.kind() == io::ErrorKind::AddrNotAvailable
                    || e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
            {
                log::warn!("{} not listening on {}: {}", what, ip, e);
                continue;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}:{} ({}): {}", ip, port, what, e),
                ))
            }
        };
        if port == 0 {
            port = l.local_addr()?.port();
        }
        l.set_nonblocking(true)?;
        listeners.push(l);
    }
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no {} listen address could be bound", what),
        ));
    }
    Ok((listeners, port))
}

/// Starts the HTTP API (`admin.config().http_port`) and the Prometheus
/// endpoint (`prometheus_port`), whichever are set: binds on the caller's
/// thread (bind errors and the real ports are known on return), then
/// serves both on one thread of its own. `Ok(None)`: both are disabled.
pub fn start(
    admin: Admin,
    shovels: Shovels,
    cluster: Option<ClusterView>,
) -> io::Result<Option<HttpServer>> {
    let config = admin.config();
    if config.http_port.is_none() && config.prometheus_port.is_none() {
        return Ok(None);
    }
    let addrs = if config.http_bind.is_empty() {
        config.bind.clone()
    } else {
        config.http_bind.clone()
    };
    let (listeners, port) = match config.http_port {
        Some(p) => {
            let (l, p) = bind_all(&addrs, p, "HTTP API")?;
            (l, Some(p))
        }
        None => (Vec::new(), None),
    };
    let (prom_listeners, prometheus_port) = match config.prometheus_port {
        Some(p) => {
            let (l, p) = bind_all(&addrs, p, "Prometheus endpoint")?;
            (l, Some(p))
        }
        None => (Vec::new(), None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_name("warren-http-worker")
        .build()?;
    let api = Api {
        admin: admin.clone(),
        node: crate::config::node_name().into(),
        shovels,
        membership: cluster.as_ref().map(|c| c.membership.clone()),
        cluster,
        rates: Arc::new(Sampler::new(admin.clone())),
        http_port: port.unwrap_or(0),
        prometheus_port,
    };
    let rates = api.rates.clone();
    let mut servers = Vec::new();
    if !listeners.is_empty() {
        servers.push((listeners, router(api.clone())));
    }
    if !prom_listeners.is_empty() {
        servers.push((prom_listeners, prometheus::router(api)));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("warren-http".into())
        .spawn(move || serve(runtime, servers, rates, stop_rx))?;
    if let Some(port) = port {
        log::info!("management HTTP API listening on port {}", port);
    }
    if let Some(port) = prometheus_port {
        log::info!("Prometheus endpoint listening on port {}", port);
    }
    Ok(Some(HttpServer {
        port,
        prometheus_port,
        stop: stop_tx,
        thread: Some(thread),
    }))
}

/// The server thread: one axum server per listener (each with its
/// router) until `stop` turns true.
fn serve(
    runtime: tokio::runtime::Runtime,
    listeners: Vec<(Vec<TcpListener>, Router)>,
    rates: Arc<Sampler>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    runtime.block_on(async move {
        let sampler = tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_INTERVAL);
            loop {
                every.tick().await;
                let rates = rates.clone();
                // A control round trip blocks: off the async thread.
                let _ = tokio::task::spawn_blocking(move || rates.sample()).await;
            }
        });
        let mut servers = Vec::new();
        let each = listeners
            .into_iter()
            .flat_map(|(ls, app)| ls.into_iter().map(move |l| (l, app.clone())));
        for (l, app) in each {
            let l = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    log::error!("HTTP API listener: {}", e);
                    continue;
                }
            };
            let mut stop = stop.clone();
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            servers.push(tokio::spawn(async move {
                let signal = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(l, app).with_graceful_shutdown(signal).await {
                    log::error!("HTTP API server: {}", e);
                }
            }));
        }
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
        // Requests in progress get a moment to finish; idle keep-alive
        // connections close at once.
        let all = async {
            for s in servers {
                let _ = s.await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), all).await;
        sampler.abort();
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
}
