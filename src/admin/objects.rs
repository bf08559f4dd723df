//! Queues for the management API (RabbitMQ's `rabbit_mgmt_wm_queues`,
//! `_wm_queue`, `_wm_queue_purge`, `_wm_queue_get`), and what every object
//! endpoint shares: which vhosts a user may see and use, and the user's own
//! rights (`UserAccess`) for each operation.
//!
//! Nothing here reimplements a queue operation. A declare is
//! `core::ops::queue::queue_declare` run on a shard through the control
//! path; purge, delete and get are the queue's own requests
//! (`ShardCtx::request_here`) run on the queue's shard after
//! `core::ops::queue::use_queue`, so the permission checks, the exclusive
//! queue checks and the texts are those a 0-9-1 client gets. The caller is
//! the HTTP user with their own permissions (RabbitMQ's management API opens
//! a direct connection as that user); its connection id is
//! [`API_CONNECTION`], which no client connection has, so an exclusive queue
//! is locked to the API as it is to any other connection.
//!
//! A new queue is created on the shard `name_shard` picks by hashing the
//! queue name (FNV-1a modulo the shard count): there is no client
//! connection whose shard would be the natural home, and a hash spreads
//! queues declared over HTTP evenly.

use super::{Admin, UserView};
use crate::core::access::UserAccess;
use crate::core::auth::permissions::Access;
use crate::core::error::{CoreError, CoreResult};
use crate::core::ids::{ChannelRef, Requester, VhostId};
use crate::core::message::Message;
use crate::core::ops::queue::{queue_declare, use_queue, Declared, QueueSpec};
use crate::core::ops::Caller;
use crate::core::routing::LocalQueue;
use crate::core::shard_msg::{QueueOp, QueueReply, Settle, ShardMsg};
use crate::core::stats::{ConnSnap, ConsumerSnap, QueueSnap, Want};
use crate::core::ShardCtx;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The connection id the API acts as: no client connection has it (ids
/// start at 2, `ShardCtx::next_conn_uid`).
pub const API_CONNECTION: u64 = 0;

/// The channel a basic.get from the API is recorded against until the same
/// request settles it: no real channel has this connection slot.
fn api_channel(shard: u16) -> ChannelRef {
    ChannelRef {
        shard,
        channel: 0,
        conn_slot: u32::MAX,
        incarnation: 0,
    }
}

/// A queue as the API shows it: the owning shard's snapshot plus what other
/// shards know of it (its consumers, the connection owning it).
#[derive(Clone, Debug)]
pub struct QueueInfo {
    pub vhost: Arc<str>,
    pub snap: QueueSnap,
    /// Its consumers with their connection's peer host and port (filled for
    /// one queue, `Admin::queue_info`).
    pub consumers: Vec<(ConsumerSnap, Option<(String, u16)>)>,
    /// The tag of its exclusive consumer, if it has one.
    pub exclusive_consumer_tag: Option<String>,
    /// The connection owning an exclusive queue (one queue only).
    pub owner: Option<ConnSnap>,
}

/// What `POST /api/queues/{vhost}/{name}/get` does with the messages it
/// takes (RabbitMQ's `ackmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// basic.get, then basic.nack requeue=true (`ack_requeue_true`).
    AckRequeueTrue,
    /// basic.get no_ack=true (`ack_requeue_false`).
    AckRequeueFalse,
    /// basic.get, then basic.reject requeue=true.
    RejectRequeueTrue,
    /// basic.get, then basic.reject requeue=false (dead-lettered if the
    /// queue has a DLX).
    RejectRequeueFalse,
}

impl AckMode {
    pub fn parse(s: &str) -> Option<AckMode> {
        Some(match s {
            "ack_requeue_true" => AckMode::AckRequeueTrue,
            "ack_requeue_false" => AckMode::AckRequeueFalse,
            "reject_requeue_true" => AckMode::RejectRequeueTrue,
            "reject_requeue_false" => AckMode::RejectRequeueFalse,
            _ => return None,
        })
    }
}

/// One message taken by a get.
#[derive(Clone, Debug)]
pub struct GotMessage {
    pub msg: Message,
    pub redelivered: bool,
    /// Messages left in the queue after this one was taken.
    pub message_count: u32,
}

