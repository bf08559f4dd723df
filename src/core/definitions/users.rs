//! Users, permissions and limits in the definitions: the checked, logged
//! changes (`rabbitmqctl add_user`, `set_permissions`, …, and the HTTP API's
//! PUT/DELETE), login, and what a connection may do once open. The state
//! itself is `core::tenancy::Tenancy`.

use super::vhosts::VhostMeta;
use super::Defs;
use crate::core::access::UserAccess;
use crate::core::auth::password::PasswordHash;
use crate::core::auth::permissions::{
    validate, CompiledTopicPermission, Permission, TopicPermission,
};
use crate::core::error::{CoreError, CoreResult};
use crate::core::ids::VhostId;
use crate::core::tenancy::{User, UserLimits};
use crate::core::vhost::DEFAULT_VHOST;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Connections open now, for the limits.
#[derive(Default)]
pub struct LiveCounts {
    pub total: u64,
    pub by_user: std::collections::HashMap<String, u64>,
    pub by_vhost: std::collections::HashMap<VhostId, u64>,
    /// Channels open now per user, counted by the connections without the
    /// lock.
    pub channels: std::collections::HashMap<String, Arc<AtomicU64>>,
}

/// Why a login or a connection.open failed.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// 530 NOT_ALLOWED with this text.
    NotAllowed(String),
}

impl Defs {
    /// The first boot of an empty data directory: vhost `/`, the default
    /// user (tag administrator) with full permissions on it. Never again
    /// once done, even if the operator deletes them. A data directory from
    /// before users existed gets them at its first boot with this version.
    pub fn bootstrap(&mut self, user: &str, password: &str) -> CoreResult<()> {
        if self.initialized {
            return Ok(());
        }
        if self.vhost_id(DEFAULT_VHOST).is_none() {
            self.put_vhost(
                DEFAULT_VHOST,
                VhostMeta {
                    description: "Default virtual host".into(),
                    ..VhostMeta::default()
                },
            )?;
        }
        if !self.tenancy.users.contains_key(user) {
            self.put_user(User {
                name: user.to_string(),
                hash: PasswordHash::new(password),
                tags: vec!["administrator".into()],
                limits: UserLimits::default(),
            });
        }
        self.set_permissions(user, DEFAULT_VHOST, Permission::full())?;
        self.mark_initialized();
        log::info!("created the default user '{}' and vhost '/'", user);
        Ok(())
    }

    fn log_records(&mut self, records: Vec<crate::store::defs_log::Record>) {
        for r in records {
            self.record(|| r);
        }
        self.rights_changed();
    }

    /// Users, permissions or vhosts changed: connections rebuild their
    /// rights (`auth_version` moves when the lock is released), from
    /// scratch.
    pub(super) fn rights_changed(&mut self) {
        self.auth_changed = true;
        self.access_cache.clear();
    }

    /// `user_access`, built once per (user, vhost) and auth version and
    /// shared by the connections that ask for it.
    pub fn shared_access(
        &mut self,
        user: &str,
        vhost: &str,
        version: u64,
    ) -> Option<Arc<UserAccess>> {
        if let Some(a) = self
            .access_cache
            .get(&(user.to_string(), vhost.to_string()))
        {
            if a.version == version {
                return Some(a.clone());
            }
        }
        let a = Arc::new(self.user_access(user, vhost, version)?);
        self.access_cache.retain(|_, old| old.version == version);
        self.access_cache
            .insert((user.to_string(), vhost.to_string()), a.clone());
        Some(a)
    }

    /// Creates or replaces a user.
    pub fn put_user(&mut self, user: User) {
        let mut out = Vec::new();
        self.tenancy.put_user(user, &mut out);
        self.log_records(out);
    }

    pub fn delete_user(&mut self, name: &str) -> CoreResult<()> {
        let mut out = Vec::new();
        self.tenancy.delete_user(name, &mut out)?;
        self.log_records(out);
        Ok(())
    }

    fn vhost_must_exist(&self, vhost: &str) -> CoreResult<()> {
        match self.vhost_id(vhost) {
            Some(_) => Ok(()),
            None => Err(CoreError::NotFound(format!("no vhost '{}'", vhost))),
        }
    }

