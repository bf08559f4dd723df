//! RabbitMQ definitions files: export (`GET /api/definitions`,
//! `warrenctl export_definitions`) and import (`--definitions` at boot,
//! `POST /api/definitions`, `warrenctl import_definitions`), in RabbitMQ's
//! order: users, vhosts, permissions, topic permissions, queues, exchanges,
//! bindings, then runtime parameters. Sections warren does not have
//! (policies, global parameters) are logged and skipped, and so are the
//! parameters of components it does not run (federation, …). An object
//! that cannot be imported (an unknown exchange type, a binding to a
//! missing queue) is skipped with a warning, as far as RabbitMQ would
//! import the rest; a user or permission that is malformed, or a parameter
//! that fails its validation, fails the whole import (the latter with
//! RabbitMQ's reason, `rabbit_definitions:add_parameter`).

use super::{Admin, AdminError, AdminResult, PasswordSpec};
use crate::core::auth::permissions::{Permission, TopicPermission};
use crate::core::definitions::{Binding, BindingDest, Defs, VhostLimits, VhostMeta};
use crate::core::definitions_json::{
    json_to_table, table_to_json, BindingJson, DefinitionsFile, ExchangeJson, PermissionJson,
    QueueJson, TopicPermissionJson, UserJson, VhostJson,
};
use crate::core::ids::VhostId;
use crate::core::ops::exchange::{exchange_declare, ExchangeSpec};
use crate::core::ops::queue::{queue_declare, QueueSpec};
use crate::core::ops::Caller;
use crate::core::tenancy::UserLimits;
use crate::protocol::FieldTable;
use serde_json::{Map, Value};

/// What an import skipped.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub warnings: Vec<String>,
}

impl ImportReport {
    fn warn(&mut self, w: String) {
        log::warn!("definitions import: {}", w);
        self.warnings.push(w);
    }
}

fn limits_of(m: &Map<String, Value>) -> Vec<(String, i64)> {
    m.iter()
        .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
        .collect()
}

fn limits_json(list: Vec<(String, i64)>) -> Map<String, Value> {
    list.into_iter().map(|(k, v)| (k, Value::from(v))).collect()
}

