//! The cluster link: the member of a clustered node's ring mesh that
//! stands for the other nodes (`REMOTE_SHARD` in the shards' outboxes).
//! One thread (`cluster-link`) with one `mio::Poll`: the rings from and to
//! the shards, and the node-to-node transport on `--cluster-port`
//! (`transport.rs`). It carries quorum-queue replication (`core::quorum`
//! tells the shard's side, `quorum.rs` who leads and who is in sync).
//!
//! Replication is `replicate.rs`; publishing to a queue on another node
//! `forward.rs`; the other uses of queues across nodes `remote.rs`, and
//! consumers following a quorum queue to its next leader `reattach.rs`.

mod codec;
mod forward;
mod reattach;
mod remote;
mod replicate;

use replicate::Lead;

use super::members::Membership;
use super::quorum::{Quorum, View};
use super::transport::{Incoming, SendResult, Transport};
use crate::admin::Admin;
use crate::core::message::Message;
use crate::core::shard_msg::ShardMsg;
use crate::shard::mesh::{Links, WAKER_TOKEN};
use mio::Events;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A follower in the in-sync set that has not synced what it was sent for
/// this long leaves it.
pub const ISR_DEADLINE: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(100);
/// Output waiting for one node above which the link stops taking the
/// shards' messages (well under the transport's 64 MiB bound).
const SATURATED: usize = 32 << 20;
const TRANSPORT_TOKENS: usize = 0;

/// Peer events, passed along with the frames (never on the wire).
const KIND_PEER_UP: u8 = 255;
const KIND_PEER_DOWN: u8 = 254;

