//! Virtual hosts: how the core names a resource in its texts, the way
//! RabbitMQ's `rabbit_misc:rs/1` does (`queue 'q' in vhost '/'`). The vhosts
//! themselves are in the definitions (`definitions/vhosts.rs`).

/// The vhost a fresh data directory starts with.
pub const DEFAULT_VHOST: &str = "/";

/// `kind 'name' in vhost 'v'`: how RabbitMQ names a resource in its texts.
pub fn resource(vhost: &str, kind: &str, name: &str) -> String {
    format!("{} '{}' in vhost '{}'", kind, name, vhost)
}
