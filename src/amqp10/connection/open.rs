//! The way in: protocol headers, SASL (PLAIN, ANONYMOUS, EXTERNAL) and
//! `open`, with the same users, vhosts, permissions and limits as 0-9-1.

use super::{Connection, State, HANDSHAKE_FRAME_MAX, MIN_MAX_FRAME_SIZE};
use crate::amqp10::error::{cond, Amqp10Error};
use crate::amqp10::wire::{self, SaslCode};
use crate::config::CertLoginFrom;
use crate::core::definitions::OpenError;
use crate::core::ShardCtx;

/// What a SASL exchange needs from `sasl-init`.
pub struct SaslInit {
    pub mechanism: Vec<u8>,
    pub initial_response: Option<bytes::Bytes>,
}

impl Connection {
    /// An 8-byte protocol header: SASL first, then AMQP.
    pub(super) fn protocol_header(&mut self, header: &[u8], ctx: &mut ShardCtx) {
        let slot = self.info.slot as usize;
        ctx.mark_dirty(slot);
        match (self.state, header) {
            (State::Header, h) if h == wire::SASL_HEADER => {
                self.sock.wbuf.extend_from_slice(&wire::SASL_HEADER);
                let mechs = self.mechanisms(ctx);
                wire::write_sasl_mechanisms(&mut self.sock.wbuf, &mechs);
                self.state = State::SaslInit;
            }
            (State::AmqpHeader, h) if h == wire::AMQP_HEADER => {
                self.sock.wbuf.extend_from_slice(&wire::AMQP_HEADER);
                self.state = State::Open;
            }
            _ => {
                // An unsupported header, or AMQP without SASL (RabbitMQ 4
                // requires SASL): answer with the one we want, close.
                let want = if self.state == State::Header {
                    wire::SASL_HEADER
                } else {
                    wire::AMQP_HEADER
                };
                self.sock.wbuf.extend_from_slice(&want);
                self.sock.rbuf.clear();
                self.state = State::CloseAfterFlush;
            }
        }
    }