/// The link thread's handle.
pub struct Link {
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Link {
    /// Starts the link on `links` (the mesh's last member) with the
    /// transport listening on `listener`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        links: Links,
        shards: usize,
        listener: std::net::TcpListener,
        secret: Vec<u8>,
        node: String,
        membership: Membership,
        quorum: Quorum,
        admin: Admin,
    ) -> std::io::Result<Link> {
        let transport = Transport::new(
            listener,
            node.clone(),
            secret,
            links.poll.registry(),
            TRANSPORT_TOKENS,
        )?;
        let waker = links.wakers[shards].clone();
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State {
            me: node,
            shards,
            links,
            transport,
            pending: (0..shards).map(|_| VecDeque::new()).collect(),
            nodes: Vec::new(),
            view: Arc::new(View::default()),
            view_version: u64::MAX,
            leading: HashMap::new(),
            membership,
            quorum,
            admin,
            peers: Vec::new(),
            next_gen: 0,
            incarnation: 0,
            feeding: HashMap::new(),
            reports: HashMap::new(),
            fwd: forward::Forwarding::default(),
            last_refresh: Instant::now() - Duration::from_secs(1),
            remote: remote::Remote::default(),
        };
        // Generations start at a number of this process's own, so a report
        // buffered for an earlier process of the leader's node never
        // matches a generation of this one.
        state.incarnation = replicate::incarnation();
        state.next_gen = state.incarnation as u32;
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cluster-link".into())
            .spawn(move || state.run(&s))?;
        Ok(Link {
            stop,
            waker,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    me: String,
    shards: usize,
    links: Links,
    transport: Transport,
    /// Messages for each shard that did not fit its ring yet.
    pending: Vec<VecDeque<ShardMsg>>,
    /// Node numbers for `ShardMsg`'s `to` fields: `nodes[n - 1]`.
    nodes: Vec<String>,
    view: Arc<View>,
    view_version: u64,
    leading: HashMap<u64, Lead>,
    membership: Membership,
    quorum: Quorum,
    admin: Admin,
    peers: Vec<(String, SocketAddr)>,
    /// Replica generations handed out (one counter for every follower).
    next_gen: u32,
    /// This process, told apart from the node's earlier ones (lineages).
    incarnation: u64,
    /// As a follower: the leader feeding each replica (whose reset it
    /// took last), where its reports go.
    feeding: HashMap<u64, String>,
    /// As a follower: the last report of each replica (seq, generation,
    /// sent).
    reports: HashMap<u64, (u64, u32, bool)>,
    /// Publishes to queues on other nodes (`forward.rs`).
    fwd: forward::Forwarding,
    /// The last time the members were read at once (`ensure_peer`).
    last_refresh: Instant,
    /// Other uses of queues across nodes (`remote.rs`).
    remote: remote::Remote,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl State {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        let mut next_tick = Instant::now();
        let me = self.shards;
        while !stop.load(Ordering::Acquire) {
            let busy = self.transport.has_deferred() || self.pending.iter().any(|p| !p.is_empty());
            // Other nodes not taking what is sent: the shards' rings wait
            // (and their publishers with them) until the output drains.
            let saturated = self.saturated();
            let mut timeout = next_tick.saturating_duration_since(Instant::now());
            if busy {
                timeout = Duration::ZERO;
            } else {
                self.links.parked[me].store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if !saturated && self.links.from.iter().flatten().any(|c| !c.is_empty()) {
                    timeout = Duration::ZERO;
                }
            }
            let _ = self.links.poll.poll(&mut events, Some(timeout));
            self.links.parked[me].store(false, Ordering::SeqCst);
            let mut frames = Vec::new();
            for ev in events.iter() {
                if ev.token() == WAKER_TOKEN {
                    continue;
                }
                if self.transport.owns(ev.token()) {
                    self.transport
                        .handle_event(ev, &mut |inc| collect(inc, &mut frames));
                }
            }
            if self.transport.has_deferred() {
                self.transport
                    .run_deferred(&mut |inc| collect(inc, &mut frames));
            }
            for f in frames {
                self.incoming(f);
            }
            if !saturated {
                self.pump();
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                self.tick();
            }
            self.flush_to_shards();
            self.transport.flush();
            self.remote_backpressure();
        }
    }

    /// The transport's peers: every other member, at its cluster address.
    fn update_peers(&mut self, members: Vec<super::members::Member>) {
        let mut peers = Vec::new();
        for m in members {
            if m.name == self.me {
                continue;
            }
            let addr = m.info["address"].as_str().unwrap_or("");
            let port = m.info["cluster_port"].as_u64().unwrap_or(0) as u16;
            if let Some(a) = (addr, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut i| i.next())
            {
                peers.push((m.name.clone(), a));
            }
        }
        if peers != self.peers {
            self.transport.set_peers(&peers);
            self.peers = peers;
        }
    }

    /// Makes sure `node` is a peer before sending to it: a node that
    /// just joined may be known from a frame it sent, or the definitions,
    /// before this node's membership round lists it. Reads etcd at once
    /// (at most every 20 ms).
    pub(super) fn ensure_peer(&mut self, node: &str) {
        if node == self.me || self.peers.iter().any(|(n, _)| n == node) {
            return;
        }
        if self.last_refresh.elapsed() < Duration::from_millis(20) {
            return;
        }
        self.last_refresh = Instant::now();
        let members = self.membership.refresh();
        self.update_peers(members);
    }

    /// Some node has more than `SATURATED` bytes waiting for it.
    fn saturated(&self) -> bool {
        self.peers
            .iter()
            .any(|(n, _)| self.transport.pending_bytes(n) > SATURATED)
    }

    /// Messages from the shards.
    fn pump(&mut self) {
        for j in 0..self.shards {
            for i in 0..4096 {
                // Checked as it goes (every 64 messages): a bulk copy of
                // large messages would otherwise pass the transport's bound
                // within one batch, and fail.
                if i % 64 == 63 && self.saturated() {
                    return;
                }
                let Some(m) = self.links.from[j].as_mut().and_then(|c| c.pop()) else {
                    break;
                };
                self.on_shard_msg(m);
            }
        }
    }

    fn node_no(&mut self, name: &str) -> u16 {
        if let Some(i) = self.nodes.iter().position(|n| n == name) {
            return i as u16 + 1;
        }
        self.nodes.push(name.to_string());
        self.nodes.len() as u16
    }

    fn on_shard_msg(&mut self, m: ShardMsg) {
        match m {
            m @ (ShardMsg::ReplicaAppend { .. }
            | ShardMsg::ReplicaGone { .. }
            | ShardMsg::ReplicaReset { .. }
            | ShardMsg::ReplicaBulkDone { .. }
            | ShardMsg::ReplicaSynced { .. }) => self.replica_from_shard(m),
            ShardMsg::Publish {
                queue,
                msg,
                confirm,
                ..
            } => self.forward_publish(queue, msg, confirm),
            ShardMsg::Confirm { tag, ok, count } => self.forward_confirm(tag, ok, count),
            m @ (ShardMsg::Request { .. }
            | ShardMsg::Settle { .. }
            | ShardMsg::ChannelGone { .. }
            | ShardMsg::Resume { .. }) => self.remote_from_shard(m),
            m @ (ShardMsg::Reply { .. }
            | ShardMsg::Deliver { .. }
            | ShardMsg::ConsumerCancelled { .. }
            | ShardMsg::ConsumerTimeout { .. }) => self.remote_to_origin(m),
            // Direct replies and moving sessions never leave a node.
            _ => {}
        }
    }

    /// A frame from node `from`.
    fn incoming(&mut self, f: Frame) {
        match f.kind {
            KIND_PEER_UP => return self.peer_up(&f.from),
            KIND_PEER_DOWN => return self.peer_down(&f.from),
            _ => self.ensure_peer(&f.from),
        }
        match f.kind {
            forward::K_PUBLISH => return self.publish_frame(&f.from, &f.payload),
            forward::K_CONFIRM => return self.confirm_frame(&f.payload),
            remote::K_REQUEST..=remote::K_TIMEOUT => {
                return self.remote_frame(&f.from, f.kind, &f.payload)
            }
            _ => {}
        }
        self.replica_frame(&f.from, f.kind, &f.payload);
    }

    fn tick(&mut self) {
        self.transport.tick(Instant::now());
        let members = self.membership.members();
        self.update_peers(members);
        self.retry_requests();
        self.reattach_orphans();
        self.forwarding_expired();
        let (view, version) = self.quorum.view();
        if version != self.view_version {
            self.view_version = version;
            self.view = view;
            self.apply_view();
        }
        self.tick_replication();
    }

    fn peer_down(&mut self, node: &str) {
        self.forwarding_lost(node);
        self.remote_lost(node);
        for l in self.leading.values_mut() {
            if let Some(f) = l.followers.get_mut(node) {
                f.gen = 0;
                f.bulk_asked = false;
            }
        }
    }

    fn peer_up(&mut self, node: &str) {
        self.forwarding_up(node);
        let ids: Vec<u64> = self
            .leading
            .iter()
            .filter(|(_, l)| l.followers.contains_key(node))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.ask_bulk(id, node);
        }
    }

    fn flush_to_shards(&mut self) {
        for j in 0..self.shards {
            let mut pushed = false;
            let ring = self.links.to[j].as_mut().expect("ring to shard");
            while let Some(m) = self.pending[j].pop_front() {
                match ring.try_push(m) {
                    Ok(()) => pushed = true,
                    Err(m) => {
                        self.pending[j].push_front(m);
                        break;
                    }
                }
            }
            if pushed {
                fence(Ordering::SeqCst);
                if self.links.parked[j].load(Ordering::SeqCst) {
                    let _ = self.links.wakers[j].wake();
                }
            }
        }
    }
}

/// A frame or a peer event, copied out of the transport's buffer.
struct Frame {
    from: String,
    kind: u8,
    payload: Vec<u8>,
}

fn collect(inc: Incoming<'_>, out: &mut Vec<Frame>) {
    match inc {
        Incoming::Frame {
            from,
            kind,
            payload,
        } => out.push(Frame {
            from: from.to_string(),
            kind,
            payload: payload.to_vec(),
        }),
        Incoming::PeerUp(n) => out.push(Frame {
            from: n.to_string(),
            kind: KIND_PEER_UP,
            payload: Vec::new(),
        }),
        Incoming::PeerDown(n) => out.push(Frame {
            from: n.to_string(),
            kind: KIND_PEER_DOWN,
            payload: Vec::new(),
        }),
    }
}

/// Writes a message as the append and publish frames carry it: exchange
/// (u8 length), routing key (u8 length), properties (u32 length), body
/// (the rest). `decode_append` reads it back.
fn put_message(w: &mut super::transport::FrameWriter<'_>, msg: &Message) {
    let (x, rk, props, body) = (
        msg.exchange(),
        msg.routing_key(),
        msg.properties(),
        msg.body(),
    );
    w.reserve(2 + x.len() + rk.len() + 4 + props.len() + body.len());
    w.put_u8(x.len().min(255) as u8);
    w.put(&x[..x.len().min(255)]);
    w.put_u8(rk.len().min(255) as u8);
    w.put(&rk[..rk.len().min(255)]);
    w.put_u32(props.len() as u32);
    w.put(props);
    w.put(body);
}

fn decode_append(p: &[u8]) -> Option<Message> {
    let xl = *p.first()? as usize;
    let x = p.get(1..1 + xl)?;
    let at = 1 + xl;
    let rl = *p.get(at)? as usize;
    let rk = p.get(at + 1..at + 1 + rl)?;
    let at = at + 1 + rl;
    let pl = u32_at(p, at)? as usize;
    let props = p.get(at + 4..at + 4 + pl)?;
    let body = p.get(at + 4 + pl..)?;
    Some(Message::new(x, rk, props, body))
}

/// The frame is on its way (or waits for the peer's connection).
fn queued(r: SendResult) -> bool {
    matches!(r, SendResult::Queued | SendResult::NotConnected)
}
