//! The records of the definitions log (`defs_log.rs` frames and stores them):
//! one durable change each. The body is a type octet and the fields of that
//! type; strings are `u32` length + UTF-8 bytes, argument tables are AMQP field
//! tables encoded by the protocol codec, a list of strings is a `u32` count and
//! the strings, limits are a `u32` count of (name string, `i64` value).
//!
//! | type | record | fields |
//! |---|---|---|
//! | 1–6 | (before vhosts) as 11–16, without the vhost: read as vhost `/` |
//! | 7 | next queue id | u64: no queue id below it may be handed out again |
//! | 11 | exchange declare | vhost, name, kind ("direct", …), flags (1 durable, 2 auto_delete, 4 internal), args |
//! | 12 | exchange delete | vhost, name |
//! | 13 | queue declare | vhost, name, id u64, home shard u16, flags (2 auto_delete), args |
//! | 14 | queue delete | vhost, name |
//! | 15 | binding add | vhost, source, dest kind (1 queue, 2 exchange), dest name, routing key, args |
//! | 16 | binding remove | same as binding add |
//! | 17 | cluster queue declare | vhost, name, id u64, home shard u16, flags (1 durable, 2 auto_delete, 4 exclusive), owner node, args |
//! | 20 | vhost put | name, description, tags, default queue type, limits |
//! | 21 | vhost delete | name |
//! | 22 | user put | name, hashing algorithm, password hash (bytes), tags, limits |
//! | 23 | user delete | name |
//! | 24 | permission set | user, vhost, configure, write, read |
//! | 25 | permission clear | user, vhost |
//! | 26 | topic permission set | user, vhost, exchange, write, read |
//! | 27 | topic permission clear | user, vhost, exchange |
//! | 28 | initialized | (none): the defaults of a fresh data dir were created |
//! | 29 | parameter set | vhost, component, name, value (JSON text, compact) |
//! | 30 | parameter clear | vhost, component, name |
//!
//! This module knows nothing of the broker: `core::definitions` turns its
//! changes into [`Record`]s and replays them at boot. A "put" record holds the
//! whole object, so replay keeps the last one.

use crate::protocol::reader::{put_longstr, put_u16, put_u32, put_u64, put_u8, Reader};
use crate::protocol::{DecodeError, FieldTable};
use bytes::Bytes;

/// `len` + `crc`.
pub(super) const FRAME_HEADER: usize = 8;

const T_EXCHANGE_DECLARE_V0: u8 = 1;
const T_EXCHANGE_DELETE_V0: u8 = 2;
const T_QUEUE_DECLARE_V0: u8 = 3;
const T_QUEUE_DELETE_V0: u8 = 4;
const T_BINDING_ADD_V0: u8 = 5;
const T_BINDING_REMOVE_V0: u8 = 6;
const T_NEXT_QUEUE_ID: u8 = 7;
const T_EXCHANGE_DECLARE: u8 = 11;
const T_EXCHANGE_DELETE: u8 = 12;
const T_QUEUE_DECLARE: u8 = 13;
const T_QUEUE_DELETE: u8 = 14;
const T_BINDING_ADD: u8 = 15;
const T_BINDING_REMOVE: u8 = 16;
const T_CLUSTER_QUEUE: u8 = 17;
const T_VHOST_PUT: u8 = 20;
const T_VHOST_DELETE: u8 = 21;
const T_USER_PUT: u8 = 22;
const T_USER_DELETE: u8 = 23;
const T_PERMISSION_SET: u8 = 24;
const T_PERMISSION_CLEAR: u8 = 25;
const T_TOPIC_PERMISSION_SET: u8 = 26;
const T_TOPIC_PERMISSION_CLEAR: u8 = 27;
const T_INITIALIZED: u8 = 28;
const T_PARAMETER_SET: u8 = 29;
const T_PARAMETER_CLEAR: u8 = 30;

const F_DURABLE: u8 = 1;
const F_AUTO_DELETE: u8 = 2;
const F_INTERNAL: u8 = 4;
/// Queue flag of `ClusterQueue` (exchanges use 4 for `internal`).
const F_EXCLUSIVE: u8 = 4;

/// The vhost of records written before vhosts existed.
const LEGACY_VHOST: &str = "/";

/// What a binding leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestKind {
    Queue,
    Exchange,
}

/// A binding as the log stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingRecord {
    pub vhost: String,
    pub source: String,
    pub dest_kind: DestKind,
    pub dest: String,
    pub key: String,
    pub args: FieldTable,
}

/// Named limits (`max-connections`, …) with their values.
pub type Limits = Vec<(String, i64)>;

