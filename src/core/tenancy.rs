//! Users, their permissions per vhost and their limits: RabbitMQ's internal
//! auth backend (`rabbit_auth_backend_internal`). The state lives in `Defs`
//! behind the definitions lock and goes to the definitions log; the methods
//! here change it and append the log records of the change to `out`
//! (`definitions/users.rs` checks the vhosts and writes the records).

use super::auth::password::{HashAlgo, PasswordHash};
use super::auth::permissions::{Permission, TopicPermission};
use super::error::{CoreError, CoreResult};
use crate::store::defs_log::{Limits, Record};
use std::collections::BTreeMap;

/// A user of the internal database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub hash: PasswordHash,
    /// `administrator`, `monitoring`, `policymaker`, `management` or any other.
    pub tags: Vec<String>,
    pub limits: UserLimits,
}

impl User {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// `rabbitmqctl set_user_limits`: `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub max_connections: Option<u64>,
    /// Channels across all the user's connections.
    pub max_channels: Option<u64>,
}

impl UserLimits {
    /// From RabbitMQ's names; a negative value means no limit.
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), String> {
        let v = u64::try_from(value).ok();
        match name {
            "max-connections" => self.max_connections = v,
            "max-channels" => self.max_channels = v,
            _ => return Err(format!("unknown user limit '{}'", name)),
        }
        Ok(())
    }

    pub fn to_list(&self) -> Limits {
        let mut out = Vec::new();
        if let Some(n) = self.max_connections {
            out.push(("max-connections".to_string(), n as i64));
        }
        if let Some(n) = self.max_channels {
            out.push(("max-channels".to_string(), n as i64));
        }
        out
    }

    pub fn from_list(list: &Limits) -> UserLimits {
        let mut l = UserLimits::default();
        for (k, v) in list {
            let _ = l.set(k, *v);
        }
        l
    }
}

/// Users and permissions.
#[derive(Default)]
pub struct Tenancy {
    pub users: BTreeMap<String, User>,
    /// By (user, vhost).
    pub permissions: BTreeMap<(String, String), Permission>,
    /// By (user, vhost, exchange).
    pub topic_permissions: BTreeMap<(String, String, String), TopicPermission>,
}

pub fn user_record(u: &User) -> Record {
    Record::UserPut {
        name: u.name.clone(),
        algorithm: u.hash.algo.rabbit_name().to_string(),
        hash: u.hash.hash.clone(),
        tags: u.tags.clone(),
        limits: u.limits.to_list(),
    }
}

fn permission_record(user: &str, vhost: &str, p: &Permission) -> Record {
    Record::PermissionSet {
        user: user.to_string(),
        vhost: vhost.to_string(),
        configure: p.configure.clone(),
        write: p.write.clone(),
        read: p.read.clone(),
    }
}

fn topic_record(user: &str, vhost: &str, tp: &TopicPermission) -> Record {
    Record::TopicPermissionSet {
        user: user.to_string(),
        vhost: vhost.to_string(),
        exchange: tp.exchange.clone(),
        write: tp.write.clone(),
        read: tp.read.clone(),
    }
}

impl Tenancy {
    /// Applies the user and permission records of a log, in order.
    pub fn replay(&mut self, records: Vec<Record>) {
        let mut scratch = Vec::new();
        for r in records {
            match r {
                Record::UserPut {
                    name,
                    algorithm,
                    hash,
                    tags,
                    limits,
                } => {
                    let algo = HashAlgo::from_rabbit(&algorithm).unwrap_or(HashAlgo::Sha256);
                    let user = User {
                        name: name.clone(),
                        hash: PasswordHash { algo, hash },
                        tags,
                        limits: UserLimits::from_list(&limits),
                    };
                    self.users.insert(name, user);
                }
                Record::UserDelete { name } => {
                    let _ = self.delete_user(&name, &mut scratch);
                }
                Record::PermissionSet {
                    user,
                    vhost,
                    configure,
                    write,
                    read,
                } => {
                    self.permissions.insert(
                        (user, vhost),
                        Permission {
                            configure,
                            write,
                            read,
                        },
                    );
                }
                Record::PermissionClear { user, vhost } => {
                    self.permissions.remove(&(user, vhost));
                }
                Record::TopicPermissionSet {
                    user,
                    vhost,
                    exchange,
                    write,
                    read,
                } => {
                    let tp = TopicPermission {
                        exchange: exchange.clone(),
                        write,
                        read,
                    };
                    self.topic_permissions.insert((user, vhost, exchange), tp);
                }
                Record::TopicPermissionClear {
                    user,
                    vhost,
                    exchange,
                } => self.clear_topic_permission(&user, &vhost, &exchange, &mut scratch),
                Record::VhostDelete { name } => self.forget_vhost(&name),
                _ => {}
            }
            scratch.clear();
        }
    }

