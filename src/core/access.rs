//! What one user may do in one vhost, compiled for the checks of every
//! operation: RabbitMQ's `rabbit_access_control:check_resource_access` and
//! `check_topic_access`. A connection gets a [`UserAccess`] at
//! `connection.open` and a fresh one when the definitions' auth version
//! moves (a permission change reaches open channels within a tick), so no
//! check takes a lock.

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
