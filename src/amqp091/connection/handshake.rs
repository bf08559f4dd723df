//! Channel 0 of a 0-9-1 connection: the protocol header, connection.start /
//! tune / open with authentication (PLAIN, AMQPLAIN), connection.close in
//! both directions, and connection.blocked / unblocked.

use super::{Connection, State, CLOSE_TIMEOUT};
use crate::amqp091::error::AmqpError;
use crate::config::CertLoginFrom;
use crate::core::definitions::OpenError;
use crate::core::ShardCtx;
use crate::protocol::constants as c;
use crate::protocol::methods::*;
use crate::protocol::{FieldTable, FieldValue, Method, FRAME_SIZE_FUDGE, PROTOCOL_HEADER};
use bytes::Bytes;
use std::time::Instant;

impl Connection {
    pub(super) fn protocol_header(&mut self, header: &[u8], ctx: &mut ShardCtx) {
        if header != PROTOCOL_HEADER {
            // AMQP: answer with the version we speak, then close.
            self.sock.wbuf.extend_from_slice(PROTOCOL_HEADER);
            self.state = State::CloseAfterFlush;
            ctx.mark_dirty(self.info.slot as usize);
            return;
        }
        let start = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: if self.sock.tls().is_some_and(|t| t.peer_cert().is_some()) {
                Bytes::from_static(b"AMQPLAIN PLAIN EXTERNAL")
            } else {
                Bytes::from_static(b"AMQPLAIN PLAIN")
            },
            locales: Bytes::from_static(b"en_US"),
        };
        self.send(0, &start.into());
        self.state = State::StartOk;
    }

    /// A resource alarm stops reading this publisher: tell the client, once,
    /// if it advertised the connection.blocked capability.
    pub fn notify_blocked(&mut self, reason: &str, ctx: &mut ShardCtx) {
        if self.info.blocked_notify && !self.info.sent_blocked && self.state == State::Running {
            self.info.sent_blocked = true;
            let m = ConnectionBlocked {
                reason: Bytes::copy_from_slice(reason.as_bytes()),
            };
            self.send(0, &m.into());
            ctx.mark_dirty(self.info.slot as usize);
        }
    }

    /// Reading resumes: connection.unblocked if connection.blocked was sent.
    pub fn notify_unblocked(&mut self, ctx: &mut ShardCtx) {
        if self.info.sent_blocked {
            self.info.sent_blocked = false;
            if self.state == State::Running {
                self.send(0, &ConnectionUnblocked {}.into());
                ctx.mark_dirty(self.info.slot as usize);
            }
        }
    }

    /// Answers the client's connection.close: channels go, close-ok is sent.
    pub(super) fn finish_client_close(&mut self, ctx: &mut ShardCtx) {
        self.flush_confirms(ctx);
        self.teardown(ctx);
        self.send(0, &ConnectionCloseOk {}.into());
        self.state = State::CloseAfterFlush;
        self.deadline = None;
        ctx.mark_dirty(self.info.slot as usize);
    }

    pub(super) fn while_closing(&mut self, channel: u16, method: Method, ctx: &mut ShardCtx) {
        match method {
            // The client acknowledged our close: nothing more to say or wait
            // for, the socket goes now (rabbit_reader's terminate_connection).
            Method::ConnectionCloseOk(_) if channel == 0 => {
                self.state = State::CloseAfterFlush;
                self.sock.dead = true;
                ctx.mark_dirty(self.info.slot as usize);
            }
            Method::ConnectionClose(_) if channel == 0 => {
                self.send(0, &ConnectionCloseOk {}.into());
                self.state = State::CloseAfterFlush;
            }
            _ => {}
        }
    }

    // ---- channel 0: the connection class ----

    pub(super) fn connection_method(&mut self, m: Method, ctx: &mut ShardCtx) {
        let (class, method) = (m.class_id(), m.method_id());
        let r = match (self.state, m) {
            (State::StartOk, Method::ConnectionStartOk(m)) => self.connection_start_ok(m, ctx),
            (State::TuneOk, Method::ConnectionTuneOk(m)) => self.connection_tune_ok(m, ctx),
            (State::Open, Method::ConnectionOpen(m)) => self.connection_open(m, ctx),
            (_, Method::ConnectionClose(m)) => {
                self.info.close_reason = Some(
                    format!(
                        "client closed it ({} {})",
                        m.reply_code,
                        String::from_utf8_lossy(&m.reply_text)
                    )
                    .into(),
                );
                if self.channels.iter().flatten().any(|c| c.awaits_confirms()) {
                    self.state = State::CloseAwaitingConfirms;
                    self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                } else {
                    self.finish_client_close(ctx);
                }
                Ok(())
            }
            (State::Running, Method::ConnectionUpdateSecret(_)) => {
                self.send(0, &ConnectionUpdateSecretOk {}.into());
                Ok(())
            }
            // Clients may tell us they are blocked; nothing to do.
            (State::Running, Method::ConnectionBlocked(_))
            | (State::Running, Method::ConnectionUnblocked(_)) => Ok(()),
            (_, other) => Err(AmqpError::command_invalid(format!(
                "unexpected method {} on channel 0 in state {:?}",
                other.name(),
                self.state
            ))),
        };
        if let Err(e) = r {
            self.connection_error(e, class, method, ctx);
        }
    }

    fn connection_start_ok(
        &mut self,
        m: ConnectionStartOk,
        ctx: &mut ShardCtx,
    ) -> Result<(), AmqpError> {
        let mechanism = String::from_utf8_lossy(&m.mechanism).into_owned();
        let creds = match mechanism.as_str() {
            "PLAIN" => parse_plain(&m.response),
            "AMQPLAIN" => parse_amqplain(&m.response),
            "EXTERNAL" => external_user(&self.sock, ctx).map(|u| (u, String::new())),
            _ => {
                return Err(AmqpError::command_invalid(format!(
                    "unknown authentication mechanism '{}'",
                    mechanism
                )))
            }
        };
        let internal = mechanism == "PLAIN"
            && creds
                .as_ref()
                .is_some_and(|(u, p)| crate::core::auth::internal::is_internal(u, p))
            && crate::core::auth::internal::from_this_host(self.info.peer, self.info.local);
        let ok = internal
            || creds.as_ref().is_some_and(|(u, p)| {
                let g = ctx.defs.lock();
                if mechanism == "EXTERNAL" {
                    // The certificate is the credential: the user must exist.
                    g.tenancy.users.contains_key(u)
                } else {
                    g.authenticate(u, p).is_some()
                }
            });
        if !ok {
            log::info!(
                "login refused for user '{}' using {}",
                creds.as_ref().map_or("", |c| c.0.as_str()),
                mechanism
            );
            return Err(AmqpError::access_refused(format!(
                "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                mechanism
            )));
        }
        let user = creds.map(|c| c.0).unwrap_or_default();
        if ctx.config.loopback_users.contains(&user) && !self.peer_is_loopback() {
            // RabbitMQ refuses with the same text as a wrong password and
            // says why only in its log.
            log::info!("user '{}' can only connect via localhost", user);
            return Err(AmqpError::access_refused(format!(
                "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                mechanism
            )));
        }
        self.info.user = user;
        self.info.internal = internal;
        self.info.auth_mechanism = match mechanism.as_str() {
            "PLAIN" => "PLAIN",
            "AMQPLAIN" => "AMQPLAIN",
            _ => "EXTERNAL",
        };
        if let Some(FieldValue::Table(caps)) = m.client_properties.get("capabilities") {
            self.info.cancel_notify = caps
                .get("consumer_cancel_notify")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            self.info.blocked_notify = caps
                .get("connection.blocked")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
        }
        self.info.client_properties = m.client_properties;
        let tune = ConnectionTune {
            channel_max: ctx.config.channel_max,
            frame_max: ctx.config.frame_max,
            heartbeat: ctx.config.heartbeat,
        };
        self.send(0, &tune.into());
        self.state = State::TuneOk;
        Ok(())
    }

    fn connection_tune_ok(
        &mut self,
        m: ConnectionTuneOk,
        ctx: &mut ShardCtx,
    ) -> Result<(), AmqpError> {
        let server_frame_max = ctx.config.frame_max;
        if m.frame_max != 0 && m.frame_max < c::FRAME_MIN_SIZE {
            return Err(AmqpError::not_allowed(format!(
                "frame_max={} < {} min size",
                m.frame_max,
                c::FRAME_MIN_SIZE
            )));
        }
        self.info.frame_max = if m.frame_max == 0 {
            server_frame_max
        } else {
            m.frame_max.min(server_frame_max)
        };
        let server_channel_max = ctx.config.channel_max;
        self.info.channel_max = if m.channel_max == 0 {
            server_channel_max
        } else {
            m.channel_max.min(server_channel_max)
        };
        self.info.heartbeat = m.heartbeat;
        let largest_frame = self.info.frame_max + FRAME_SIZE_FUDGE;
        // Room for a whole publish besides its largest frame (`publish_span`).
        self.sock
            .set_max_buffered(largest_frame as usize + 64 * 1024);
        self.state = State::Open;
        Ok(())
    }

    /// The vhost must exist and the user have a permission on it; the
    /// connection limits (broker, vhost, user) are checked and the connection
    /// counted under one lock.
    fn connection_open(&mut self, m: ConnectionOpen, ctx: &mut ShardCtx) -> Result<(), AmqpError> {
        let vhost = String::from_utf8_lossy(&m.virtual_host);
        let (access, channels) = if self.info.internal {
            let access = crate::core::access::connection::open_internal(&ctx.defs, &vhost);
            (access, None)
        } else {
            let (a, c) = crate::core::access::connection::open(
                &ctx.defs,
                &self.info.user,
                &vhost,
                ctx.config.max_connections,
            )
            .map_err(|OpenError::NotAllowed(text)| AmqpError::not_allowed(text))?;
            (Ok(a), Some(c))
        };
        let access = access.map_err(|OpenError::NotAllowed(text)| AmqpError::not_allowed(text))?;
        self.info.channel_count = channels;
        self.info.access = access;
        self.info.counted = true;
        let client = self
            .info
            .client_properties
            .get("connection_name")
            .and_then(|v| v.as_str());
        crate::core::conn_log::opened(
            "AMQP 0-9-1",
            self.info.peer,
            self.info.local,
            client,
            &self.info.user,
            &self.info.access.vhost_name,
        );
        self.send(0, &ConnectionOpenOk::default().into());
        self.state = State::Running;
        self.deadline = None;
        Ok(())
    }
}

