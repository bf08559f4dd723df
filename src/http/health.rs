//! `/api/aliveness-test/{vhost}`, `/api/healthchecks/node` and the
//! `/api/health/checks/…` family, as RabbitMQ 3.13 answers them
//! (rabbit_mgmt_wm_aliveness_test, rabbit_mgmt_wm_healthchecks,
//! rabbit_mgmt_wm_health_check_*): 200 `{"status":"ok"…}`, or 503
//! `{"status":"failed","reason":…}` with the check's details.
//!
//! warren is a single node: `node-is-quorum-critical` and
//! `node-is-mirror-sync-critical` answer as RabbitMQ does on a single node
//! cluster, and `virtual-hosts` is always ok (a vhost has no process that
//! could be down).

use super::overview::{listeners, Endpoints};
use super::scope::check_vhost;
use super::stats_json::civil_from_days;
use super::{json, ok, Api, ApiError, Creds, Level};
use crate::admin::AlivenessFailure;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

/// 503 with `body`.
fn failed(body: Value) -> Response {
    json(StatusCode::SERVICE_UNAVAILABLE, &body)
}

fn endpoints(api: &Api) -> Endpoints {
    Endpoints::of(api)
}

/// `GET /api/aliveness-test/{vhost}`: declares `aliveness-test`, publishes
/// and gets a message as the caller (`Admin::aliveness_test`).
pub(crate) async fn aliveness(
    State(api): State<Api>,
    c: Creds,
    Path(vhost): Path<String>,
) -> Response {
    api.call(c, Level::Management, move |a, u| {
        check_vhost(a, u, &vhost)?;
        match a.aliveness_test(&vhost, &u.name) {
            Ok(()) => Ok(ok(&json!({ "status": "ok" }))),
            Err(AlivenessFailure::NoVhost) => Err(ApiError::not_found()),
            Err(AlivenessFailure::NoAccess) => Err(ApiError::not_authorised("Access refused.")),
            Err(AlivenessFailure::Empty) => Ok(failed(json!({
                "status": "failed",
                "reason": "aliveness-test queue is empty",
            }))),
            Err(AlivenessFailure::Unavailable) => Ok(failed(json!({
                "status": "failed",
                "reason": "the broker is stopping",
            }))),
            Err(AlivenessFailure::Refused(e)) => Err(channel_error(e)),
        }
    })
    .await
}

/// A channel error of RabbitMQ's internal client, as `with_channel`
/// answers it: 404 for NOT_FOUND, 401 for ACCESS_REFUSED, else 400 with
/// the reply code.
fn channel_error(e: crate::core::error::CoreError) -> ApiError {
    use crate::core::error::CoreError as E;
    let text = e.to_string();
    let code = match &e {
        E::NotFound(_) => {
            return ApiError {
                status: StatusCode::NOT_FOUND,
                error: "not_found",
                reason: text,
                challenge: false,
            }
        }
        E::AccessRefused(_) => return ApiError::not_authorised(&text),
        E::ResourceLocked(_) => 405,
        E::PreconditionFailed(_) => 406,
        E::NotImplemented(_) => 540,
        E::Internal(_) => 541,
        E::Unavailable(_) => 406,
    };
    ApiError::bad_request(&format!("{code} {text}"))
}

/// The alarms in effect, as `rabbit_alarm:format_as_maps`.
fn alarms(a: &crate::admin::Admin, node: &str) -> Vec<Value> {
    let n = a.node();
    let mut out = Vec::new();
    if n.memory_alarm() {
        out.push(json!({ "resource": "memory", "node": node }));
    }
    if n.disk_alarm() {
        out.push(json!({ "resource": "disk space", "node": node }));
    }
    out
}

async fn alarm_check(api: Api, c: Creds, reason: &'static str) -> Response {
    let node = api.node.clone();
    api.call(c, Level::Management, move |a, _| {
        let alarms = alarms(a, &node);
        if alarms.is_empty() {
            Ok(ok(&json!({ "status": "ok" })))
        } else {
            Ok(failed(
                json!({ "status": "failed", "reason": reason, "alarms": alarms }),
            ))
        }
    })
    .await
}

/// `GET /api/health/checks/alarms`.
pub(crate) async fn alarms_check(State(api): State<Api>, c: Creds) -> Response {
    alarm_check(api, c, "There are alarms in effect in the cluster").await
}

/// `GET /api/health/checks/local-alarms`.
pub(crate) async fn local_alarms_check(State(api): State<Api>, c: Creds) -> Response {
    alarm_check(api, c, "There are alarms in effect on the node").await
}

/// `GET /api/health/checks/port-listener/{port}`.
pub(crate) async fn port_listener(
    State(api): State<Api>,
    c: Creds,
    Path(port): Path<String>,
) -> Response {
    let ep = endpoints(&api);
    api.call(c, Level::Management, move |a, _| {
        let port: u16 = port
            .parse()
            .map_err(|_| ApiError::bad_request("Invalid port"))?;
        let ports: Vec<u64> = listeners(a, &ep)
            .iter()
            .filter_map(|l| l["port"].as_u64())
            .collect();
        if ports.contains(&(port as u64)) {
            Ok(ok(&json!({ "status": "ok", "port": port })))
        } else {
            Ok(failed(json!({
                "status": "failed",
                "reason": "No active listener",
                "missing": port,
                "ports": ports,
            })))
        }
    })
    .await
}

/// RabbitMQ's protocol aliases (`normalize_protocol`), for the protocols
/// warren has.
fn normalize_protocol(p: &str) -> String {
    let p = p.to_lowercase();
    match p.as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" | "amqp0_9_1" | "amqp10" | "amqp1.0" | "amqp1-0"
        | "amqp1_0" => "amqp".into(),
        "amqps" => "amqp/ssl".into(),
        "http1" | "http1.1" | "http_api" | "management" | "management_ui" | "ui" => "http".into(),
        "cli" | "distribution" => "clustering".into(),
        _ => p,
    }
}

