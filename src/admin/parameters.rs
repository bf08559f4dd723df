//! Vhost runtime parameters for the tools (`/api/parameters…`, `warrenctl
//! set_parameter`, definitions import): validated as RabbitMQ's
//! `rabbit_runtime_parameters:set` does (`core::parameters::validate`),
//! then stored in the definitions and logged before the call returns.

use super::{Admin, AdminError, AdminResult};
use crate::core::definitions::Parameter;

impl Admin {
    /// Moves whenever a parameter is set or cleared (read without a lock:
    /// the shovel supervisor polls it).
    pub fn parameters_version(&self) -> u64 {
        self.defs.parameters_version()
    }

    /// Validates and sets a parameter as `acting_user` (the direct-URI
    /// access checks of a shovel are made for that user;
    /// `core::parameters::NO_USER` for none). Returns whether it was
    /// created. `NotFound` if the vhost does not exist; `BadRequest` with
    /// RabbitMQ's reason (not HTML-escaped) if the value is refused.
    pub fn set_parameter(
        &self,
        acting_user: &str,
        vhost: &str,
        component: &str,
        name: &str,
        value: serde_json::Value,
    ) -> AdminResult<bool> {
        let mut g = self.defs.lock_change();
        if g.vhost_id(vhost).is_none() {
            return Err(AdminError::NotFound(format!("no vhost '{}'", vhost)));
        }
        crate::core::parameters::validate(component, vhost, name, &value, acting_user, &g)
            .map_err(AdminError::BadRequest)?;
        let created = g.set_parameter(vhost, component, name, value)?;
        g.commit()?;
        if created {
            log::info!(
                "runtime parameter '{}' of component '{}' set in vhost '{}' by '{}'",
                name,
                component,
                vhost,
                acting_user
            );
        }
        Ok(created)
    }

    /// Clears a parameter; `NotFound` if there is none.
    pub fn clear_parameter(&self, vhost: &str, component: &str, name: &str) -> AdminResult<()> {
        let mut g = self.defs.lock_change();
        g.clear_parameter(vhost, component, name)?;
        g.commit()?;
        Ok(())
    }

    /// The parameters, optionally of one component and one vhost, sorted
    /// by vhost, component and name.
    pub fn list_parameters(&self, component: Option<&str>, vhost: Option<&str>) -> Vec<Parameter> {
        let mut all = self.defs.lock().parameters();
        all.retain(|p| {
            component.is_none_or(|c| p.component == c) && vhost.is_none_or(|v| p.vhost == v)
        });
        all
    }

    /// One parameter; `NotFound` if there is none.
    pub fn get_parameter(
        &self,
        vhost: &str,
        component: &str,
        name: &str,
    ) -> AdminResult<Parameter> {
        let g = self.defs.lock();
        let value = g.parameter(vhost, component, name).ok_or_else(|| {
            AdminError::NotFound(format!(
                "no parameter '{}' of component '{}' in vhost '{}'",
                name, component, vhost
            ))
        })?;
        Ok(Parameter {
            vhost: vhost.to_string(),
            component: component.to_string(),
            name: name.to_string(),
            value: value.clone(),
        })
    }
}
