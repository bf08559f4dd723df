//! RabbitMQ 4's AMQP 1.0 address format v2 (`rabbit_amqp_address`):
//!
//! | address                              | as a target                       | as a source |
//! |--------------------------------------|-----------------------------------|-------------|
//! | `/exchanges/:exchange/:routing-key`  | publish to exchange with that key | —           |
//! | `/exchanges/:exchange`               | publish to exchange with key `""`  | —           |
//! | `/queues/:queue`                     | default exchange, key = queue      | consume     |
//!
//! A null target (anonymous relay) takes one of the target forms from each
//! message's `to` property. Each segment is percent-encoded (RFC 3986):
//! a name holding `/` is written with `%2F`. Nothing here allocates for a
//! name without `%`.

use bytes::Bytes;

/// A parsed target address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetAddr {
    /// `/exchanges/:exchange/:routing-key`.
    ExchangeKey { exchange: Bytes, key: Bytes },
    /// `/exchanges/:exchange`: the routing key is empty (v2 addresses never
    /// use the message's subject).
    Exchange { exchange: Bytes },
    /// `/queues/:queue`: the default exchange, routing key = queue.
    Queue { queue: Bytes },
}

/// Why an address was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAddress;

/// Parses a target address (v2 only, as RabbitMQ 4 with the
/// `rabbitmq_4.0.0` feature flag).
pub fn parse_target(addr: &Bytes) -> Result<TargetAddr, BadAddress> {
    if let Some(rest) = strip(addr, b"/exchanges/") {
        let (x, key) = match memchr::memchr(b'/', &rest) {
            Some(i) => (rest.slice(..i), Some(rest.slice(i + 1..))),
            None => (rest, None),
        };
        let exchange = decode(x)?;
        if exchange.is_empty() || exchange.as_ref() == b"amq.default" {
            // The default exchange is addressed as /queues/:queue.
            return Err(BadAddress);
        }
        return Ok(match key {
            Some(k) => TargetAddr::ExchangeKey {
                exchange,
                key: decode(k)?,
            },
            None => TargetAddr::Exchange { exchange },
        });
    }
    if let Some(rest) = strip(addr, b"/queues/") {
        return Ok(TargetAddr::Queue {
            queue: queue_name(rest)?,
        });
    }
    Err(BadAddress)
}

/// Parses a source address: `/queues/:queue`.
pub fn parse_source(addr: &Bytes) -> Result<Bytes, BadAddress> {
    match strip(addr, b"/queues/") {
        Some(rest) => queue_name(rest),
        None => Err(BadAddress),
    }
}

fn queue_name(rest: Bytes) -> Result<Bytes, BadAddress> {
    if rest.is_empty() || memchr::memchr(b'/', &rest).is_some() {
        return Err(BadAddress);
    }
    decode(rest)
}

fn strip(addr: &Bytes, prefix: &[u8]) -> Option<Bytes> {
    addr.starts_with(prefix).then(|| addr.slice(prefix.len()..))
}

/// The raw bytes a segment may hold (RabbitMQ's `cow_uri:urldecode`):
/// RFC 3986's unreserved characters, its sub-delims, `:` and `@`. Anything
/// else (a space, `/`, `?`, `#`, a non-ASCII byte) must be percent-encoded.
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// Percent-decodes one segment; a segment without `%` is returned as is.
pub fn decode(seg: Bytes) -> Result<Bytes, BadAddress> {
    if memchr::memchr(b'%', &seg).is_none() {
        return if seg.iter().all(|&b| allowed(b)) {
            Ok(seg)
        } else {
            Err(BadAddress)
        };
    }
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'%' {
            let hex = seg.get(i + 1..i + 3).ok_or(BadAddress)?;
            let hi = (hex[0] as char).to_digit(16).ok_or(BadAddress)?;
            let lo = (hex[1] as char).to_digit(16).ok_or(BadAddress)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else if allowed(seg[i]) {
            out.push(seg[i]);
            i += 1;
        } else {
            return Err(BadAddress);
        }
    }
    if std::str::from_utf8(&out).is_err() {
        return Err(BadAddress);
    }
    Ok(Bytes::from(out))
}

/// Percent-encodes a name for an address segment: everything but RFC 3986's
/// unreserved characters (and `sub-delims`, `:` and `@`, as RabbitMQ's
/// `uri_string:quote` keeps them).
pub fn encode(name: &[u8], out: &mut String) {
    for &b in name {
        if allowed(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{:02X}", b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<TargetAddr, BadAddress> {
        parse_target(&Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn target_forms() {
        assert_eq!(
            t("/exchanges/amq.topic/a.b"),
            Ok(TargetAddr::ExchangeKey {
                exchange: Bytes::from_static(b"amq.topic"),
                key: Bytes::from_static(b"a.b")
            })
        );
        assert_eq!(
            t("/exchanges/amq.fanout"),
            Ok(TargetAddr::Exchange {
                exchange: Bytes::from_static(b"amq.fanout")
            })
        );
        assert_eq!(
            t("/exchanges/x/"),
            Ok(TargetAddr::ExchangeKey {
                exchange: Bytes::from_static(b"x"),
                key: Bytes::new()
            })
        );
        assert_eq!(
            t("/queues/q1"),
            Ok(TargetAddr::Queue {
                queue: Bytes::from_static(b"q1")
            })
        );
        assert_eq!(
            t("/queues/a%2Fb%20c"),
            Ok(TargetAddr::Queue {
                queue: Bytes::from_static(b"a/b c")
            })
        );
        assert_eq!(
            t("/exchanges/my%2Fx/k%2F1"),
            Ok(TargetAddr::ExchangeKey {
                exchange: Bytes::from_static(b"my/x"),
                key: Bytes::from_static(b"k/1")
            })
        );
    }

    #[test]
    fn bad_targets() {
        for a in [
            "",
            "/queues/",
            "/queues/a/b",
            "/exchanges/",
            "/exchanges/amq.default/k",
            "/amq/queue/q",
            "/exchange/x/k",
            "/topic/t",
            "q",
            "/queues/%zz",
            "/queues/%2",
            "/queues/%FF",
            "/queues/a b",
            "/queues/ü",
            "/queues/a?b",
        ] {
            assert_eq!(t(a), Err(BadAddress), "{}", a);
        }
    }

    #[test]
    fn encode_round_trips() {
        for name in ["q", "a/b", "with space", "ü%x", "k.#.*"] {
            let mut s = String::from("/queues/");
            encode(name.as_bytes(), &mut s);
            assert_eq!(
                parse_source(&Bytes::from(s.clone())),
                Ok(Bytes::copy_from_slice(name.as_bytes())),
                "{}",
                s
            );
        }
    }
}
