//! Authentication and authorisation primitives, protocol-neutral: RabbitMQ's
//! password hashes ([`password`]) and its permission patterns
//! ([`permissions`]). Pure data and functions; the front ends and the
//! definitions decide where users and permissions live.

pub mod internal;
pub mod password;
pub mod permissions;