impl Admin {
    /// The broker's definitions in RabbitMQ's format.
    pub fn export_definitions(&self) -> DefinitionsFile {
        let g = self.defs.lock();
        let mut f = DefinitionsFile {
            rabbit_version: Some("3.13.7".into()),
            rabbitmq_version: Some("3.13.7".into()),
            product_name: Some("warren".into()),
            product_version: Some(env!("CARGO_PKG_VERSION").into()),
            ..DefinitionsFile::default()
        };
        for u in g.tenancy.users.values() {
            f.users.push(UserJson {
                name: u.name.clone(),
                password_hash: u.hash.to_base64(),
                password: None,
                hashing_algorithm: u.hash.algo.rabbit_name().to_string(),
                tags: u.tags.clone(),
                limits: limits_json(u.limits.to_list()),
            });
        }
        for v in g.vhosts() {
            let mut metadata = Map::new();
            metadata.insert("description".into(), v.meta.description.clone().into());
            metadata.insert(
                "tags".into(),
                Value::Array(v.meta.tags.iter().cloned().map(Value::from).collect()),
            );
            if !v.meta.default_queue_type.is_empty() {
                metadata.insert(
                    "default_queue_type".into(),
                    v.meta.default_queue_type.clone().into(),
                );
            }
            f.vhosts.push(VhostJson {
                name: v.name.to_string(),
                description: Some(v.meta.description.clone()),
                tags: v.meta.tags.clone(),
                default_queue_type: None,
                metadata: Some(Value::Object(metadata)),
                limits: Some(limits_json(v.meta.limits.to_list())),
            });
            let vname = v.name.to_string();
            let mut queues: Vec<_> = v.queues.values().filter(|q| q.persistent()).collect();
            queues.sort_by(|a, b| a.name.cmp(&b.name));
            for q in queues {
                f.queues.push(QueueJson {
                    name: q.name.clone(),
                    vhost: vname.clone(),
                    durable: q.durable,
                    auto_delete: q.auto_delete,
                    arguments: table_to_json(&q.args),
                    kind: Some(
                        q.args
                            .get("x-queue-type")
                            .and_then(|t| t.as_str())
                            .unwrap_or("classic")
                            .to_string(),
                    ),
                });
            }
            let mut exchanges: Vec<_> = v
                .exchanges
                .values()
                .filter(|x| x.durable && !x.name.is_empty() && !x.name.starts_with("amq."))
                .collect();
            exchanges.sort_by(|a, b| a.name.cmp(&b.name));
            for x in exchanges {
                f.exchanges.push(ExchangeJson {
                    name: x.name.clone(),
                    vhost: vname.clone(),
                    kind: x.kind.as_str().to_string(),
                    durable: x.durable,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: table_to_json(&x.args),
                });
            }
            let mut bindings: Vec<_> = v
                .bindings
                .iter()
                .filter(|b| !b.source.is_empty() && binding_durable(&g, b))
                .collect();
            bindings.sort_by(|a, b| {
                (&a.source, a.dest.name(), &a.key).cmp(&(&b.source, b.dest.name(), &b.key))
            });
            for b in bindings {
                let (destination_type, destination) = match &b.dest {
                    BindingDest::Queue(n) => ("queue", n.clone()),
                    BindingDest::Exchange(n) => ("exchange", n.clone()),
                };
                f.bindings.push(BindingJson {
                    source: b.source.clone(),
                    vhost: vname.clone(),
                    destination,
                    destination_type: destination_type.into(),
                    routing_key: b.key.clone(),
                    arguments: table_to_json(&b.args),
                });
            }
        }
        for ((user, vhost), p) in &g.tenancy.permissions {
            f.permissions.push(PermissionJson {
                user: user.clone(),
                vhost: vhost.clone(),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        for p in g.parameters() {
            f.parameters.push(serde_json::json!({
                "vhost": p.vhost,
                "component": p.component,
                "name": p.name,
                "value": p.value,
            }));
        }
        for ((user, vhost, _), p) in &g.tenancy.topic_permissions {
            f.topic_permissions.push(TopicPermissionJson {
                user: user.clone(),
                vhost: vhost.clone(),
                exchange: p.exchange.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        f
    }

    /// Imports a definitions file into the running broker: queues are
    /// declared on their shards (round robin) through the control path.
    pub fn import_definitions(&self, file: &DefinitionsFile) -> AdminResult<ImportReport> {
        let mut report = ImportReport::default();
        self.import_tenancy(file, &mut report)?;
        let shards = self.control.shards().max(1);
        for (i, q) in file.queues.iter().enumerate() {
            let Some(spec) = queue_spec(q, &mut report) else {
                continue;
            };
            let vhost = q.vhost.clone();
            let name = q.name.clone();
            let answer = self.control.ask(i % shards, move |s| {
                let Some(access) = s.ctx.defs.lock().admin_access(&vhost) else {
                    return Err(format!("no vhost '{}'", vhost));
                };
                let caller = Caller {
                    conn_uid: 0,
                    access: &access,
                };
                queue_declare(&mut s.ctx, caller, spec)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            match answer {
                Some(Ok(())) => {}
                Some(Err(e)) => report.warn(format!("queue '{}' skipped: {}", name, e)),
                None => return Err(AdminError::Internal("a shard did not answer".into())),
            }
        }
        self.import_exchanges_and_bindings(file, &mut report)?;
        self.import_parameters(file, &mut report)?;
        Ok(report)
    }

    /// Users, vhosts, permissions, topic permissions and limits.
    fn import_tenancy(&self, f: &DefinitionsFile, report: &mut ImportReport) -> AdminResult<()> {
        for (section, n) in [
            ("policies", f.policies.len()),
            ("global_parameters", f.global_parameters.len()),
        ] {
            if n > 0 {
                report.warn(format!("{} {} skipped (not supported)", n, section));
            }
        }
        for u in &f.users {
            let password = match &u.password {
                Some(p) => PasswordSpec::Clear(p.clone()),
                None if u.password_hash.is_empty() => PasswordSpec::None,
                None => PasswordSpec::Hash {
                    algorithm: u.hashing_algorithm.clone(),
                    hash: u.password_hash.clone(),
                },
            };
            self.put_user(&u.name, password, u.tags.clone())
                .map_err(|e| AdminError::BadRequest(format!("user '{}': {}", u.name, e)))?;
            let mut limits = UserLimits::default();
            for (k, v) in limits_of(&u.limits) {
                if limits.set(&k, v).is_err() {
                    report.warn(format!("user '{}': unknown limit '{}' skipped", u.name, k));
                }
            }
            for (k, v) in limits.to_list() {
                self.set_user_limit(&u.name, &k, v)?;
            }
        }
        let mut g = self.defs.lock_change();
        for v in &f.vhosts {
            let mut limits = VhostLimits::default();
            for (k, n) in v.limits.as_ref().map(limits_of).unwrap_or_default() {
                if limits.set(&k, n).is_err() {
                    report.warn(format!("vhost '{}': unknown limit '{}' skipped", v.name, k));
                }
            }
            let meta = VhostMeta {
                description: v.effective_description().unwrap_or("").to_string(),
                tags: v.effective_tags(),
                default_queue_type: v.effective_default_queue_type().unwrap_or("").to_string(),
                limits,
            };
            g.put_vhost(&v.name, meta)?;
        }
        for p in &f.permissions {
            let perm = Permission {
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            };
            g.set_permissions(&p.user, &p.vhost, perm)?;
        }
        for p in &f.topic_permissions {
            let tp = TopicPermission {
                exchange: p.exchange.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            };
            g.set_topic_permissions(&p.user, &p.vhost, tp)?;
        }
        g.commit()?;
        Ok(())
    }

    fn import_exchanges_and_bindings(
        &self,
        f: &DefinitionsFile,
        report: &mut ImportReport,
    ) -> AdminResult<()> {
        for x in &f.exchanges {
            let Some(access) = self.defs.lock().admin_access(&x.vhost) else {
                report.warn(format!("exchange '{}': no vhost '{}'", x.name, x.vhost));
                continue;
            };
            let arguments = match json_to_table(&x.arguments) {
                Ok(t) => t,
                Err(e) => {
                    report.warn(format!("exchange '{}' skipped: {}", x.name, e));
                    continue;
                }
            };
            let spec = ExchangeSpec {
                name: x.name.clone(),
                kind: x.kind.clone(),
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments,
            };
            let caller = Caller {
                conn_uid: 0,
                access: &access,
            };
            if let Err(e) = exchange_declare(&self.defs, caller, spec) {
                report.warn(format!("exchange '{}' skipped: {}", x.name, e));
            }
        }
        let mut g = self.defs.lock_change();
        for b in &f.bindings {
            if let Err(e) = add_binding(&mut g, b) {
                report.warn(format!(
                    "binding of '{}' to {} '{}' skipped: {}",
                    b.source, b.destination_type, b.destination, e
                ));
            }
        }
        g.commit()?;
        Ok(())
    }
}

impl Admin {
    /// The runtime parameters, validated as RabbitMQ's import does (no
    /// acting user: a shovel's direct URIs are not checked against one).
    /// The first refused one fails the import with RabbitMQ's reason,
    /// HTML-escaped, and ` (vhost/component/name)`.
    fn import_parameters(&self, f: &DefinitionsFile, report: &mut ImportReport) -> AdminResult<()> {
        use crate::core::parameters::{escape_html_tags, COMPONENTS, NO_USER};
        for p in &f.parameters {
            let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
            let (vhost, component, name) = (field("vhost"), field("component"), field("name"));
            if !COMPONENTS.contains(&component) {
                report.warn(format!(
                    "parameter '{}' of component '{}' in vhost '{}' skipped (not supported)",
                    name, component, vhost
                ));
                continue;
            }
            let value = p.get("value").cloned().unwrap_or(Value::Null);
            if let Err(e) = self.set_parameter(NO_USER, vhost, component, name, value) {
                let reason = match e {
                    AdminError::NotFound(_) => format!("no vhost '{}'", vhost),
                    other => other.reason().to_string(),
                };
                let text = format!("{} ({}/{}/{})", reason, vhost, component, name);
                return Err(AdminError::BadRequest(escape_html_tags(&text)));
            }
        }
        Ok(())
    }
}

/// A binding of a definitions file, checked like queue.bind / exchange.bind.
fn add_binding(g: &mut Defs, b: &BindingJson) -> Result<(), String> {
    let vhost: VhostId = g.vhost_id(&b.vhost).ok_or("no such vhost")?;
    let dest = match b.destination_type.as_str() {
        "queue" => BindingDest::Queue(b.destination.clone()),
        "exchange" => BindingDest::Exchange(b.destination.clone()),
        other => return Err(format!("unknown destination type '{}'", other)),
    };
    let args: FieldTable = json_to_table(&b.arguments)?;
    g.exchange(vhost, &b.source).map_err(|e| e.to_string())?;
    match &dest {
        BindingDest::Queue(q) => g.queue(vhost, q).map(|_| ()),
        BindingDest::Exchange(x) => g.exchange(vhost, x).map(|_| ()),
    }
    .map_err(|e| e.to_string())?;
    let binding = Binding::new(vhost, b.source.clone(), dest, b.routing_key.clone(), args);
    crate::core::ops::exchange::check_binding_args(g, &binding).map_err(|e| e.to_string())?;
    g.add_binding(binding);
    Ok(())
}

fn queue_spec(q: &QueueJson, report: &mut ImportReport) -> Option<QueueSpec> {
    let mut arguments = match json_to_table(&q.arguments) {
        Ok(t) => t,
        Err(e) => {
            report.warn(format!("queue '{}' skipped: {}", q.name, e));
            return None;
        }
    };
    // 3.13 exports the type beside the arguments.
    if let Some(kind) = &q.kind {
        if arguments.get("x-queue-type").is_none() && kind != "classic" {
            arguments.insert(
                "x-queue-type",
                crate::protocol::FieldValue::LongStr(kind.clone().into()),
            );
        }
    }
    Some(QueueSpec {
        name: q.name.clone(),
        durable: q.durable,
        exclusive: false,
        auto_delete: q.auto_delete,
        arguments,
    })
}

/// Exported like RabbitMQ: bindings between durable ends.
fn binding_durable(g: &Defs, b: &Binding) -> bool {
    let Ok(v) = g.vh(b.vhost) else {
        return false;
    };
    let src = v.exchanges.get(&b.source).is_some_and(|x| x.durable);
    src && match &b.dest {
        BindingDest::Queue(n) => v.queues.get(n).is_some_and(|q| q.persistent()),
        BindingDest::Exchange(n) => v.exchanges.get(n).is_some_and(|x| x.durable),
    }
}

impl Admin {
    /// The definitions file of `--definitions`, loaded before the shards
    /// start (so before any connection is accepted): its queues become
    /// recovered queues that their shards create at start.
    pub fn import_at_boot(&self, file: &DefinitionsFile) -> AdminResult<ImportReport> {
        let mut report = ImportReport::default();
        self.import_tenancy(file, &mut report)?;
        let shards = self.control.shards().max(1);
        {
            let mut g = self.defs.lock_change();
            for (i, q) in file.queues.iter().enumerate() {
                let Some(spec) = queue_spec(q, &mut report) else {
                    continue;
                };
                if let Err(e) = g.declare_queue_at_boot(&q.vhost, spec, i % shards) {
                    report.warn(format!("queue '{}' skipped: {}", q.name, e));
                }
            }
            g.commit()?;
        }
        self.import_exchanges_and_bindings(file, &mut report)?;
        self.import_parameters(file, &mut report)?;
        Ok(report)
    }
}
