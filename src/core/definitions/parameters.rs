//! Vhost runtime parameters (RabbitMQ's `rabbit_runtime_parameters`): named
//! JSON values per (vhost, component), such as a dynamic shovel's
//! definition. The definitions store them as given (validation is
//! `core::parameters::validate`, called by the admin layer before `set`),
//! log every change (`Record::ParameterSet` / `ParameterClear`) and move
//! `Definitions::parameters_version` when the lock is released, so the
//! workers that run them (the shovels) poll one atomic.

use super::Defs;
use crate::core::error::{CoreError, CoreResult};
use crate::store::defs_log::Record;

/// One runtime parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub vhost: String,
    pub component: String,
    pub name: String,
    pub value: serde_json::Value,
}

impl Defs {
    /// Creates or replaces a parameter: true if it was created. The vhost
    /// must exist (`NotFound`). Logged; the caller commits. Setting the
    /// value it already has changes nothing (RabbitMQ notifies no one then).
    pub fn set_parameter(
        &mut self,
        vhost: &str,
        component: &str,
        name: &str,
        value: serde_json::Value,
    ) -> CoreResult<bool> {
        if self.vhost_id(vhost).is_none() {
            return Err(CoreError::NotFound(format!("no vhost '{}'", vhost)));
        }
        if self.parameter(vhost, component, name) == Some(&value) {
            return Ok(false);
        }
        self.record(|| Record::ParameterSet {
            vhost: vhost.to_string(),
            component: component.to_string(),
            name: name.to_string(),
            value: value.to_string(),
        });
        self.parameters_changed = true;
        let key = (vhost.to_string(), component.to_string(), name.to_string());
        Ok(self.parameters.insert(key, value).is_none())
    }

    /// Removes a parameter (`NotFound` if there is none). Logged; the
    /// caller commits.
    pub fn clear_parameter(&mut self, vhost: &str, component: &str, name: &str) -> CoreResult<()> {
        let key = (vhost.to_string(), component.to_string(), name.to_string());
        if self.parameters.remove(&key).is_none() {
            return Err(CoreError::NotFound(format!(
                "no parameter '{}' of component '{}' in vhost '{}'",
                name, component, vhost
            )));
        }
        self.record(|| Record::ParameterClear {
            vhost: key.0,
            component: key.1,
            name: key.2,
        });
        self.parameters_changed = true;
        Ok(())
    }

    /// Every parameter, sorted by vhost, component and name.
    pub fn parameters(&self) -> Vec<Parameter> {
        self.parameters
            .iter()
            .map(|((vhost, component, name), value)| Parameter {
                vhost: vhost.clone(),
                component: component.clone(),
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// One parameter's value.
    pub fn parameter(
        &self,
        vhost: &str,
        component: &str,
        name: &str,
    ) -> Option<&serde_json::Value> {
        self.parameters
            .get(&(vhost.to_string(), component.to_string(), name.to_string()))
    }

    /// Clears every parameter of `vhost` (its deletion), logged one by one.
    pub(super) fn clear_vhost_parameters(&mut self, vhost: &str) {
        let doomed: Vec<(String, String, String)> = self
            .parameters
            .keys()
            .filter(|(v, _, _)| v == vhost)
            .cloned()
            .collect();
        for (v, c, n) in doomed {
            let _ = self.clear_parameter(&v, &c, &n);
        }
    }

    /// The parameters as log records (compaction).
    pub(super) fn parameter_records(&self, out: &mut Vec<Record>) {
        for ((vhost, component, name), value) in &self.parameters {
            out.push(Record::ParameterSet {
                vhost: vhost.clone(),
                component: component.clone(),
                name: name.clone(),
                value: value.to_string(),
            });
        }
    }
}