/// EXTERNAL (SASL, RabbitMQ's rabbit_auth_mechanism_ssl): the login name
/// is taken from the verified client certificate, per
/// `--tls-cert-login-from`; there is no password. `None` (refused, with the
/// reason logged as RabbitMQ words it) without a certificate or a name.
fn external_user(sock: &crate::net::Socket, ctx: &ShardCtx) -> Option<String> {
    let Some(tls) = sock.tls() else {
        log::warn!("EXTERNAL login refused: not a TLS-enabled connection");
        return None;
    };
    let Some(cert) = tls.peer_cert() else {
        log::warn!("EXTERNAL login refused: connection peer presented no TLS (x.509) certificate");
        return None;
    };
    let name = match ctx.config.tls_cert_login_from {
        CertLoginFrom::DistinguishedName => Some(cert.subject.clone()),
        CertLoginFrom::CommonName => cert.common_name.clone(),
    };
    if name.is_none() {
        log::warn!("EXTERNAL login refused: no name found");
    }
    name
}

impl Connection {
    /// The client connects from a loopback address (`--loopback-users`).
    fn peer_is_loopback(&self) -> bool {
        self.sock
            .stream
            .peer_addr()
            .map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => ip.is_loopback(),
                std::net::IpAddr::V6(ip) => {
                    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            })
            .unwrap_or(false)
    }
}

