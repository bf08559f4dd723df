//! The broker's administration operations, for every tool that is not a
//! client connection: the HTTP API, `warrenctl` through it, and the
//! definitions file loaded at boot. Users, vhosts, permissions, limits and
//! runtime parameters (`parameters.rs`) are changes to the definitions (under their lock, logged before the call
//! returns); what touches live state (closing a vhost's connections,
//! deleting its queues, declaring queues) goes to the shards through the
//! control path (`shard::control`), so no shard ever waits for this code.
//!
//! Calls block for at most a control round trip: call them from a thread of
//! your own (the HTTP server uses `spawn_blocking`), never from a shard.

mod aliveness;
mod exchanges;
mod import;
pub mod objects;
mod parameters;
mod quorum;
pub mod stats;

use crate::config::Config;
use crate::core::auth::password::{HashAlgo, PasswordHash};
use crate::core::auth::permissions::{Permission, TopicPermission};
use crate::core::definitions::{Definitions, VhostMeta};
use crate::core::error::CoreError;
use crate::core::tenancy::{User, UserLimits};
use crate::shard::control::Control;
use std::sync::Arc;

pub use aliveness::{AlivenessFailure, ALIVENESS_QUEUE};
pub use exchanges::{BindingFilter, BindingView, ExchangeView};
pub use import::ImportReport;

/// Why an administration call failed, with the HTTP status RabbitMQ's
/// management API gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// 404 `{"error":"Object Not Found","reason":"Not Found"}`.
    NotFound(String),
    /// 400 `{"error":"bad_request","reason":…}`.
    BadRequest(String),
    /// 500.
    Internal(String),
    /// 503: the change could not be made durable (`CoreError::Unavailable`).
    Unavailable(String),
}

impl AdminError {
    pub fn status(&self) -> u16 {
        match self {
            AdminError::NotFound(_) => 404,
            AdminError::BadRequest(_) => 400,
            AdminError::Internal(_) => 500,
            AdminError::Unavailable(_) => 503,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            AdminError::NotFound(r)
            | AdminError::BadRequest(r)
            | AdminError::Internal(r)
            | AdminError::Unavailable(r) => r,
        }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl From<CoreError> for AdminError {
    fn from(e: CoreError) -> AdminError {
        match e {
            CoreError::NotFound(d) => AdminError::NotFound(d),
            CoreError::Internal(d) => AdminError::Internal(d),
            CoreError::Unavailable(d) => AdminError::Unavailable(d),
            other => AdminError::BadRequest(other.detail().to_string()),
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// A user as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    pub name: String,
    /// base64 of salt ‖ digest ("" for no password).
    pub password_hash: String,
    /// `rabbit_password_hashing_sha256`, …
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
    pub limits: UserLimits,
}

/// A vhost as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhostView {
    pub name: String,
    pub meta: VhostMeta,
}

/// One user's permission in one vhost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionView {
    pub user: String,
    pub vhost: String,
    pub permission: Permission,
}

/// One user's topic permission on one exchange of one vhost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPermissionView {
    pub user: String,
    pub vhost: String,
    pub permission: TopicPermission,
}

/// How a user's password is given to `put_user`.
#[derive(Clone, Debug)]
pub enum PasswordSpec {
    /// In clear text: hashed with SHA-256 and a random salt.
    Clear(String),
    /// Already hashed (definitions files, `password_hash` in the API).
    Hash { algorithm: String, hash: String },
    /// No password login (certificate users; a PUT without a password, as
    /// in RabbitMQ).
    None,
}

/// The administration handle: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Admin {
    defs: Arc<Definitions>,
    control: Control,
    config: Arc<Config>,
    node: Arc<stats::NodeInfo>,
}

fn view(u: &User) -> UserView {
    UserView {
        name: u.name.clone(),
        password_hash: u.hash.to_base64(),
        hashing_algorithm: u.hash.algo.rabbit_name().to_string(),
        tags: u.tags.clone(),
        limits: u.limits,
    }
}

