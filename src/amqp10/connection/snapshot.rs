//! The management API's view of an AMQP 1.0 connection (`core::stats`),
//! taken on the shard's thread by `ShardState::snapshot`: RabbitMQ lists
//! it with protocol `AMQP 1-0`, its sessions counted as channels.

use super::{Connection, State};
use crate::core::stats::{connection_name, ip_text, BlockedBy, ConnSnap, ShardSnapshot, Want};
use crate::core::ShardCtx;

impl Connection {
    /// The connection's name as RabbitMQ builds it: `peer -> local`.
    pub fn name(&self) -> String {
        connection_name(self.info.peer, self.info.local)
    }

    /// Adds this connection to `out` (not before its SASL layer began).
    pub fn snapshot(&self, ctx: &ShardCtx, want: Want, out: &mut ShardSnapshot) {
        let state = match self.state {
            State::Header => return,
            State::SaslInit | State::AmqpHeader => "starting",
            State::Open => "opening",
            State::Running => "running",
            State::Closing | State::CloseAfterFlush => "closing",
        };
        let blocked_by = ctx.publisher_blocked_by(self.info.publisher, self.sock.flow_blocked);
        let state = match (&blocked_by, state) {
            (Some(BlockedBy::Flow { .. }), "running") => "flow",
            (Some(_), "running") => "blocked",
            (_, s) => s,
        };
        let sessions = self.sessions.iter().flatten().count();
        out.connection_count += 1;
        out.channel_count += sessions as u64;
        out.publishers += self.info.publisher as u64;
        out.consumer_count += self
            .sessions
            .iter()
            .flatten()
            .map(|s| s.consumer_count() as u64)
            .sum::<u64>();
        if !want.connections {
            return;
        }
        let (peer, local) = (self.info.peer, self.info.local);
        let io = self.sock.io;
        let tls = self.sock.tls();
        out.connections.push(ConnSnap {
            name: self.name(),
            protocol: "AMQP 1-0",
            user: self.info.user.clone(),
            vhost: self.info.counted.then_some(self.info.access.vhost),
            peer_host: peer.map_or_else(String::new, |a| ip_text(a.ip())),
            peer_port: peer.map_or(0, |a| a.port()),
            host: local.map_or_else(String::new, |a| ip_text(a.ip())),
            port: local.map_or(0, |a| a.port()),
            connected_at: self.info.connected_at,
            client_properties: crate::protocol::FieldTable::default(),
            auth_mechanism: self.info.auth_mechanism,
            channels: sessions as u32,
            channel_max: self.info.channel_max,
            frame_max: self.info.max_frame_in,
            heartbeat: (self.info.peer_idle_timeout / 1000).min(u16::MAX as u32) as u16,
            state,
            blocked_by,
            ssl: tls.is_some(),
            ssl_protocol: tls.and_then(|t| t.protocol()),
            ssl_cipher: tls.and_then(|t| t.cipher()),
            peer_cert_subject: tls.and_then(|t| t.peer_cert()).map(|c| c.subject.clone()),
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
