//! The management API's view of the whole cluster (issue 20), as
//! RabbitMQ's management plugin gives it on every node: `/api/queues`
//! lists every queue of the cluster, `/api/queues/{vhost}/{name}` answers
//! for a queue held by another node, `/api/nodes` has every running
//! node's figures, and quorum queues carry their leader, members, online
//! members, in-sync set and replication lag.
//!
//! Each node knows the definitions of every queue (they live in etcd) but
//! the figures only of its own. So a node asks the others for theirs over
//! their management API (the address and port they registered in etcd),
//! on the blocking thread that serves the request, never a shard:
//! the same path, the caller's credentials (users are the cluster's), and
//! the header [`LOCAL_HEADER`], which makes the other node answer for its
//! own objects only. A node that does not answer within [`PEER_TIMEOUT`]
//! has its queues listed from the definitions, with state `down`.

use super::auth::Creds;
use crate::admin::Admin;
use crate::cluster::members::Membership;
use crate::cluster::quorum::{QState, Quorum};
use crate::core::definitions_json::table_to_json;
use crate::core::queue_args;
use axum::http::HeaderMap;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Asks a node for its own objects only (set on the requests between
/// nodes).
pub(crate) const LOCAL_HEADER: &str = "x-warren-node-local";

/// How long a node waits for another's answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// The cluster, for the management API (`None` on a single node).
#[derive(Clone)]
pub struct ClusterView {
    pub membership: Membership,
    pub quorum: Quorum,
}

/// Another running node's management API.
pub(crate) struct Peer {
    pub name: String,
    base: String,
}

/// The request came from another node and wants this node's objects only.
pub(crate) fn local_only(headers: &HeaderMap) -> bool {
    headers.contains_key(LOCAL_HEADER)
}

impl ClusterView {
    /// The other running nodes that serve the management API.
    pub(crate) fn peers(&self) -> Vec<Peer> {
        let me = self.membership.node().to_string();
        self.membership
            .members()
            .into_iter()
            .filter(|m| m.running && m.name != me)
            .filter_map(|m| {
                let addr = m.info["address"].as_str()?.to_string();
                let port = m.info["http_port"].as_u64().filter(|&p| p != 0)?;
                let host = if addr.contains(':') {
                    format!("[{addr}]")
                } else {
                    addr
                };
                Some(Peer {
                    name: m.name,
                    base: format!("http://{host}:{port}"),
                })
            })
            .collect()
    }

    /// GET `path_and_query` on `peer` for its own objects, as the caller.
    pub(crate) fn get(
        &self,
        peer: &Peer,
        path_and_query: &str,
        creds: &Creds,
    ) -> Result<Value, String> {
        let agent = ureq::AgentBuilder::new().timeout(PEER_TIMEOUT).build();
        let mut req = agent
            .get(&format!("{}{}", peer.base, path_and_query))
            .set(LOCAL_HEADER, "1");
        if let Some(auth) = creds.basic_header() {
            req = req.set("authorization", &auth);
        }
        match req.call() {
            Ok(r) => r
                .into_string()
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_str(&b).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", peer.name)),
            Err(ureq::Error::Status(404, _)) => Ok(Value::Null),
            Err(e) => Err(format!("{}: {e}", peer.name)),
        }
    }

    /// The quorum queues' states, for rendering queues.
    pub(crate) fn quorums(&self) -> Quorums {
        let (view, _) = self.quorum.view();
        Quorums {
            states: view
                .queues
                .iter()
                .map(|(id, q)| ((q.vhost.clone(), q.name.clone()), (*id, q.clone())))
                .collect(),
            alive: view.alive.clone(),
            quorum: self.quorum.clone(),
        }
    }
}

/// The quorum queues' states (from etcd) when a request was served.
pub(crate) struct Quorums {
    states: HashMap<(String, String), (u64, QState)>,
    alive: Vec<String>,
    quorum: Quorum,
}

impl Quorums {
    /// Adds quorum queue `vhost`/`name`'s cluster fields to its JSON, if
    /// it has a state: `leader`, `members`, `online` (RabbitMQ's), and
    /// warren's `epoch`, `in_sync` and, on the leader,
    /// `replication_lag` (messages each follower has not synced yet).
    /// False when it has none (yet).
    pub fn put(&self, m: &mut Map<String, Value>, vhost: &str, name: &str) -> bool {
        let Some((id, state)) = self.states.get(&(vhost.to_string(), name.to_string())) else {
            return false;
        };
        let online: Vec<&String> = state
            .members
            .iter()
            .filter(|n| self.alive.contains(n))
            .collect();
        m.insert("leader".into(), json!(state.leader));
        m.insert("node".into(), json!(state.leader));
        m.insert("members".into(), json!(state.members));
        m.insert("online".into(), json!(online));
        m.insert("epoch".into(), json!(state.epoch));
        m.insert("in_sync".into(), json!(state.isr));
        if let Some(lag) = self.quorum.lag(*id) {
            let per: Map<String, Value> = lag
                .followers
                .iter()
                .map(|(n, synced)| (n.clone(), json!(lag.last.saturating_sub(*synced))))
                .collect();
            m.insert("replication_lag".into(), Value::Object(per));
        }
        true
    }
}

/// A queue another node holds, as the definitions have it.
struct RemoteDef {
    vhost: String,
    name: String,
    node: String,
    json: Value,
}

/// The queues of `vhost` (all with None) in `visible` vhosts that other
/// nodes hold, rendered without figures, as a node that does not answer
/// leaves them (RabbitMQ's state `down`).
fn remote_defs(a: &Admin, vhost: Option<&str>, visible: &HashSet<String>) -> Vec<RemoteDef> {
    let g = a.definitions().lock();
    let mut out = Vec::new();
    for v in g.vhosts() {
        if vhost.is_some_and(|x| x != &*v.name) || !visible.contains(&*v.name) {
            continue;
        }
        for q in v.queues.values() {
            let Some(node) = &q.node else { continue };
            let quorum = queue_args::is_quorum(&q.args);
            let stream = queue_args::is_stream(&q.args);
            let json = json!({
                "name": q.name,
                "vhost": &*v.name,
                "durable": q.durable,
                "auto_delete": q.auto_delete,
                "exclusive": q.exclusive_owner.is_some(),
                "arguments": Value::Object(table_to_json(&q.args)),
                "type": if quorum { "quorum" } else if stream { "stream" } else { "classic" },
                "node": &**node,
                "state": "down",
            });
            out.push(RemoteDef {
                vhost: v.name.to_string(),
                name: q.name.clone(),
                node: node.to_string(),
                json,
            });
        }
    }
    out
}

/// Percent-encodes one path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query parameters that shape a queue's JSON, passed on.
fn shaping_query(q: &HashMap<String, String>) -> String {
    let mut parts = Vec::new();
    for k in ["disable_stats", "enable_queue_totals"] {
        if let Some(v) = q.get(k) {
            parts.push(format!("{k}={}", segment(v)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The queues the other nodes hold, as each renders its own (a list's
/// shape), or from the definitions with state `down` for a node that does
/// not answer. A quorum queue gets its cluster fields here too.
#[allow(clippy::too_many_arguments)]
pub(crate) fn other_nodes_queues(
    a: &Admin,
    cluster: &ClusterView,
    creds: &Creds,
    quorums: &Quorums,
    vhost: Option<&str>,
    visible: &HashSet<String>,
    q: &HashMap<String, String>,
    detailed: bool,
) -> Vec<Value> {
    let defs = remote_defs(a, vhost, visible);
    if defs.is_empty() {
        return Vec::new();
    }
    let path = if detailed || q.contains_key("columns") {
        "/api/queues/detailed".to_string()
    } else {
        match vhost {
            Some(v) => format!("/api/queues/{}", segment(v)),
            None => "/api/queues".to_string(),
        }
    };
    let path = format!("{path}{}", shaping_query(q));
    let holders: HashSet<&str> = defs.iter().map(|d| d.node.as_str()).collect();
    let mut got: HashMap<(String, String, String), Value> = HashMap::new();
    for peer in cluster.peers() {
        if !holders.contains(peer.name.as_str()) {
            continue;
        }
        match cluster.get(&peer, &path, creds) {
            Ok(Value::Array(items)) => {
                for item in items {
                    let key = (
                        item["vhost"].as_str().unwrap_or("").to_string(),
                        item["name"].as_str().unwrap_or("").to_string(),
                        peer.name.clone(),
                    );
                    got.insert(key, item);
                }
            }
            Ok(_) => {}
            Err(e) => log::debug!("management: no queue figures from {e}"),
        }
    }
    defs.into_iter()
        .map(|d| {
            let mut v = got
                .remove(&(d.vhost.clone(), d.name.clone(), d.node.clone()))
                .unwrap_or(d.json);
            if let Value::Object(m) = &mut v {
                if m.get("type").and_then(Value::as_str) == Some("quorum") {
                    quorums.put(m, &d.vhost, &d.name);
                }
            }
            v
        })
        .collect()
}

/// Queue `vhost`/`name` held by another node, as that node renders it
/// (or from the definitions with state `down`); None if no node holds it.
pub(crate) fn other_node_queue(
    a: &Admin,
    cluster: &ClusterView,
    creds: &Creds,
    quorums: &Quorums,
    vhost: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Option<Value> {
    let all: HashSet<String> = [vhost.to_string()].into();
    let d = remote_defs(a, Some(vhost), &all)
        .into_iter()
        .find(|d| d.name == name)?;
    let path = format!(
        "/api/queues/{}/{}{}",
        segment(vhost),
        segment(name),
        shaping_query(q)
    );
    let mut v = cluster
        .peers()
        .into_iter()
        .find(|p| p.name == d.node)
        .and_then(|p| cluster.get(&p, &path, creds).ok())
        .filter(Value::is_object)
        .unwrap_or(d.json);
    if let Value::Object(m) = &mut v {
        if m.get("type").and_then(Value::as_str) == Some("quorum") {
            quorums.put(m, vhost, name);
        }
    }
    Some(v)
}