/// `GET /api/health/checks/protocol-listener/{protocol}`.
pub(crate) async fn protocol_listener(
    State(api): State<Api>,
    c: Creds,
    Path(protocol): Path<String>,
) -> Response {
    let ep = endpoints(&api);
    api.call(c, Level::Management, move |a, _| {
        let protocol = normalize_protocol(&protocol);
        let protocols: Vec<String> = listeners(a, &ep)
            .iter()
            .filter_map(|l| l["protocol"].as_str().map(String::from))
            .collect();
        if protocols.contains(&protocol) {
            Ok(ok(&json!({ "status": "ok", "protocol": protocol })))
        } else {
            Ok(failed(json!({
                "status": "failed",
                "reason": "No active listener",
                "missing": protocol,
                "protocols": protocols,
            })))
        }
    })
    .await
}

/// `GET /api/health/checks/virtual-hosts`: every vhost is up.
pub(crate) async fn virtual_hosts(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Management, |_, _| {
        Ok(ok(&json!({ "status": "ok" })))
    })
    .await
}

/// `GET /api/health/checks/node-is-quorum-critical` and
/// `…/node-is-mirror-sync-critical`: a single node cluster.
pub(crate) async fn single_node(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Management, |_, _| {
        Ok(ok(
            &json!({ "status": "ok", "reason": "single node cluster" }),
        ))
    })
    .await
}

/// `GET /api/healthchecks/node` (deprecated in RabbitMQ, kept).
pub(crate) async fn node_healthcheck(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Management, |_, _| {
        Ok(ok(&json!({ "status": "ok" })))
    })
    .await
}

/// `GET /api/healthchecks/node/{node}`: 404 for another node.
pub(crate) async fn node_healthcheck_of(
    State(api): State<Api>,
    c: Creds,
    Path(node): Path<String>,
) -> Response {
    let me = api.node.clone();
    api.call(c, Level::Management, move |_, _| {
        if node != *me {
            return Err(ApiError::not_found());
        }
        Ok(ok(&json!({ "status": "ok" })))
    })
    .await
}

/// `GET /api/health/checks/certificate-expiration/{within}/{unit}`: the
/// TLS listener's certificate and CA files, each certificate's notAfter
/// against now + within (units: days, weeks, months, years).
pub(crate) async fn certificate_expiration(
    State(api): State<Api>,
    c: Creds,
    Path((within, unit)): Path<(String, String)>,
) -> Response {
    let node = api.node.clone();
    api.call(c, Level::Management, move |a, _| {
        let within: i64 = within
            .parse()
            .map_err(|_| ApiError::bad_request("Invalid expiration value."))?;
        let day = 86_400.0;
        let seconds = match unit.to_lowercase().as_str() {
            "days" => within as f64 * day,
            "weeks" => within as f64 * day * 7.0,
            "months" => within as f64 * day * 365.0 / 12.0,
            "years" => within as f64 * day * 365.0,
            _ => {
                return Err(ApiError::bad_request(
                    "Time unit not recognised. Supported units: days, weeks, months, years.",
                ))
            }
        };
        let config = a.config();
        let (Some(cert), Some(tls_port)) = (&config.tls_cert, listener_port(a, "amqp/ssl")) else {
            return Ok(ok(&json!({ "status": "ok" })));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let limit = now + seconds as i64;
        let expiring = |path: Option<&std::path::PathBuf>| -> Value {
            match path.map(|p| not_after(p)) {
                None => json!([]),
                Some(Err(e)) => json!({ "error": e }),
                Some(Ok(ends)) => json!(ends
                    .into_iter()
                    .filter(|&t| t < limit)
                    .map(date_text)
                    .collect::<Vec<_>>()),
            }
        };
        let (c_exp, ca_exp) = (expiring(Some(cert)), expiring(config.tls_ca.as_ref()));
        let empty = |v: &Value| v.as_array().is_some_and(|a| a.is_empty());
        if empty(&c_exp) && empty(&ca_exp) {
            return Ok(ok(&json!({ "status": "ok" })));
        }
        let listeners: Vec<Value> = config
            .bind
            .iter()
            .map(|ip| {
                json!({
                    "node": &*node,
                    "protocol": "amqp/ssl",
                    "interface": ip.to_string(),
                    "port": tls_port,
                    "certfile": cert.display().to_string(),
                    "cacertfile": config.tls_ca.as_ref().map(|p| p.display().to_string()),
                    "certfile_expires_on": c_exp,
                    "cacertfile_expires_on": ca_exp,
                })
            })
            .collect();
        Ok(failed(json!({
            "status": "failed",
            "reason": "Certificates expiring",
            "expired": listeners,
        })))
    })
    .await
}

fn listener_port(a: &crate::admin::Admin, protocol: &str) -> Option<u16> {
    a.node()
        .listeners
        .iter()
        .find(|l| l.protocol == protocol)
        .map(|l| l.port)
}

/// The notAfter (Unix seconds) of every certificate in a PEM file.
fn not_after(path: &std::path::Path) -> Result<Vec<i64>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = Vec::new();
    for der in rustls_pemfile::certs(&mut reader) {
        let der = der.map_err(|e| e.to_string())?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
        out.push(cert.validity().not_after.timestamp());
    }
    if out.is_empty() {
        return Err("The certificate file provided does not contain any PEM entry.".into());
    }
    Ok(out)
}

/// `2024-05-01 7:03:09`, as RabbitMQ prints an expiry date.
fn date_text(t: i64) -> String {
    let (days, rem) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y}-{m:02}-{d:02} {}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
