//! `amqp://user:password@host:port/vhost` parsing (`amqps://`: TLS, port 5671).
//!
//! Follows the RabbitMQ URI spec where it matters for a load generator:
//! user, password and vhost are percent-decoded (`%2f` is the default vhost
//! `/`), a missing port is 5672, missing credentials are guest/guest, a
//! missing path is vhost `/` and an empty path (`amqp://h/`) is vhost `""`.
//! IPv6 hosts are written in brackets (`amqp://[::1]:5672`). Query
//! parameters (`?heartbeat=5&cacertfile=/etc/ca.pem`) are kept, decoded, in
//! [`AmqpUri::query`]. A URI with no host (`amqp://`, `amqp:///vhost`) is
//! what RabbitMQ calls a direct connection: [`AmqpUri::direct`] (the broker
//! itself; its `host` reads `localhost`).

use std::fmt;

/// A parsed AMQP URI.
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpUri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
    /// `amqps://`: TLS (see `client::stream`).
    pub tls: bool,
    /// No host was given: a connection to this broker (shovels).
    pub direct: bool,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
}

impl AmqpUri {
    /// Parses `amqp://[user[:password]@]host[:port][/vhost][?query]`.
    pub fn parse(s: &str) -> Result<AmqpUri, String> {
        let (rest, tls) = match s.split_once("://") {
            Some(("amqp", rest)) => (rest, false),
            Some(("amqps", rest)) => (rest, true),
            Some((scheme, _)) => return Err(format!("unsupported scheme {scheme:?}")),
            None => return Err(format!("not an amqp:// URI: {s:?}")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, parse_query(q)?),
            None => (rest, Vec::new()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => ("guest".to_string(), "guest".to_string()),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (decode(u)?, decode(p)?),
                None => (decode(u)?, String::new()),
            },
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| format!("unterminated [ in host {hostport:?}"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("bad host {hostport:?}"))?,
                ),
            };
            (h.to_string(), port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            None | Some("") if tls => 5671,
            None | Some("") => 5672,
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
        };
        let direct = host.is_empty();
        let host = if host.is_empty() {
            "localhost".to_string()
        } else {
            host
        };
        let vhost = match path {
            None => "/".to_string(),
            Some(p) => decode(p)?,
        };
        Ok(AmqpUri {
            host,
            port,
            user,
            password,
            vhost,
            tls,
            direct,
            query,
        })
    }

    /// The value of query parameter `key`, if given.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `host:port` for `TcpStream::connect` (brackets around IPv6 literals).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for AmqpUri {
    /// The URI without the password, for reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vhost = self.vhost.replace('%', "%25").replace('/', "%2f");
        let scheme = if self.tls { "amqps" } else { "amqp" };
        write!(f, "{}://{}@{}/{}", scheme, self.user, self.addr(), vhost)
    }
}

/// `a=1&b=2` → pairs, percent-decoded (`+` stays `+`).
fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Percent-decoding (`%2f` -> `/`); `+` is left alone, as in a URI path.
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> AmqpUri {
        AmqpUri::parse(s).unwrap()
    }

    #[test]
    fn default_uri() {
        let u = p("amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(
            u,
            AmqpUri {
                host: "127.0.0.1".into(),
                port: 5672,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into(),
                tls: false,
                direct: false,
                query: vec![],
            }
        );
        assert_eq!(u.addr(), "127.0.0.1:5672");
        assert_eq!(u.to_string(), "amqp://guest@127.0.0.1:5672/%2f");
    }

    #[test]
    fn defaults_and_escapes() {
        let u = p("amqp://localhost");
        assert_eq!(
            (u.port, u.vhost.as_str(), u.user.as_str()),
            (5672, "/", "guest")
        );
        assert_eq!(p("amqp://h/").vhost, "");
        let u = p("amqp://h:5680/%2Fprod?heartbeat=5&cacertfile=%2Fca.pem");
        assert_eq!(u.vhost, "/prod");
        assert_eq!(u.query_param("heartbeat"), Some("5"));
        assert_eq!(u.query_param("cacertfile"), Some("/ca.pem"));
        assert!(!u.direct);
        let u = p("amqp://");
        assert!(u.direct);
        assert_eq!((u.host.as_str(), u.vhost.as_str()), ("localhost", "/"));
        let u = p("amqp:///other");
        assert!(u.direct);
        assert_eq!(u.vhost, "other");
        let u = p("amqp://us%40er:p%3Ass@h:1/v");
        assert_eq!((u.user.as_str(), u.password.as_str()), ("us@er", "p:ss"));
        let u = p("amqp://[::1]:5680/%2f");
        assert_eq!((u.host.as_str(), u.port), ("::1", 5680));
        assert_eq!(u.addr(), "[::1]:5680");
        assert_eq!(p("amqp://[::1]").port, 5672);
        let u = p("amqps://h");
        assert_eq!((u.port, u.tls), (5671, true));
        assert_eq!(u.to_string(), "amqps://guest@h:5671/%2f");
    }

    #[test]
    fn errors() {
        assert!(AmqpUri::parse("http://h").is_err());
        assert!(AmqpUri::parse("h:5672").is_err());
        assert!(AmqpUri::parse("amqp://h:port").is_err());
        assert!(AmqpUri::parse("amqp://h/%zz").is_err());
        assert!(AmqpUri::parse("amqp://[::1/").is_err());
    }
}