    /// `set_permissions`: the user and the vhost must exist and the patterns
    /// compile.
    pub fn set_permissions(&mut self, user: &str, vhost: &str, p: Permission) -> CoreResult<()> {
        self.tenancy.user(user)?;
        self.vhost_must_exist(vhost)?;
        for pat in [&p.configure, &p.write, &p.read] {
            validate(pat).map_err(CoreError::PreconditionFailed)?;
        }
        let mut out = Vec::new();
        self.tenancy.set_permission(user, vhost, p, &mut out);
        self.log_records(out);
        Ok(())
    }

    pub fn clear_permissions(&mut self, user: &str, vhost: &str) -> CoreResult<()> {
        self.tenancy.user(user)?;
        self.vhost_must_exist(vhost)?;
        let mut out = Vec::new();
        if !self.tenancy.clear_permission(user, vhost, &mut out) {
            return Err(CoreError::NotFound(format!(
                "no permissions for user '{}' in vhost '{}'",
                user, vhost
            )));
        }
        self.log_records(out);
        Ok(())
    }

    pub fn set_topic_permissions(
        &mut self,
        user: &str,
        vhost: &str,
        tp: TopicPermission,
    ) -> CoreResult<()> {
        self.tenancy.user(user)?;
        self.vhost_must_exist(vhost)?;
        for pat in [&tp.write, &tp.read] {
            validate(pat).map_err(CoreError::PreconditionFailed)?;
        }
        let mut out = Vec::new();
        self.tenancy.set_topic_permission(user, vhost, tp, &mut out);
        self.log_records(out);
        Ok(())
    }

    /// Clears one exchange's topic permission, or all in the vhost (`exchange` "").
    pub fn clear_topic_permissions(
        &mut self,
        user: &str,
        vhost: &str,
        exchange: &str,
    ) -> CoreResult<()> {
        self.tenancy.user(user)?;
        self.vhost_must_exist(vhost)?;
        let mut out = Vec::new();
        self.tenancy
            .clear_topic_permission(user, vhost, exchange, &mut out);
        self.log_records(out);
        Ok(())
    }

    /// Changes one limit of a user (`value` < 0: no limit).
    pub fn set_user_limit(&mut self, user: &str, limit: &str, value: i64) -> CoreResult<()> {
        let mut u = self.tenancy.user(user)?.clone();
        u.limits
            .set(limit, value)
            .map_err(CoreError::PreconditionFailed)?;
        self.put_user(u);
        Ok(())
    }