/// The shard a new queue called `name` is created on (module doc).
pub fn name_shard(name: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// What a closure on a queue's shard found: done, or the queue lives on
/// another shard now (deleted and declared again meanwhile).
enum Here<T> {
    Done(CoreResult<T>),
    Elsewhere(u16),
}

/// How a queue request on the queue's shard failed.
enum Refusal {
    /// The queue refused (if-empty, if-unused, ...).
    Core(CoreError),
    /// The queue went away meanwhile.
    Gone,
}

impl From<QueueReply> for Refusal {
    fn from(reply: QueueReply) -> Refusal {
        match reply {
            QueueReply::Error(e) => Refusal::Core(e),
            _ => Refusal::Gone,
        }
    }
}

fn stopped() -> CoreError {
    CoreError::internal("the broker is stopping")
}

impl Admin {
    /// Tag `administrator`.
    pub fn is_administrator(user: &UserView) -> bool {
        user.tags.iter().any(|t| t == "administrator")
    }

    /// Whether vhost `name` exists.
    pub fn has_vhost(&self, name: &str) -> bool {
        self.defs.lock().vhost_id(name).is_some()
    }

    /// RabbitMQ's `is_authorized_vhost` for a vhost named in a path: an
    /// administrator may use any vhost, anyone else only a vhost they have a
    /// permission on. A vhost that does not exist passes (the resource is
    /// then not found).
    pub fn may_use_vhost(&self, user: &UserView, vhost: &str) -> bool {
        if Admin::is_administrator(user) {
            return true;
        }
        let g = self.defs.lock();
        g.vhost_id(vhost).is_none() || g.tenancy.permission(&user.name, vhost).is_some()
    }

    /// The vhosts whose objects a listing shows `user` (RabbitMQ's
    /// `filter_vhost`): every vhost for an administrator, else those the
    /// user has a permission on (monitoring users included).
    pub fn listed_vhosts(&self, user: &UserView) -> HashSet<String> {
        let g = self.defs.lock();
        let admin = Admin::is_administrator(user);
        g.vhost_ids()
            .map(|(name, _)| name)
            .filter(|v| admin || g.tenancy.permission(&user.name, v).is_some())
            .map(str::to_string)
            .collect()
    }

    /// `user`'s own rights in `vhost`, for an operation.
    pub(super) fn access(&self, user: &str, vhost: &str) -> CoreResult<Arc<UserAccess>> {
        let version = self.defs.auth_version();
        self.defs
            .lock()
            .shared_access(user, vhost, version)
            .ok_or_else(|| CoreError::NotFound("vhost_not_found".into()))
    }

    fn vhost_id(&self, vhost: &str) -> Option<VhostId> {
        self.defs.lock().vhost_id(vhost)
    }

    /// Whether queue `name` exists in `vhost`.
    pub fn has_queue(&self, vhost: &str, name: &str) -> bool {
        let g = self.defs.lock();
        g.vhost_id(vhost)
            .is_some_and(|id| g.vh(id).is_ok_and(|v| v.queues.contains_key(name)))
    }

    /// Every queue (of `vhost`, or of all vhosts), from a fresh snapshot of
    /// every shard, sorted by vhost and name (RabbitMQ's default order).
    pub fn queues(&self, vhost: Option<&str>) -> Vec<QueueInfo> {
        let only = match vhost {
            Some(v) => match self.vhost_id(v) {
                Some(id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        let want = Want {
            queues: true,
            consumers: true,
            ..Want::TOTALS
        };
        let mut out = self.collect_queues(want, |q| only.is_none_or(|id| q.vhost == id));
        out.sort_by(|a, b| (&a.vhost, &a.snap.name).cmp(&(&b.vhost, &b.snap.name)));
        out
    }

    /// One queue, with its consumers and (exclusive queue) owner.
    pub fn queue_info(&self, vhost: &str, name: &str) -> Option<QueueInfo> {
        let id = self.vhost_id(vhost)?;
        self.collect_queues(Want::ALL, |q| q.vhost == id && q.name == name)
            .into_iter()
            .next()
    }

    fn collect_queues(&self, want: Want, keep: impl Fn(&QueueSnap) -> bool) -> Vec<QueueInfo> {
        let names = self.vhost_names();
        let snaps = self.snapshot(want);
        let mut consumers: HashMap<(VhostId, String), Vec<ConsumerSnap>> = HashMap::new();
        let mut conns: HashMap<u64, ConnSnap> = HashMap::new();
        let mut queues = Vec::new();
        for s in snaps {
            for c in s.consumers {
                if let Some(v) = c.vhost {
                    consumers.entry((v, c.queue.clone())).or_default().push(c);
                }
            }
            if want.connections {
                conns.extend(s.connections.into_iter().map(|c| (c.uid, c)));
            }
            queues.extend(s.queues.into_iter().filter(|q| keep(q)));
        }
        queues
            .into_iter()
            .filter_map(|snap| {
                let vhost = names.get(&snap.vhost)?.clone();
                let mine = consumers
                    .remove(&(snap.vhost, snap.name.clone()))
                    .unwrap_or_default();
                let exclusive_consumer_tag =
                    mine.iter().find(|c| c.exclusive).map(|c| c.tag.clone());
                let owner = snap
                    .exclusive_owner
                    .and_then(|uid| conns.get(&uid).cloned());
                let peer = |c: &ConsumerSnap| {
                    conns
                        .values()
                        .find(|x| x.name == c.connection)
                        .map(|x| (x.peer_host.clone(), x.peer_port))
                };
                Some(QueueInfo {
                    vhost,
                    exclusive_consumer_tag,
                    owner,
                    consumers: if want.connections {
                        mine.into_iter()
                            .map(|c| (peer(&c), c))
                            .map(|(p, c)| (c, p))
                            .collect()
                    } else {
                        Vec::new()
                    },
                    snap,
                })
            })
            .collect()
    }

    /// `PUT /api/queues/{vhost}/{name}`: queue.declare as `user`, on the
    /// shard `name_shard` picks. True if the queue was created, false if an
    /// equivalent one existed.
    pub fn declare_queue(&self, user: &str, vhost: &str, spec: QueueSpec) -> CoreResult<bool> {
        let access = self.access(user, vhost)?;
        let shard = name_shard(&spec.name, self.control.shards());
        self.control
            .ask(shard, move |s| {
                let caller = Caller {
                    conn_uid: API_CONNECTION,
                    access: &access,
                };
                queue_declare(&mut s.ctx, caller, spec)
                    .map(|d| matches!(d, Declared::Created { .. }))
            })
            .ok_or_else(stopped)?
    }

    /// `DELETE /api/queues/{vhost}/{name}` (`if-unused`, `if-empty`).
    pub fn delete_queue(
        &self,
        user: &str,
        vhost: &str,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> CoreResult<()> {
        let access = self.access(user, vhost)?;
        self.on_queue_shard(access, name, Access::Configure, move |ctx, q| {
            let op = QueueOp::Delete {
                if_unused,
                if_empty,
            };
            match ctx.request_here(q.queue, op, None) {
                QueueReply::Deleted { .. } => Ok(()),
                reply => Err(Refusal::from(reply)),
            }
        })
    }

    /// `DELETE /api/queues/{vhost}/{name}/contents`: queue.purge; how many
    /// messages went.
    pub fn purge_queue(&self, user: &str, vhost: &str, name: &str) -> CoreResult<u32> {
        let access = self.access(user, vhost)?;
        self.on_queue_shard(access, name, Access::Read, |ctx, q| {
            match ctx.request_here(q.queue, QueueOp::Purge, None) {
                QueueReply::Purged { messages } => Ok(messages),
                reply => Err(Refusal::from(reply)),
            }
        })
    }

    /// `POST /api/queues/{vhost}/{name}/get`: up to `count` basic.gets, then
    /// the settlement `mode` asks for on each message taken, all on the
    /// queue's shard in one go (as RabbitMQ settles only after taking them
    /// all, a requeued message is not taken twice).
    pub fn get_messages(
        &self,
        user: &str,
        vhost: &str,
        name: &str,
        count: usize,
        mode: AckMode,
    ) -> CoreResult<Vec<GotMessage>> {
        let access = self.access(user, vhost)?;
        self.on_queue_shard(access, name, Access::Read, move |ctx, q| {
            let channel = api_channel(ctx.id);
            let no_ack = mode == AckMode::AckRequeueFalse;
            let mut got = Vec::new();
            let mut seqs = Vec::new();
            for _ in 0..count {
                let op = QueueOp::Get { no_ack };
                match ctx.request_here(q.queue, op, Some(Requester::Channel(channel))) {
                    QueueReply::GetOk {
                        seq,
                        redelivered,
                        messages,
                        msg,
                    } => {
                        seqs.push(seq);
                        got.push(GotMessage {
                            msg,
                            redelivered,
                            message_count: messages,
                        });
                    }
                    QueueReply::GetEmpty => break,
                    reply => return Err(Refusal::from(reply)),
                }
            }
            let how = match mode {
                AckMode::AckRequeueFalse => None,
                AckMode::AckRequeueTrue | AckMode::RejectRequeueTrue => Some(Settle::Requeue),
                AckMode::RejectRequeueFalse => Some(Settle::Discard),
            };
            if let Some(how) = how {
                for seq in seqs {
                    ctx.handle_queue_msg(ShardMsg::Settle {
                        queue: q.queue,
                        channel,
                        seq,
                        how,
                        count: 1,
                    });
                }
            }
            Ok(got)
        })
    }

    /// The shard queue `name` of the caller's vhost lives on (definitions).
    fn queue_shard(&self, vhost: VhostId, name: &str) -> CoreResult<usize> {
        let g = self.defs.lock();
        let q = g.queue(vhost, name)?;
        match &q.node {
            // Until the internode link: see `core::routing`.
            Some(node) => Err(CoreError::NotFound(format!(
                "home node '{}' of durable queue '{}' in vhost '{}' is down or inaccessible",
                node,
                name,
                g.vhost_name(vhost)
            ))),
            None => Ok(q.queue.shard as usize),
        }
    }

    /// Runs `f` on the shard of queue `name` after `use_queue` (the
    /// `access` permission, then the exclusive-queue check), with the
    /// user's rights. A queue that moved shard meanwhile is followed.
    fn on_queue_shard<T: Send + 'static>(
        &self,
        access: Arc<UserAccess>,
        name: &str,
        perm: Access,
        f: impl FnOnce(&mut ShardCtx, LocalQueue) -> Result<T, Refusal> + Send + Clone + 'static,
    ) -> CoreResult<T> {
        let mut shard = self.queue_shard(access.vhost, name)?;
        for _ in 0..3 {
            let (access, name, f) = (access.clone(), name.to_string(), f.clone());
            let here = self
                .control
                .ask(shard, move |s| {
                    let ctx = &mut s.ctx;
                    let caller = Caller {
                        conn_uid: API_CONNECTION,
                        access: &access,
                    };
                    let q = match use_queue(ctx, caller, perm, &name) {
                        Ok(q) => q,
                        Err(e) => return Here::Done(Err(e)),
                    };
                    if q.queue.shard != ctx.id {
                        return Here::Elsewhere(q.queue.shard);
                    }
                    Here::Done(f(ctx, q).map_err(|r| match r {
                        Refusal::Core(e) => e,
                        Refusal::Gone => CoreError::no_queue(caller.vhost_name(), &name),
                    }))
                })
                .ok_or_else(stopped)?;
            match here {
                Here::Done(r) => return r,
                Here::Elsewhere(s) => shard = s as usize,
            }
        }
        Err(CoreError::internal("the queue kept moving between shards"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_modes_and_name_shards() {
        assert_eq!(
            AckMode::parse("ack_requeue_true"),
            Some(AckMode::AckRequeueTrue)
        );
        assert_eq!(
            AckMode::parse("reject_requeue_false"),
            Some(AckMode::RejectRequeueFalse)
        );
        assert_eq!(AckMode::parse("ack"), None);
        assert_eq!(name_shard("q", 1), 0);
        let spread: HashSet<usize> = (0..64).map(|i| name_shard(&format!("q{i}"), 4)).collect();
        assert_eq!(spread.len(), 4, "names spread over every shard");
    }
}