/// One change to the durable definitions.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    ExchangeDeclare {
        vhost: String,
        name: String,
        /// The type's name, as in exchange.declare.
        kind: String,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        args: FieldTable,
    },
    ExchangeDelete {
        vhost: String,
        name: String,
    },
    QueueDeclare {
        vhost: String,
        name: String,
        /// The queue's stable id (`QueueDef::store_id`), never reused.
        id: u64,
        /// The shard the queue lived on (taken modulo the shard count at boot).
        home: u16,
        auto_delete: bool,
        args: FieldTable,
    },
    QueueDelete {
        vhost: String,
        name: String,
    },
    /// A queue as a cluster's definitions carry it (`cluster::defs_sync`):
    /// every queue, durable or not, with the node that holds it. Never in
    /// a single node's log.
    ClusterQueue {
        vhost: String,
        name: String,
        id: u64,
        home: u16,
        durable: bool,
        auto_delete: bool,
        exclusive: bool,
        /// The node whose shard holds the queue (its leader, for a quorum
        /// queue).
        owner: String,
        args: FieldTable,
    },
    BindingAdd(BindingRecord),
    BindingRemove(BindingRecord),
    /// Written first by compaction: queue ids below this were handed out, even
    /// if no declare record of them is left.
    NextQueueId(u64),
    VhostPut {
        name: String,
        description: String,
        tags: Vec<String>,
        default_queue_type: String,
        limits: Limits,
    },
    VhostDelete {
        name: String,
    },
    UserPut {
        name: String,
        /// RabbitMQ's name of the hashing module (`rabbit_password_hashing_sha256`).
        algorithm: String,
        /// Salt and digest; empty: no password login.
        hash: Vec<u8>,
        tags: Vec<String>,
        limits: Limits,
    },
    UserDelete {
        name: String,
    },
    PermissionSet {
        user: String,
        vhost: String,
        configure: String,
        write: String,
        read: String,
    },
    PermissionClear {
        user: String,
        vhost: String,
    },
    TopicPermissionSet {
        user: String,
        vhost: String,
        exchange: String,
        write: String,
        read: String,
    },
    TopicPermissionClear {
        user: String,
        vhost: String,
        exchange: String,
    },
    /// The defaults of a fresh data directory (vhost `/`, the default user
    /// and its permissions) were created: never again, even if deleted.
    Initialized,
    /// A vhost runtime parameter (RabbitMQ's `rabbit_runtime_parameters`:
    /// a shovel, …) was created or replaced.
    ParameterSet {
        vhost: String,
        component: String,
        name: String,
        /// The value as JSON text (serde_json's compact form).
        value: String,
    },
    ParameterClear {
        vhost: String,
        component: String,
        name: String,
    },
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_longstr(out, s.as_bytes());
}

fn put_strs(out: &mut Vec<u8>, v: &[String]) {
    put_u32(out, v.len() as u32);
    for s in v {
        put_str(out, s);
    }
}

fn put_limits(out: &mut Vec<u8>, v: &Limits) {
    put_u32(out, v.len() as u32);
    for (k, n) in v {
        put_str(out, k);
        put_u64(out, *n as u64);
    }
}

