//! A small blocking etcd v3 client, for the cluster's control thread
//! (never a shard): etcd 3.4+ serves its v3 API as JSON over HTTP (the
//! gRPC gateway), so this is `ureq` and `serde_json`, with no gRPC stack,
//! no async runtime and no protobuf build step. Keys and values are bytes
//! (base64 on the wire); etcd's 64-bit numbers come as JSON strings.
//!
//! What the cluster needs: `range` (one key or a prefix), `put` (with a
//! lease), `delete`, `txn` (compare versions, revisions or values, then
//! put or delete), leases (`grant`, `keep_alive`, `revoke`). Each call
//! tries the endpoints in turn (`--etcd`), starting with the last one that
//! answered.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A watch with no event for this long ends (`watch_prefix`), so its
/// thread can look at its stop flag; the caller watches again from where
/// it was.
const WATCH_IDLE: Duration = Duration::from_secs(1);

/// Why a call failed.
#[derive(Debug)]
pub enum EtcdError {
    /// No endpoint answered (each one's error).
    Unreachable(String),
    /// etcd answered with an error (`{"error": …, "code": …}`).
    Refused(String),
    /// An answer we could not read.
    Protocol(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unreachable(e) => write!(f, "etcd unreachable: {e}"),
            EtcdError::Refused(e) => write!(f, "etcd refused: {e}"),
            EtcdError::Protocol(e) => write!(f, "etcd answer not understood: {e}"),
        }
    }
}

impl std::error::Error for EtcdError {}

pub type Result<T> = std::result::Result<T, EtcdError>;

/// A key and its value with etcd's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// Times the key was written since it was created (1 after the first
    /// put).
    pub version: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

/// One comparison of a transaction (`Compare` in etcd's API).
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key's version (0: the key does not exist).
    Version(Vec<u8>, Cmp, i64),
    /// The key's last modification revision.
    ModRevision(Vec<u8>, Cmp, i64),
    /// The key's value.
    Value(Vec<u8>, Cmp, Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Equal,
    Greater,
    Less,
    NotEqual,
}

impl Cmp {
    fn name(self) -> &'static str {
        match self {
            Cmp::Equal => "EQUAL",
            Cmp::Greater => "GREATER",
            Cmp::Less => "LESS",
            Cmp::NotEqual => "NOT_EQUAL",
        }
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete(Vec<u8>),
    /// Every key under the prefix.
    DeletePrefix(Vec<u8>),
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// The comparisons held (the success branch ran).
    pub succeeded: bool,
    /// The store's revision after it.
    pub revision: i64,
}

/// The client: endpoints like `http://127.0.0.1:2379`.
pub struct Etcd {
    endpoints: Vec<String>,
    /// Index of the endpoint that answered last.
    current: AtomicUsize,
    agent: ureq::Agent,
    /// For watches: no overall deadline, only one between reads.
    watch_agent: ureq::Agent,
}

fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

/// `[key, key + 1)` as etcd's range_end of a prefix (the prefix with its
/// last byte incremented; "\0" for everything).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// etcd's int64 fields arrive as strings (or are absent when 0).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: &Value) -> Result<Vec<u8>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => B64
            .decode(s)
            .map_err(|e| EtcdError::Protocol(format!("bad base64: {e}"))),
        other => Err(EtcdError::Protocol(format!("expected base64, got {other}"))),
    }
}