    /// The whole state as log records (compaction).
    pub fn live_records(&self, out: &mut Vec<Record>) {
        out.extend(self.users.values().map(user_record));
        for ((u, v), p) in &self.permissions {
            out.push(permission_record(u, v, p));
        }
        for ((u, v, _), tp) in &self.topic_permissions {
            out.push(topic_record(u, v, tp));
        }
    }

    /// Creates or replaces a user.
    pub fn put_user(&mut self, user: User, out: &mut Vec<Record>) {
        out.push(user_record(&user));
        self.users.insert(user.name.clone(), user);
    }

    pub fn user(&self, name: &str) -> CoreResult<&User> {
        self.users
            .get(name)
            .ok_or_else(|| CoreError::NotFound(format!("no user '{}'", name)))
    }

    /// Deletes a user and every permission of theirs (as RabbitMQ does).
    pub fn delete_user(&mut self, name: &str, out: &mut Vec<Record>) -> CoreResult<()> {
        if self.users.remove(name).is_none() {
            return Err(CoreError::NotFound(format!("no user '{}'", name)));
        }
        self.permissions.retain(|(u, _), _| u != name);
        self.topic_permissions.retain(|(u, _, _), _| u != name);
        out.push(Record::UserDelete {
            name: name.to_string(),
        });
        Ok(())
    }

    pub fn set_permission(
        &mut self,
        user: &str,
        vhost: &str,
        p: Permission,
        out: &mut Vec<Record>,
    ) {
        out.push(permission_record(user, vhost, &p));
        self.permissions
            .insert((user.to_string(), vhost.to_string()), p);
    }

    pub fn clear_permission(&mut self, user: &str, vhost: &str, out: &mut Vec<Record>) -> bool {
        let had = self
            .permissions
            .remove(&(user.to_string(), vhost.to_string()))
            .is_some();
        if had {
            out.push(Record::PermissionClear {
                user: user.to_string(),
                vhost: vhost.to_string(),
            });
        }
        had
    }

    pub fn set_topic_permission(
        &mut self,
        user: &str,
        vhost: &str,
        tp: TopicPermission,
        out: &mut Vec<Record>,
    ) {
        out.push(topic_record(user, vhost, &tp));
        self.topic_permissions.insert(
            (user.to_string(), vhost.to_string(), tp.exchange.clone()),
            tp,
        );
    }

    /// Clears the topic permission of `user` on `exchange` in `vhost`, or
    /// all of them in `vhost` when `exchange` is empty.
    pub fn clear_topic_permission(
        &mut self,
        user: &str,
        vhost: &str,
        exchange: &str,
        out: &mut Vec<Record>,
    ) {
        self.topic_permissions.retain(|(u, v, x), _| {
            !(u == user && v == vhost && (exchange.is_empty() || x == exchange))
        });
        out.push(Record::TopicPermissionClear {
            user: user.to_string(),
            vhost: vhost.to_string(),
            exchange: exchange.to_string(),
        });
    }

    /// A vhost is deleted: so are the permissions on it. No record of its
    /// own: replaying the vhost's delete record does the same.
    pub fn forget_vhost(&mut self, vhost: &str) {
        self.permissions.retain(|(_, v), _| v != vhost);
        self.topic_permissions.retain(|(_, v, _), _| v != vhost);
    }

    /// The permission of `user` on `vhost`, if any.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<&Permission> {
        self.permissions.get(&(user.to_string(), vhost.to_string()))
    }

    /// The topic permissions of `user` on `vhost`.
    pub fn topic_permissions_of<'a>(
        &'a self,
        user: &'a str,
        vhost: &'a str,
    ) -> impl Iterator<Item = &'a TopicPermission> + 'a {
        self.topic_permissions
            .iter()
            .filter(move |((u, v, _), _)| u == user && v == vhost)
            .map(|(_, tp)| tp)
    }
}