impl Record {
    /// Appends the body (type octet and fields, no frame).
    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Record::ExchangeDeclare {
                vhost,
                name,
                kind,
                durable,
                auto_delete,
                internal,
                args,
            } => {
                put_u8(out, T_EXCHANGE_DECLARE);
                put_str(out, vhost);
                put_str(out, name);
                put_str(out, kind);
                let mut flags = 0;
                if *durable {
                    flags |= F_DURABLE;
                }
                if *auto_delete {
                    flags |= F_AUTO_DELETE;
                }
                if *internal {
                    flags |= F_INTERNAL;
                }
                put_u8(out, flags);
                args.encode(out);
            }
            Record::ExchangeDelete { vhost, name } => {
                put_u8(out, T_EXCHANGE_DELETE);
                put_str(out, vhost);
                put_str(out, name);
            }
            Record::QueueDeclare {
                vhost,
                name,
                id,
                home,
                auto_delete,
                args,
            } => {
                put_u8(out, T_QUEUE_DECLARE);
                put_str(out, vhost);
                put_str(out, name);
                put_u64(out, *id);
                put_u16(out, *home);
                put_u8(out, if *auto_delete { F_AUTO_DELETE } else { 0 });
                args.encode(out);
            }
            Record::ClusterQueue {
                vhost,
                name,
                id,
                home,
                durable,
                auto_delete,
                exclusive,
                owner,
                args,
            } => {
                put_u8(out, T_CLUSTER_QUEUE);
                put_str(out, vhost);
                put_str(out, name);
                put_u64(out, *id);
                put_u16(out, *home);
                let mut flags = 0;
                if *durable {
                    flags |= F_DURABLE;
                }
                if *auto_delete {
                    flags |= F_AUTO_DELETE;
                }
                if *exclusive {
                    flags |= F_EXCLUSIVE;
                }
                put_u8(out, flags);
                put_str(out, owner);
                args.encode(out);
            }
            Record::QueueDelete { vhost, name } => {
                put_u8(out, T_QUEUE_DELETE);
                put_str(out, vhost);
                put_str(out, name);
            }
            Record::BindingAdd(b) | Record::BindingRemove(b) => {
                let t = if matches!(self, Record::BindingAdd(_)) {
                    T_BINDING_ADD
                } else {
                    T_BINDING_REMOVE
                };
                put_u8(out, t);
                put_str(out, &b.vhost);
                put_str(out, &b.source);
                put_u8(
                    out,
                    match b.dest_kind {
                        DestKind::Queue => 1,
                        DestKind::Exchange => 2,
                    },
                );
                put_str(out, &b.dest);
                put_str(out, &b.key);
                b.args.encode(out);
            }
            Record::NextQueueId(id) => {
                put_u8(out, T_NEXT_QUEUE_ID);
                put_u64(out, *id);
            }
            Record::VhostPut {
                name,
                description,
                tags,
                default_queue_type,
                limits,
            } => {
                put_u8(out, T_VHOST_PUT);
                put_str(out, name);
                put_str(out, description);
                put_strs(out, tags);
                put_str(out, default_queue_type);
                put_limits(out, limits);
            }
            Record::VhostDelete { name } => {
                put_u8(out, T_VHOST_DELETE);
                put_str(out, name);
            }
            Record::UserPut {
                name,
                algorithm,
                hash,
                tags,
                limits,
            } => {
                put_u8(out, T_USER_PUT);
                put_str(out, name);
                put_str(out, algorithm);
                put_longstr(out, hash);
                put_strs(out, tags);
                put_limits(out, limits);
            }
            Record::UserDelete { name } => {
                put_u8(out, T_USER_DELETE);
                put_str(out, name);
            }
            Record::PermissionSet {
                user,
                vhost,
                configure,
                write,
                read,
            } => {
                put_u8(out, T_PERMISSION_SET);
                for s in [user, vhost, configure, write, read] {
                    put_str(out, s);
                }
            }
            Record::PermissionClear { user, vhost } => {
                put_u8(out, T_PERMISSION_CLEAR);
                put_str(out, user);
                put_str(out, vhost);
            }
            Record::TopicPermissionSet {
                user,
                vhost,
                exchange,
                write,
                read,
            } => {
                put_u8(out, T_TOPIC_PERMISSION_SET);
                for s in [user, vhost, exchange, write, read] {
                    put_str(out, s);
                }
            }
            Record::TopicPermissionClear {
                user,
                vhost,
                exchange,
            } => {
                put_u8(out, T_TOPIC_PERMISSION_CLEAR);
                for s in [user, vhost, exchange] {
                    put_str(out, s);
                }
            }
            Record::Initialized => put_u8(out, T_INITIALIZED),
            Record::ParameterSet {
                vhost,
                component,
                name,
                value,
            } => {
                put_u8(out, T_PARAMETER_SET);
                for s in [vhost, component, name, value] {
                    put_str(out, s);
                }
            }
            Record::ParameterClear {
                vhost,
                component,
                name,
            } => {
                put_u8(out, T_PARAMETER_CLEAR);
                for s in [vhost, component, name] {
                    put_str(out, s);
                }
            }
        }
    }

    /// Appends the framed record: `[len][crc32][body]`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        self.encode_body(out);
        let body = &out[at + FRAME_HEADER..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        out[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
    }

    /// Decodes one body; it must be consumed exactly.
    pub fn decode(body: Bytes) -> Result<Record, DecodeError> {
        let mut r = Reader::new(body);
        let t = r.u8()?;
        // Records of the first format carry no vhost: they are `/`'s.
        let vhost = |r: &mut Reader| -> Result<String, DecodeError> {
            if t < T_NEXT_QUEUE_ID {
                Ok(LEGACY_VHOST.to_string())
            } else {
                string(r)
            }
        };
        let rec = match t {
            T_EXCHANGE_DECLARE | T_EXCHANGE_DECLARE_V0 => {
                let vhost = vhost(&mut r)?;
                let name = string(&mut r)?;
                let kind = string(&mut r)?;
                let flags = r.u8()?;
                Record::ExchangeDeclare {
                    vhost,
                    name,
                    kind,
                    durable: flags & F_DURABLE != 0,
                    auto_delete: flags & F_AUTO_DELETE != 0,
                    internal: flags & F_INTERNAL != 0,
                    args: r.table()?,
                }
            }
            T_EXCHANGE_DELETE | T_EXCHANGE_DELETE_V0 => Record::ExchangeDelete {
                vhost: vhost(&mut r)?,
                name: string(&mut r)?,
            },
            T_QUEUE_DECLARE | T_QUEUE_DECLARE_V0 => Record::QueueDeclare {
                vhost: vhost(&mut r)?,
                name: string(&mut r)?,
                id: r.u64()?,
                home: r.u16()?,
                auto_delete: r.u8()? & F_AUTO_DELETE != 0,
                args: r.table()?,
            },
            T_CLUSTER_QUEUE => {
                let vhost = string(&mut r)?;
                let name = string(&mut r)?;
                let id = r.u64()?;
                let home = r.u16()?;
                let flags = r.u8()?;
                Record::ClusterQueue {
                    vhost,
                    name,
                    id,
                    home,
                    durable: flags & F_DURABLE != 0,
                    auto_delete: flags & F_AUTO_DELETE != 0,
                    exclusive: flags & F_EXCLUSIVE != 0,
                    owner: string(&mut r)?,
                    args: r.table()?,
                }
            }
            T_QUEUE_DELETE | T_QUEUE_DELETE_V0 => Record::QueueDelete {
                vhost: vhost(&mut r)?,
                name: string(&mut r)?,
            },
            T_BINDING_ADD | T_BINDING_REMOVE | T_BINDING_ADD_V0 | T_BINDING_REMOVE_V0 => {
                let vhost = vhost(&mut r)?;
                let source = string(&mut r)?;
                let dest_kind = match r.u8()? {
                    1 => DestKind::Queue,
                    2 => DestKind::Exchange,
                    k => return Err(DecodeError::UnknownFieldType(k)),
                };
                let b = BindingRecord {
                    vhost,
                    source,
                    dest_kind,
                    dest: string(&mut r)?,
                    key: string(&mut r)?,
                    args: r.table()?,
                };
                if t == T_BINDING_ADD || t == T_BINDING_ADD_V0 {
                    Record::BindingAdd(b)
                } else {
                    Record::BindingRemove(b)
                }
            }
            T_NEXT_QUEUE_ID => Record::NextQueueId(r.u64()?),
            T_VHOST_PUT => Record::VhostPut {
                name: string(&mut r)?,
                description: string(&mut r)?,
                tags: strings(&mut r)?,
                default_queue_type: string(&mut r)?,
                limits: limits(&mut r)?,
            },
            T_VHOST_DELETE => Record::VhostDelete {
                name: string(&mut r)?,
            },
            T_USER_PUT => Record::UserPut {
                name: string(&mut r)?,
                algorithm: string(&mut r)?,
                hash: r.longstr()?.to_vec(),
                tags: strings(&mut r)?,
                limits: limits(&mut r)?,
            },
            T_USER_DELETE => Record::UserDelete {
                name: string(&mut r)?,
            },
            T_PERMISSION_SET => Record::PermissionSet {
                user: string(&mut r)?,
                vhost: string(&mut r)?,
                configure: string(&mut r)?,
                write: string(&mut r)?,
                read: string(&mut r)?,
            },
            T_PERMISSION_CLEAR => Record::PermissionClear {
                user: string(&mut r)?,
                vhost: string(&mut r)?,
            },
            T_TOPIC_PERMISSION_SET => Record::TopicPermissionSet {
                user: string(&mut r)?,
                vhost: string(&mut r)?,
                exchange: string(&mut r)?,
                write: string(&mut r)?,
                read: string(&mut r)?,
            },
            T_TOPIC_PERMISSION_CLEAR => Record::TopicPermissionClear {
                user: string(&mut r)?,
                vhost: string(&mut r)?,
                exchange: string(&mut r)?,
            },
            T_INITIALIZED => Record::Initialized,
            T_PARAMETER_SET => Record::ParameterSet {
                vhost: string(&mut r)?,
                component: string(&mut r)?,
                name: string(&mut r)?,
                value: string(&mut r)?,
            },
            T_PARAMETER_CLEAR => Record::ParameterClear {
                vhost: string(&mut r)?,
                component: string(&mut r)?,
                name: string(&mut r)?,
            },
            t => return Err(DecodeError::UnknownFieldType(t)),
        };
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(rec)
    }
}

fn string(r: &mut Reader) -> Result<String, DecodeError> {
    let b = r.longstr()?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Truncated)
}

/// A count is checked against what is left, so garbage cannot ask for a
/// huge allocation.
fn count(r: &mut Reader) -> Result<usize, DecodeError> {
    let n = r.u32()? as usize;
    if n > r.remaining() {
        return Err(DecodeError::Truncated);
    }
    Ok(n)
}

fn strings(r: &mut Reader) -> Result<Vec<String>, DecodeError> {
    let n = count(r)?;
    (0..n).map(|_| string(r)).collect()
}

fn limits(r: &mut Reader) -> Result<Limits, DecodeError> {
    let n = count(r)?;
    (0..n).map(|_| Ok((string(r)?, r.u64()? as i64))).collect()
}
