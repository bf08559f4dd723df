//! The connection events both front ends log at info, as RabbitMQ logs
//! them: a client authenticated and let into its vhost, and a connection
//! closed (with why). One line each; nothing per message.

use std::net::SocketAddr;

/// `127.0.0.1:5555 -> 127.0.0.1:5672`, RabbitMQ's connection name, and the
/// client's own name for it, if it gave one.
fn name(peer: Option<SocketAddr>, local: Option<SocketAddr>, client: Option<&str>) -> String {
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "?".to_string(), |a| a.to_string());
    match client.filter(|c| !c.is_empty()) {
        Some(c) => format!("{} -> {} ({c})", show(peer), show(local)),
        None => format!("{} -> {}", show(peer), show(local)),
    }
}

/// A client logged in and opened its vhost.
pub fn opened(
    protocol: &str,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    client: Option<&str>,
    user: &str,
    vhost: &str,
) {
    log::info!(
        "{protocol} connection {}: user '{user}' authenticated and granted access to vhost '{vhost}'",
        name(peer, local, client)
    );
}

/// An opened connection is gone; `reason`: the error it was closed with,
/// the client's close, or None when the socket went away.
pub fn closed(
    protocol: &str,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    user: &str,
    vhost: &str,
    reason: Option<&str>,
) {
    log::info!(
        "closing {protocol} connection {} (vhost '{vhost}', user '{user}'): {}",
        name(peer, local, None),
        reason.unwrap_or("connection lost")
    );
}
