//! What one user may do in one vhost, compiled for the checks of every
//! operation: RabbitMQ's `rabbit_access_control:check_resource_access` and
//! `check_topic_access`. A connection gets a [`UserAccess`] at
//! `connection.open` and a fresh one when the definitions' auth version
//! moves (a permission change reaches open channels within a tick), so no
//! check takes a lock. The connections of one user in one vhost share one
//! (`Defs::shared_access`): compiled patterns cost kilobytes.

use super::auth::permissions::{
    resource_name, Access, CompiledPermission, CompiledTopicPermission, Permission,
};
use super::error::{CoreError, CoreResult};
use super::ids::VhostId;
use super::vhost::resource;
use std::sync::Arc;

/// One user's rights in one vhost.
pub struct UserAccess {
    pub user: String,
    pub vhost: VhostId,
    pub vhost_name: Arc<str>,
    pub tags: Vec<String>,
    /// `None`: no permission on the vhost (the user cannot open it).
    perm: Option<CompiledPermission>,
    topic: Vec<CompiledTopicPermission>,
    /// The user's channel limit (across connections).
    pub max_channels: Option<u64>,
    /// The definitions' auth version this was built from.
    pub version: u64,
}

impl UserAccess {
    /// Compiles the rights of `user` in `vhost`. Patterns were checked when
    /// they were set; one that fails now grants nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        user: &str,
        vhost: VhostId,
        vhost_name: Arc<str>,
        tags: Vec<String>,
        perm: Option<&Permission>,
        topic: Vec<CompiledTopicPermission>,
        max_channels: Option<u64>,
        version: u64,
    ) -> UserAccess {
        UserAccess {
            user: user.to_string(),
            vhost,
            vhost_name,
            tags,
            perm: perm.and_then(|p| CompiledPermission::compile(p).ok()),
            topic,
            max_channels,
            version,
        }
    }

    /// No rights and no vhost: a connection before connection.open.
    pub fn nobody() -> UserAccess {
        UserAccess::build(
            "",
            VhostId(0),
            Arc::from(""),
            Vec::new(),
            None,
            Vec::new(),
            None,
            0,
        )
    }

    /// Full rights (unit tests, benches).
    pub fn full(user: &str, vhost: VhostId, vhost_name: Arc<str>) -> UserAccess {
        UserAccess::build(
            user,
            vhost,
            vhost_name,
            vec!["administrator".into()],
            Some(&Permission::full()),
            Vec::new(),
            None,
            0,
        )
    }

    /// The user has some permission on the vhost (may open it).
    pub fn may_open(&self) -> bool {
        self.perm.is_some()
    }

    pub fn allows(&self, access: Access, name: &str) -> bool {
        self.perm.as_ref().is_some_and(|p| p.allows(access, name))
    }

    /// `access` to the queue `name`, or RabbitMQ's 403.
    pub fn check_queue(&self, access: Access, name: &str) -> CoreResult<()> {
        self.check(access, "queue", name)
    }

    /// `access` to the exchange `name` (the default exchange as `amq.default`).
    pub fn check_exchange(&self, access: Access, name: &str) -> CoreResult<()> {
        self.check(access, "exchange", resource_name(name))
    }

    fn check(&self, access: Access, kind: &str, name: &str) -> CoreResult<()> {
        if self.allows(access, name) {
            return Ok(());
        }
        Err(self.refusal(access, kind, name))
    }

    /// `ACCESS_REFUSED - configure access to queue 'q' in vhost 'v' refused
    /// for user 'u'` (RabbitMQ 3.12+ names the permission).
    pub fn refusal(&self, access: Access, kind: &str, name: &str) -> CoreError {
        CoreError::AccessRefused(format!(
            "{} access to {} refused for user '{}'",
            access.as_str(),
            resource(&self.vhost_name, kind, name),
            self.user
        ))
    }

    /// Whether this user has topic permissions at all (most have none: then
    /// publishing skips the topic check without looking at the exchange).
    pub fn has_topic_permissions(&self) -> bool {
        !self.topic.is_empty()
    }

    /// The topic check for a routing key on a topic exchange: allowed when
    /// the user has no topic permission on that exchange.
    pub fn check_topic(&self, access: Access, exchange: &str, key: &str) -> CoreResult<()> {
        let x = resource_name(exchange);
        match self.topic.iter().find(|t| t.exchange == x) {
            Some(t) if !t.allows(access, key) => Err(CoreError::AccessRefused(format!(
                "{} access to topic '{}' in exchange '{}' in vhost '{}' refused for user '{}'",
                access.as_str(),
                key,
                x,
                self.vhost_name,
                self.user
            ))),
            _ => Ok(()),
        }
    }
}

/// A connection's place in the definitions, the same for every protocol:
/// opened against a vhost (permissions and connection limits checked and
/// counted under one lock), its channels (0-9-1) or sessions (AMQP 1.0)
/// counted against the user's `max-channels`, its rights rebuilt when they
/// change.
pub mod connection {
    use super::UserAccess;
    use crate::core::definitions::{Definitions, OpenError};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Opens `vhost` for `user` and counts the connection (the caller
    /// releases it with `Defs::connection_closed`); returns the user's
    /// rights there and their channel counter.
    pub fn open(
        defs: &Definitions,
        user: &str,
        vhost: &str,
        max_connections: Option<u64>,
    ) -> Result<(Arc<UserAccess>, Arc<AtomicU64>), OpenError> {
        let mut g = defs.lock();
        let version = g.auth_version();
        let access = g.open_connection(user, vhost, max_connections, version)?;
        Ok((access, g.channel_counter(user)))
    }

    /// Opens `vhost` for the broker's own connection
    /// (`core::auth::internal`): full rights, counted as user `none`.
    pub fn open_internal(defs: &Definitions, vhost: &str) -> Result<Arc<UserAccess>, OpenError> {
        let mut g = defs.lock();
        let version = g.auth_version();
        g.open_internal_connection(vhost, version)
    }

    /// Counts one more channel (or session) of the user against their
    /// `max-channels`; the refusal is RabbitMQ's text.
    pub fn take_channel(count: Option<&AtomicU64>, access: &UserAccess) -> Result<(), String> {
        let Some(count) = count else {
            return Ok(());
        };
        let now = count.fetch_add(1, Ordering::AcqRel) + 1;
        match access.max_channels {
            Some(max) if now > max => {
                count.fetch_sub(1, Ordering::AcqRel);
                Err(format!(
                    "number of channels opened for user '{}' has reached the maximum allowed user limit of ({})",
                    access.user, max
                ))
            }
            _ => Ok(()),
        }
    }

    /// `n` channels (or sessions) closed.
    pub fn release_channels(count: Option<&AtomicU64>, n: u64) {
        if let (Some(count), true) = (count, n > 0) {
            count.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Users or permissions changed: the connection's rights now. A user
    /// deleted or without permission on the vhost keeps the connection (as
    /// RabbitMQ does) but is refused every operation.
    pub fn refreshed(defs: &Definitions, current: &UserAccess) -> Arc<UserAccess> {
        let mut g = defs.lock();
        let version = g.auth_version();
        g.shared_access(&current.user, &current.vhost_name, version)
            .unwrap_or_else(|| {
                Arc::new(UserAccess::build(
                    &current.user,
                    current.vhost,
                    current.vhost_name.clone(),
                    Vec::new(),
                    None,
                    Vec::new(),
                    current.max_channels,
                    version,
                ))
            })
    }
}