    /// The mechanisms we offer: PLAIN always; ANONYMOUS with
    /// `--anonymous-user`; EXTERNAL on a TLS connection with a client
    /// certificate.
    fn mechanisms(&self, ctx: &ShardCtx) -> Vec<&'static str> {
        let mut m = Vec::with_capacity(3);
        if self.sock.tls().is_some_and(|t| t.peer_cert().is_some()) {
            m.push("EXTERNAL");
        }
        m.push("PLAIN");
        if ctx.config.anonymous_user.is_some() {
            m.push("ANONYMOUS");
        }
        m
    }

    fn user_exists(&self, user: &str, ctx: &ShardCtx) -> bool {
        ctx.defs.lock().tenancy.users.contains_key(user)
    }

    /// `sasl-init`: log in, answer `sasl-outcome`.
    pub(super) fn sasl_frame(&mut self, f: wire::SaslIn, ctx: &mut ShardCtx) {
        let wire::SaslIn::Init(init) = f else {
            let e = Amqp10Error::new(cond::FRAMING_ERROR, "expected sasl-init");
            return self.connection_error(e, ctx);
        };
        let mech = String::from_utf8_lossy(&init.mechanism).into_owned();
        let resp = init.initial_response.unwrap_or_default();
        let creds: Option<(String, &'static str)> = match mech.as_str() {
            "PLAIN" => parse_plain(&resp).and_then(|(u, p)| {
                let here =
                    crate::core::auth::internal::from_this_host(self.info.peer, self.info.local);
                if here && crate::core::auth::internal::is_internal(&u, &p) {
                    self.info.internal = true;
                    return Some((u, "PLAIN"));
                }
                let ok = ctx.defs.lock().authenticate(&u, &p).is_some();
                ok.then_some((u, "PLAIN"))
            }),
            "ANONYMOUS" => ctx
                .config
                .anonymous_user
                .clone()
                .filter(|u| self.user_exists(u, ctx))
                .map(|u| (u, "ANONYMOUS")),
            "EXTERNAL" => self
                .external_user(ctx)
                .filter(|u| self.user_exists(u, ctx))
                .map(|u| (u, "EXTERNAL")),
            _ => None,
        };
        match creds {
            Some((user, m)) => {
                self.info.user = user;
                self.info.auth_mechanism = m;
                wire::write_sasl_outcome(&mut self.sock.wbuf, SaslCode::Ok);
                self.state = State::AmqpHeader;
            }
            None => {
                log::info!("AMQP 1.0 login refused using SASL mechanism {}", mech);
                wire::write_sasl_outcome(&mut self.sock.wbuf, SaslCode::Auth);
                self.state = State::CloseAfterFlush;
            }
        }
        ctx.mark_dirty(self.info.slot as usize);
    }

    /// `open`: the vhost (`hostname` = `vhost:NAME`, else the default vhost),
    /// the user's access to it, the connection limits; then our `open`.
    pub(super) fn open_frame(
        &mut self,
        channel: u16,
        perf: wire::Performative,
        ctx: &mut ShardCtx,
    ) {
        let wire::Performative::Open(open) = perf else {
            let e = Amqp10Error::new(cond::ILLEGAL_STATE, "expected open");
            return self.connection_error(e, ctx);
        };
        if channel != 0 {
            log::debug!("open on channel {}", channel);
        }
        self.info.container_id = open.container_id.as_str().to_string();
        if ctx.config.loopback_users.contains(&self.info.user) && !self.peer_is_loopback() {
            let e = Amqp10Error::new(
                cond::UNAUTHORIZED_ACCESS,
                format!("user '{}' can only connect via localhost", self.info.user),
            );
            return self.connection_error(e, ctx);
        }
        let theirs = open.max_frame_size;
        if theirs < MIN_MAX_FRAME_SIZE {
            let e = Amqp10Error::new(
                cond::FRAME_SIZE_TOO_SMALL,
                format!(
                    "max_frame_size ({}) < minimum maximum frame size ({})",
                    theirs, MIN_MAX_FRAME_SIZE
                ),
            );
            return self.connection_error(e, ctx);
        }
        self.info.max_frame_out = theirs;
        self.info.max_frame_in = ctx.config.frame_max.max(MIN_MAX_FRAME_SIZE);
        self.info.channel_max = open.channel_max.min(ctx.config.channel_max.max(1));
        self.info.peer_idle_timeout = open.idle_time_out.unwrap_or(0);
        if (1..1000).contains(&self.info.peer_idle_timeout) {
            let e = Amqp10Error::new(
                cond::NOT_ALLOWED,
                format!(
                    "idle-time-out ({} ms) < minimum idle-time-out (1000 ms)",
                    self.info.peer_idle_timeout
                ),
            );
            return self.connection_error(e, ctx);
        }
        let vhost = match open.hostname.as_ref().map(|h| h.as_str()) {
            Some(h) if h.starts_with("vhost:") => h["vhost:".len()..].to_string(),
            _ => crate::core::vhost::DEFAULT_VHOST.to_string(),
        };
        let opened = if self.info.internal {
            crate::core::access::connection::open_internal(&ctx.defs, &vhost).map(|a| {
                let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                (a, counter)
            })
        } else {
            crate::core::access::connection::open(
                &ctx.defs,
                &self.info.user,
                &vhost,
                ctx.config.max_connections,
            )
        };
        let access = match opened {
            Ok((a, channels)) => {
                self.info.channel_count = Some(channels);
                a
            }
            Err(OpenError::NotAllowed(text)) => {
                // RabbitMQ 4 refuses a vhost it cannot find or the user may
                // not use with amqp:not-found / amqp:unauthorized-access.
                let (condition, text) = if text.starts_with("vhost ") {
                    (
                        cond::UNAUTHORIZED_ACCESS,
                        format!(
                            "AMQP 1.0 connection failed: virtual host '{}' does not exist",
                            vhost
                        ),
                    )
                } else if text.contains("limit") {
                    (cond::RESOURCE_LIMIT_EXCEEDED, text)
                } else {
                    (cond::UNAUTHORIZED_ACCESS, text)
                };
                return self.connection_error(Amqp10Error::new(condition, text), ctx);
            }
        };
        self.info.access = access;
        self.info.counted = true;
        crate::core::conn_log::opened(
            "AMQP 1.0",
            self.info.peer,
            self.info.local,
            Some(&self.info.container_id),
            &self.info.user,
            &self.info.access.vhost_name,
        );
        let largest = self.info.max_frame_in.max(HANDSHAKE_FRAME_MAX);
        self.sock.set_max_buffered(largest as usize);
        write_server_open(&mut self.sock.wbuf, ctx);
        self.state = State::Running;
        self.deadline = None;
        ctx.mark_dirty(self.info.slot as usize);
    }

    /// EXTERNAL: the login name from the verified client certificate.
    fn external_user(&self, ctx: &ShardCtx) -> Option<String> {
        let cert = self.sock.tls()?.peer_cert()?;
        match ctx.config.tls_cert_login_from {
            CertLoginFrom::DistinguishedName => Some(cert.subject.clone()),
            CertLoginFrom::CommonName => cert.common_name.clone(),
        }
    }

    fn peer_is_loopback(&self) -> bool {
        self.info
            .peer
            .map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => ip.is_loopback(),
                std::net::IpAddr::V6(ip) => {
                    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            })
            .unwrap_or(false)
    }
}

/// Our `open`, as RabbitMQ 4 sends it.
pub(super) fn write_server_open(out: &mut Vec<u8>, ctx: &ShardCtx) {
    wire::write_server_open(
        out,
        ctx.config.frame_max.max(MIN_MAX_FRAME_SIZE),
        ctx.config.channel_max.max(1),
        ctx.config.heartbeat as u32 * 1000 / 2,
    );
}

/// PLAIN: "authzid\0user\0password".
fn parse_plain(resp: &[u8]) -> Option<(String, String)> {
    let mut parts = resp.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(pass.to_vec()).ok()?,
    ))
}