    /// The user `name` if `password` is theirs.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<&User> {
        self.tenancy
            .users
            .get(name)
            .filter(|u| u.hash.verify(password))
    }

    /// What `user` may do in `vhost`, built for a connection (or refreshed).
    pub fn user_access(&self, user: &str, vhost: &str, version: u64) -> Option<UserAccess> {
        let id = self.vhost_id(vhost)?;
        let u = self.tenancy.users.get(user)?;
        let topic = self
            .tenancy
            .topic_permissions_of(user, vhost)
            .filter_map(|tp| CompiledTopicPermission::compile(tp, user, vhost).ok())
            .collect();
        Some(UserAccess::build(
            user,
            id,
            self.vhosts[&id].name.clone(),
            u.tags.clone(),
            self.tenancy.permission(user, vhost),
            topic,
            u.limits.max_channels,
            version,
        ))
    }

    /// Full rights in `vhost` for the broker's own work (the control path:
    /// HTTP API, definitions import), as RabbitMQ's internal user has.
    pub fn admin_access(&self, vhost: &str) -> Option<UserAccess> {
        let id = self.vhost_id(vhost)?;
        Some(UserAccess::full(
            "rmq-internal",
            id,
            self.vhosts[&id].name.clone(),
        ))
    }

    /// `connection.open`: checks the vhost, the user's permission on it and
    /// the connection limits (RabbitMQ's order: vhost exists, access,
    /// vhost limit, user limit), and counts the connection. The caller
    /// releases it with `connection_closed`.
    pub fn open_connection(
        &mut self,
        user: &str,
        vhost: &str,
        max_connections: Option<u64>,
        version: u64,
    ) -> Result<Arc<UserAccess>, OpenError> {
        let refused = |why: String| {
            OpenError::NotAllowed(format!(
                "access to vhost '{}' refused for user '{}'{}",
                vhost, user, why
            ))
        };
        // RabbitMQ 3.11+'s order (rabbit_reader, connection.open): the node
        // limit, the vhost (missing is reported by its limit check), the
        // vhost limit, the user limit, then the permission.
        if let Some(max) = max_connections {
            if self.live.total >= max {
                return Err(OpenError::NotAllowed(format!(
                    "connection refused: node connection limit ({}) is reached",
                    max
                )));
            }
        }
        let Some(id) = self.vhost_id(vhost).filter(|id| !self.vhosts[id].deleting) else {
            return Err(OpenError::NotAllowed(format!("vhost {} not found", vhost)));
        };
        if let Some(max) = self.vhosts[&id].meta.limits.max_connections {
            if self.live.by_vhost.get(&id).copied().unwrap_or(0) >= max {
                return Err(refused(format!(": connection limit ({}) is reached", max)));
            }
        }
        let ulimit = self
            .tenancy
            .users
            .get(user)
            .and_then(|u| u.limits.max_connections);
        if let Some(max) = ulimit {
            if self.live.by_user.get(user).copied().unwrap_or(0) >= max {
                return Err(OpenError::NotAllowed(format!(
                    "connection refused for user '{}': user connection limit ({}) is reached",
                    user, max
                )));
            }
        }
        let access = match self.shared_access(user, vhost, version) {
            Some(a) if a.may_open() => a,
            _ => return Err(refused(String::new())),
        };
        self.live.total += 1;
        *self.live.by_vhost.entry(id).or_default() += 1;
        *self.live.by_user.entry(user.to_string()).or_default() += 1;
        Ok(access)
    }

    /// `connection.open` of the broker's own connection
    /// (`core::auth::internal`): the vhost must exist; no limit applies and
    /// the rights are full. Counted under its user (`none`), released with
    /// `connection_closed` as any other.
    pub fn open_internal_connection(
        &mut self,
        vhost: &str,
        version: u64,
    ) -> Result<Arc<UserAccess>, OpenError> {
        let Some(id) = self.vhost_id(vhost).filter(|id| !self.vhosts[id].deleting) else {
            return Err(OpenError::NotAllowed(format!("vhost {} not found", vhost)));
        };
        let mut access = UserAccess::full(
            crate::core::auth::internal::USER,
            id,
            self.vhosts[&id].name.clone(),
        );
        access.version = version;
        // A shovel passes on messages as they were published: their
        // user_id was checked where they came from.
        access.tags.push("impersonator".into());
        self.live.total += 1;
        *self.live.by_vhost.entry(id).or_default() += 1;
        *self
            .live
            .by_user
            .entry(crate::core::auth::internal::USER.to_string())
            .or_default() += 1;
        Ok(Arc::new(access))
    }

    /// A connection counted by `open_connection` is gone.
    pub fn connection_closed(&mut self, user: &str, vhost: VhostId) {
        self.live.total = self.live.total.saturating_sub(1);
        if let Some(n) = self.live.by_vhost.get_mut(&vhost) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.live.by_user.get_mut(user) {
            *n = n.saturating_sub(1);
        }
    }

    /// The channel counter of `user` (shared by all their connections).
    pub fn channel_counter(&mut self, user: &str) -> Arc<AtomicU64> {
        self.live
            .channels
            .entry(user.to_string())
            .or_default()
            .clone()
    }

    /// Whether `vhost` may hold one more queue (`max-queues`).
    pub fn check_queue_limit(&self, vhost: VhostId, queue: &str) -> CoreResult<()> {
        let v = self.vh(vhost)?;
        if let Some(max) = v.meta.limits.max_queues {
            if v.queues.len() as u64 >= max {
                return Err(CoreError::PreconditionFailed(format!(
                    "cannot declare queue '{}': queue limit in vhost '{}' ({}) is reached",
                    queue, v.name, max
                )));
            }
        }
        Ok(())
    }
}
