//! The broker's own connections to itself: a shovel whose URI is a direct
//! `amqp://` (no host) connects to this broker's listener as user `none`
//! (RabbitMQ's direct connections show that user) with a password that is a
//! random secret made at start and never leaves the process. Such a
//! connection has full rights in the vhost it opens, as RabbitMQ's direct
//! connections do; who may create the shovel was checked when its
//! definition was set (`rabbit_shovel_parameters:validate_params_user`).
//!
//! A real user named `none` still logs in with their own password: only the
//! secret makes a connection internal, and only from this host
//! ([`from_this_host`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

/// The user name internal connections log in with.
pub const USER: &str = "none";

static SECRET: OnceLock<String> = OnceLock::new();

/// This process's secret (64 hex digits), made on first use.
pub fn secret() -> &'static str {
    SECRET.get_or_init(|| {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random source failed");
        b.iter().map(|x| format!("{x:02x}")).collect()
    })
}

/// `user`/`password` are the internal credentials.
pub fn is_internal(user: &str, password: &str) -> bool {
    user == USER && bool::from(password.as_bytes().ct_eq(secret().as_bytes()))
}

/// The peer is this host: a loopback address (IPv4-mapped too), or the
/// address it connected to (a broker that listens on no loopback address).
pub fn from_this_host(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    let loopback = match peer.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    loopback || local.is_some_and(|l| l.ip() == peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_is_internal() {
        assert_eq!(secret().len(), 64);
        assert!(is_internal(USER, secret()));
        assert!(!is_internal(USER, "guest"));
        assert!(!is_internal("guest", secret()));
        assert!(!is_internal(USER, ""));
    }

    #[test]
    fn this_host() {
        let a = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert!(from_this_host(a("127.0.0.1:5000"), a("127.0.0.1:5672")));
        assert!(from_this_host(
            a("[::ffff:127.0.0.1]:5000"),
            a("[::1]:5672")
        ));
        assert!(from_this_host(a("10.0.0.5:5000"), a("10.0.0.5:5672")));
        assert!(!from_this_host(a("10.0.0.6:5000"), a("10.0.0.5:5672")));
        assert!(!from_this_host(None, a("10.0.0.5:5672")));
    }
}
