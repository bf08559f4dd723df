//! The management API's view of a 0-9-1 connection, its channels and their
//! consumers (`core::stats`), taken on the shard's thread by
//! `ShardState::snapshot`.

use super::{Connection, State};
use crate::core::stats::{connection_name, ip_text};
use crate::core::stats::{BlockedBy, ConnSnap, ShardSnapshot, Want};
use crate::core::ShardCtx;

impl Connection {
    /// The connection's name as RabbitMQ builds it: `peer -> local`, each
    /// `address:port` (IPv4-mapped IPv6 addresses shown as IPv4).
    pub fn name(&self) -> String {
        connection_name(self.info.peer, self.info.local)
    }

    /// Adds this connection (and, as asked, its channels and consumers) to
    /// `out`. A socket that has not finished the protocol header is not a
    /// connection yet and adds nothing.
    pub fn snapshot(&self, ctx: &ShardCtx, want: Want, out: &mut ShardSnapshot) {
        let state = match self.state {
            State::ProtocolHeader => return,
            State::StartOk => "starting",
            State::TuneOk => "tuning",
            State::Open => "opening",
            State::Running => "running",
            State::CloseAwaitingConfirms | State::Closing | State::CloseAfterFlush => "closing",
        };
        let blocked_by = ctx.publisher_blocked_by(self.info.publisher, self.sock.flow_blocked);
        let state = match (&blocked_by, state) {
            (Some(BlockedBy::Flow { .. }), "running") => "flow",
            (Some(_), "running") => "blocked",
            (_, s) => s,
        };
        let open: Vec<_> = self.channels.iter().flatten().collect();
        out.connection_count += 1;
        out.channel_count += open.len() as u64;
        out.publishers += self.info.publisher as u64;
        let name = if want.connections || want.channels || want.consumers {
            self.name()
        } else {
            String::new()
        };
        let vhost = self.info.counted.then_some(self.info.access.vhost);
        for chan in &open {
            out.consumer_count += chan.consumer_count() as u64;
            if want.channels {
                out.channels.push(chan.snapshot(&name, &self.info, vhost));
            }
            if want.consumers {
                chan.consumer_snapshots(&name, &self.info, vhost, &mut out.consumers);
            }
            out.totals.add(&chan.stats);
        }
        if !want.connections {
            return;
        }
        let (peer, local) = (self.info.peer, self.info.local);
        let io = self.sock.io;
        let tls = self.info.tls.as_deref();
        out.connections.push(ConnSnap {
            name,
            protocol: "AMQP 0-9-1",
            user: self.info.user.clone(),
            vhost,
            peer_host: peer.map_or_else(String::new, |a| ip_text(a.ip())),
            peer_port: peer.map_or(0, |a| a.port()),
            host: local.map_or_else(String::new, |a| ip_text(a.ip())),
            port: local.map_or(0, |a| a.port()),
            connected_at: self.info.connected_at,
            client_properties: self.info.client_properties.clone(),
            auth_mechanism: self.info.auth_mechanism,
            channels: open.len() as u32,
            channel_max: self.info.channel_max,
            frame_max: self.info.frame_max,
            heartbeat: self.info.heartbeat,
            state,
            blocked_by,
            ssl: self.info.ssl,
            ssl_protocol: tls.and_then(|t| t.protocol),
            ssl_cipher: tls.and_then(|t| t.cipher),
            peer_cert_subject: tls.and_then(|t| t.peer_cert_subject.clone()),
            recv_oct: io.recv_oct,
            recv_cnt: io.recv_cnt,
            send_oct: io.send_oct,
            send_cnt: io.send_cnt,
            send_pend: self.sock.pending_output() as u64,
            uid: self.info.uid,
            shard: ctx.id,
        });
    }
}