/// PLAIN: "\0user\0password" (an authorisation identity before the first NUL is allowed).
fn parse_plain(resp: &[u8]) -> Option<(String, String)> {
    let mut parts = resp.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    Some((
        String::from_utf8_lossy(user).into_owned(),
        String::from_utf8_lossy(pass).into_owned(),
    ))
}

/// AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
fn parse_amqplain(resp: &Bytes) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(resp.len() + 4);
    buf.extend_from_slice(&(resp.len() as u32).to_be_bytes());
    buf.extend_from_slice(resp);
    let mut r = crate::protocol::reader::Reader::new(Bytes::from(buf));
    let t = r.table().ok()?;
    let user = t.get("LOGIN")?.as_str()?.to_string();
    let pass = t.get("PASSWORD")?.as_str()?.to_string();
    Some((user, pass))
}

/// connection.start server-properties, as RabbitMQ sends them (clients check
/// `product` and the capabilities table). Only capabilities that work are
/// advertised.
fn server_properties() -> FieldTable {
    let mut caps = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
        "consumer_priorities",
    ] {
        caps.insert(cap, FieldValue::Bool(true));
    }
    let s = |v: &str| FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()));
    let mut t = FieldTable::new();
    t.insert("capabilities", FieldValue::Table(caps));
    t.insert("cluster_name", s("warren"));
    t.insert("copyright", s("Copyright (c) the warren authors"));
    t.insert(
        "information",
        s("warren: an AMQP 0-9-1 broker compatible with RabbitMQ clients"),
    );
    t.insert("platform", s("Rust"));
    t.insert("product", s("RabbitMQ"));
    t.insert("version", s("3.13.7"));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_response() {
        assert_eq!(
            parse_plain(b"\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(parse_plain(b"authz\0u\0p"), Some(("u".into(), "p".into())));
        assert_eq!(parse_plain(b"guest"), None);
    }

    #[test]
    fn amqplain_response_is_a_table_without_length_prefix() {
        let mut t = FieldTable::new();
        t.insert("LOGIN", FieldValue::LongStr(Bytes::from_static(b"guest")));
        t.insert("PASSWORD", FieldValue::LongStr(Bytes::from_static(b"pw")));
        let mut enc = Vec::new();
        t.encode(&mut enc);
        let resp = Bytes::from(enc[4..].to_vec());
        assert_eq!(parse_amqplain(&resp), Some(("guest".into(), "pw".into())));
        assert_eq!(parse_amqplain(&Bytes::from_static(b"\x05LOGIN")), None);
    }

    #[test]
    fn server_properties_carry_what_clients_check() {
        let p = server_properties();
        assert_eq!(p.get("product").and_then(|v| v.as_str()), Some("RabbitMQ"));
        let Some(FieldValue::Table(caps)) = p.get("capabilities") else {
            panic!("no capabilities")
        };
        for cap in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "per_consumer_qos",
            "direct_reply_to",
        ] {
            assert_eq!(
                caps.get(cap).and_then(|v| v.as_bool()),
                Some(true),
                "{}",
                cap
            );
        }
        assert!(caps.get("accept_consumer_cancel_ok").is_none());
    }
}
