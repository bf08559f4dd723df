//! Virtual hosts. warren serves one, `/`, today; every resource name the core
//! reports goes through [`resource`], so the texts already name the vhost the
//! way RabbitMQ's `rabbit_misc:rs/1` does (`queue 'q' in vhost '/'`) and the
//! tenancy work only has to pass the real one.

/// The vhost every connection uses until vhosts exist.
pub const DEFAULT_VHOST: &str = "/";

/// `kind 'name' in vhost '/'`: how RabbitMQ names a resource in its texts.
pub fn resource(kind: &str, name: &str) -> String {
    format!("{} '{}' in vhost '{}'", kind, name, DEFAULT_VHOST)
}