impl Admin {
    pub fn new(
        defs: Arc<Definitions>,
        control: Control,
        config: Arc<Config>,
        node: stats::NodeInfo,
    ) -> Admin {
        Admin {
            defs,
            control,
            config,
            node: Arc::new(node),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The user `name` if `password` is theirs (HTTP basic auth).
    pub fn authenticate(&self, name: &str, password: &str) -> Option<UserView> {
        self.defs.lock().authenticate(name, password).map(view)
    }

    // ---- users ----

    pub fn list_users(&self) -> Vec<UserView> {
        self.defs.lock().tenancy.users.values().map(view).collect()
    }

    pub fn user(&self, name: &str) -> AdminResult<UserView> {
        Ok(view(self.defs.lock().tenancy.user(name)?))
    }

    /// Creates or updates a user (`PUT /api/users/{name}`, `add_user`,
    /// `change_password`, `set_user_tags`). Returns whether it was created.
    pub fn put_user(
        &self,
        name: &str,
        password: PasswordSpec,
        tags: Vec<String>,
    ) -> AdminResult<bool> {
        if name.is_empty() {
            return Err(AdminError::BadRequest("user name must not be empty".into()));
        }
        let mut g = self.defs.lock_change();
        let existing = g.tenancy.users.get(name).cloned();
        let hash = match password {
            PasswordSpec::Clear(p) if p.is_empty() => {
                return Err(AdminError::BadRequest("password must not be empty".into()))
            }
            PasswordSpec::Clear(p) => PasswordHash::new(&p),
            PasswordSpec::Hash { algorithm, hash } => {
                let algo = HashAlgo::from_rabbit(&algorithm).ok_or_else(|| {
                    AdminError::BadRequest(format!("unknown hashing algorithm '{}'", algorithm))
                })?;
                PasswordHash::from_base64(algo, &hash).map_err(AdminError::BadRequest)?
            }
            PasswordSpec::None => PasswordHash::none(),
        };
        let limits = existing.as_ref().map(|u| u.limits).unwrap_or_default();
        g.put_user(User {
            name: name.to_string(),
            hash,
            tags: tags
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            limits,
        });
        g.commit()?;
        Ok(existing.is_none())
    }

    /// The definitions (the cluster layer applies other nodes' changes to
    /// them).
    pub fn definitions(&self) -> &Arc<Definitions> {
        &self.defs
    }

    /// Another node deleted vhost `id`: every shard closes its connections
    /// on it and drops its queues' runtime state. Does not wait (the
    /// caller may be what a shard waits for).
    pub fn vhost_gone_elsewhere(&self, id: crate::core::ids::VhostId, name: &str) {
        let text = format!("vhost '{}' is deleted", name);
        for i in 0..self.control.shards() {
            let text = text.clone();
            self.control.send(i, move |s| s.close_vhost(id, &text));
        }
    }

    /// Another node deleted user `name`: their connections here close.
    /// Does not wait.
    pub fn user_gone_elsewhere(&self, name: &str) {
        let text = format!("user '{}' is deleted", name);
        for i in 0..self.control.shards() {
            let (user, text) = (name.to_string(), text.clone());
            self.control.send(i, move |s| s.close_user(&user, &text));
        }
    }

    /// Deletes a user with their permissions; their open connections are
    /// closed (320), as RabbitMQ does.
    pub fn delete_user(&self, name: &str) -> AdminResult<()> {
        {
            let mut g = self.defs.lock_change();
            g.delete_user(name)?;
            g.commit()?;
        }
        let (user, text) = (name.to_string(), format!("user '{}' is deleted", name));
        self.control.ask_all(move |s| s.close_user(&user, &text));
        Ok(())
    }

    // ---- vhosts ----

    pub fn list_vhosts(&self) -> Vec<VhostView> {
        self.defs
            .lock()
            .vhosts()
            .map(|v| VhostView {
                name: v.name.to_string(),
                meta: v.meta.clone(),
            })
            .collect()
    }

    pub fn vhost(&self, name: &str) -> AdminResult<VhostView> {
        self.list_vhosts()
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| AdminError::NotFound(format!("no vhost '{}'", name)))
    }

    /// Creates a vhost or updates its metadata (limits are kept); whether it
    /// was created.
    pub fn put_vhost(
        &self,
        name: &str,
        description: Option<String>,
        tags: Option<Vec<String>>,
        default_queue_type: Option<String>,
    ) -> AdminResult<bool> {
        let mut g = self.defs.lock_change();
        let mut meta = g
            .vhost_id(name)
            .map(|id| g.vh(id).map(|v| v.meta.clone()).unwrap_or_default())
            .unwrap_or_default();
        if let Some(d) = description {
            meta.description = d;
        }
        if let Some(t) = tags {
            meta.tags = t;
        }
        if let Some(q) = default_queue_type {
            meta.default_queue_type = q;
        }
        let (_, created) = g.put_vhost(name, meta)?;
        g.commit()?;
        Ok(created)
    }

    /// Deletes a vhost: no new connection opens on it; every shard closes
    /// its connections on it (320 CONNECTION_FORCED) and deletes its queues
    /// with their stored messages; then its exchanges, bindings and
    /// permissions go, durably.
    pub fn delete_vhost(&self, name: &str) -> AdminResult<()> {
        let id = self.defs.lock().start_vhost_delete(name)?;
        let text = format!("vhost '{}' is deleted", name);
        let answers = self.control.ask_all(move |s| s.close_vhost(id, &text));
        if answers.len() != self.control.shards() {
            return Err(AdminError::Internal("a shard did not answer".into()));
        }
        let mut g = self.defs.lock_change();
        g.remove_vhost(id);
        g.commit()?;
        log::info!("deleted vhost '{}'", name);
        Ok(())
    }

    // ---- permissions ----

    pub fn list_permissions(&self) -> Vec<PermissionView> {
        let g = self.defs.lock();
        g.tenancy
            .permissions
            .iter()
            .map(|((user, vhost), p)| PermissionView {
                user: user.clone(),
                vhost: vhost.clone(),
                permission: p.clone(),
            })
            .collect()
    }

    pub fn set_permissions(&self, user: &str, vhost: &str, p: Permission) -> AdminResult<()> {
        let mut g = self.defs.lock_change();
        g.set_permissions(user, vhost, p)?;
        g.commit()?;
        Ok(())
    }

    pub fn clear_permissions(&self, user: &str, vhost: &str) -> AdminResult<()> {
        let mut g = self.defs.lock_change();
        g.clear_permissions(user, vhost)?;
        g.commit()?;
        Ok(())
    }

    pub fn list_topic_permissions(&self) -> Vec<TopicPermissionView> {
        let g = self.defs.lock();
        g.tenancy
            .topic_permissions
            .iter()
            .map(|((user, vhost, _), p)| TopicPermissionView {
                user: user.clone(),
                vhost: vhost.clone(),
                permission: p.clone(),
            })
            .collect()
    }

    pub fn set_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        p: TopicPermission,
    ) -> AdminResult<()> {
        let mut g = self.defs.lock_change();
        g.set_topic_permissions(user, vhost, p)?;
        g.commit()?;
        Ok(())
    }

    /// Clears the topic permission on `exchange`, or all of the user's in
    /// the vhost when `exchange` is None.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> AdminResult<()> {
        let mut g = self.defs.lock_change();
        g.clear_topic_permissions(user, vhost, exchange.unwrap_or(""))?;
        g.commit()?;
        Ok(())
    }

    // ---- limits ----

    /// Sets (`value` >= 0) or clears (`value` < 0) `max-connections` or
    /// `max-queues` of a vhost.
    pub fn set_vhost_limit(&self, vhost: &str, limit: &str, value: i64) -> AdminResult<()> {
        let mut g = self.defs.lock_change();
        g.set_vhost_limit(vhost, limit, value)?;
        g.commit()?;
        Ok(())
    }

    /// Sets (`value` >= 0) or clears (`value` < 0) `max-connections` or
    /// `max-channels` of a user.
    pub fn set_user_limit(&self, user: &str, limit: &str, value: i64) -> AdminResult<()> {
        let mut g = self.defs.lock_change();
        g.set_user_limit(user, limit, value)?;
        g.commit()?;
        Ok(())
    }
}