fn kv(v: &Value) -> Result<Kv> {
    Ok(Kv {
        key: bytes(&v["key"])?,
        value: bytes(&v["value"])?,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
        version: int(&v["version"]),
        lease: int(&v["lease"]),
    })
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => {
            let mut p = json!({ "key": b64(key), "value": b64(value) });
            if *lease != 0 {
                p["lease"] = json!(lease.to_string());
            }
            json!({ "request_put": p })
        }
        Op::Delete(key) => json!({ "request_delete_range": { "key": b64(key) } }),
        Op::DeletePrefix(prefix) => json!({ "request_delete_range": {
            "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) } }),
    }
}

fn compare_json(c: &Compare) -> Value {
    match c {
        Compare::Version(k, cmp, v) => json!({
            "key": b64(k), "target": "VERSION", "result": cmp.name(), "version": v.to_string() }),
        Compare::ModRevision(k, cmp, r) => json!({
            "key": b64(k), "target": "MOD", "result": cmp.name(), "mod_revision": r.to_string() }),
        Compare::Value(k, cmp, v) => json!({
            "key": b64(k), "target": "VALUE", "result": cmp.name(), "value": b64(v) }),
    }
}

impl Etcd {
    /// A client of the etcd cluster at `endpoints` (nothing is contacted
    /// yet).
    pub fn new(endpoints: &[String]) -> Etcd {
        Etcd {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            current: AtomicUsize::new(0),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(2))
                .timeout(TIMEOUT)
                .build(),
            watch_agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(2))
                .timeout_read(WATCH_IDLE)
                .build(),
        }
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        if self.endpoints.is_empty() {
            return Err(EtcdError::Unreachable("no endpoints".into()));
        }
        let start = self.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..self.endpoints.len() {
            let at = (start + i) % self.endpoints.len();
            let url = format!("{}{}", self.endpoints[at], path);
            match self.agent.post(&url).send_string(&body.to_string()) {
                Ok(r) => {
                    self.current.store(at, Ordering::Relaxed);
                    let text = r
                        .into_string()
                        .map_err(|e| EtcdError::Protocol(e.to_string()))?;
                    return serde_json::from_str(&text)
                        .map_err(|e| EtcdError::Protocol(format!("{e}: {text}")));
                }
                Err(ureq::Error::Status(_, r)) => {
                    let text = r.into_string().unwrap_or_default();
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let msg = v["error"].as_str().or(v["message"].as_str());
                    return Err(EtcdError::Refused(msg.unwrap_or(&text).to_string()));
                }
                Err(e) => errors.push(format!("{}: {e}", self.endpoints[at])),
            }
        }
        Err(EtcdError::Unreachable(errors.join("; ")))
    }

    /// The key, if it exists.
    pub fn get(&self, key: &[u8]) -> Result<Option<Kv>> {
        let r = self.call("/v3/kv/range", &json!({ "key": b64(key) }))?;
        match r["kvs"].as_array().and_then(|a| a.first()) {
            Some(v) => Ok(Some(kv(v)?)),
            None => Ok(None),
        }
    }

    /// Every key under `prefix`, sorted by key, and the store's revision.
    pub fn range_prefix(&self, prefix: &[u8]) -> Result<(Vec<Kv>, i64)> {
        let r = self.call(
            "/v3/kv/range",
            &json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) }),
        )?;
        let kvs = match r["kvs"].as_array() {
            Some(a) => a.iter().map(kv).collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok((kvs, int(&r["header"]["revision"])))
    }

    /// Keys from `from` up to the end of `prefix` (`from` starts with
    /// it), sorted, and the store's revision.
    pub fn range_from(&self, from: &[u8], prefix: &[u8]) -> Result<(Vec<Kv>, i64)> {
        let r = self.call(
            "/v3/kv/range",
            &json!({ "key": b64(from), "range_end": b64(&prefix_end(prefix)) }),
        )?;
        let kvs = match r["kvs"].as_array() {
            Some(a) => a.iter().map(kv).collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok((kvs, int(&r["header"]["revision"])))
    }

    /// Watches the keys under `prefix` from `start_revision` (0: from
    /// now) and calls `on_change` with the revision of each change seen,
    /// until it returns false or no event came for `WATCH_IDLE` (the
    /// normal end: watch again). Only the first endpoint that answered is
    /// used.
    pub fn watch_prefix(
        &self,
        prefix: &[u8],
        start_revision: i64,
        mut on_change: impl FnMut(i64) -> bool,
    ) -> Result<()> {
        let at = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        let Some(endpoint) = self.endpoints.get(at) else {
            return Err(EtcdError::Unreachable("no endpoints".into()));
        };
        let mut req = json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) });
        if start_revision > 0 {
            req["start_revision"] = json!(start_revision.to_string());
        }
        let body = json!({ "create_request": req });
        let r = self
            .watch_agent
            .post(&format!("{endpoint}/v3/watch"))
            .send_string(&body.to_string())
            .map_err(|e| EtcdError::Unreachable(format!("{endpoint}: {e}")))?;
        let stream = serde_json::Deserializer::from_reader(r.into_reader()).into_iter::<Value>();
        for v in stream {
            // A read timeout (no event for WATCH_IDLE) ends the stream.
            let Ok(v) = v else { return Ok(()) };
            let result = &v["result"];
            if let Some(events) = result["events"].as_array() {
                let rev = events
                    .iter()
                    .map(|e| int(&e["kv"]["mod_revision"]))
                    .max()
                    .unwrap_or(0);
                if !on_change(rev) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Puts `value` at `key` (attached to `lease`, 0: none); returns the
    /// new revision.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64> {
        let mut body = json!({ "key": b64(key), "value": b64(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        let r = self.call("/v3/kv/put", &body)?;
        Ok(int(&r["header"]["revision"]))
    }

    /// Deletes `key`; returns how many keys went (0 or 1).
    pub fn delete(&self, key: &[u8]) -> Result<i64> {
        let r = self.call("/v3/kv/deleterange", &json!({ "key": b64(key) }))?;
        Ok(int(&r["deleted"]))
    }

    /// Runs `success` if every comparison holds, else `failure`, atomically.
    pub fn txn(&self, compare: &[Compare], success: &[Op], failure: &[Op]) -> Result<TxnOutcome> {
        let body = json!({
            "compare": compare.iter().map(compare_json).collect::<Vec<_>>(),
            "success": success.iter().map(op_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
        });
        let r = self.call("/v3/kv/txn", &body)?;
        Ok(TxnOutcome {
            succeeded: r["succeeded"].as_bool().unwrap_or(false),
            revision: int(&r["header"]["revision"]),
        })
    }

    /// A lease of `ttl` seconds; returns its id.
    pub fn grant(&self, ttl: i64) -> Result<i64> {
        let r = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        match int(&r["ID"]) {
            0 => Err(EtcdError::Protocol(format!("no lease id in {r}"))),
            id => Ok(id),
        }
    }

    /// Renews lease `id`; returns its remaining TTL (0: it had expired, and
    /// every key attached to it is gone).
    pub fn keep_alive(&self, id: i64) -> Result<i64> {
        let r = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        Ok(int(&r["result"]["TTL"]))
    }

    /// Ends lease `id` now (its keys go).
    pub fn revoke(&self, id: i64) -> Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn json_shapes() {
        let c = compare_json(&Compare::Version(b"k".to_vec(), Cmp::Equal, 0));
        assert_eq!(c["target"], "VERSION");
        assert_eq!(c["version"], "0");
        let p = op_json(&Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lease: 7,
        });
        assert_eq!(p["request_put"]["lease"], "7");
        assert_eq!(p["request_put"]["key"], "aw==");
        let k = kv(&json!({"key": "aw==", "value": "dg==", "version": "3", "mod_revision": "9"}))
            .unwrap();
        assert_eq!(
            (k.key, k.value, k.version, k.mod_revision, k.lease),
            (b"k".to_vec(), b"v".to_vec(), 3, 9, 0)
        );
        assert!(kv(&json!({"key": "!!"})).is_err());
    }
}
