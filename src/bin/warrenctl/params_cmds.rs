//! rabbitmqctl's runtime parameter commands: `set_parameter`,
//! `clear_parameter`, `list_parameters` (columns component, name, value),
//! over `/api/parameters…`.

use super::client::{fail, seg, Client, Failure};
use super::table::{Column, Output};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum ParamsCommand {
    /// Sets a runtime parameter, e.g. `set_parameter shovel s1
    /// '{"src-uri": "amqp://", ...}'`.
    SetParameter {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        component: String,
        name: String,
        /// The value, as JSON.
        value: String,
    },
    /// Clears a runtime parameter.
    ClearParameter {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        component: String,
        name: String,
    },
    /// Lists the runtime parameters of a vhost (component name value).
    ListParameters {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
}

fn path(component: &str, vhost: &str, name: &str) -> String {
    format!(
        "/api/parameters/{}/{}/{}",
        seg(component),
        seg(vhost),
        seg(name)
    )
}

pub fn run(
    c: &Client,
    cmd: &ParamsCommand,
    out: &Output,
    say: &dyn Fn(String),
) -> Result<(), Failure> {
    match cmd {
        ParamsCommand::SetParameter {
            vhost,
            component,
            name,
            value,
        } => {
            say(format!(
                "Setting runtime parameter \"{}\" for component \"{}\" to \"{}\" in vhost \"{}\" ...",
                name, component, value, vhost
            ));
            let v: Value = serde_json::from_str(value)
                .map_err(|e| fail(1, format!("Could not parse JSON document: {}", e)))?;
            c.put(&path(component, vhost, name), &json!({ "value": v }))
        }
        ParamsCommand::ClearParameter {
            vhost,
            component,
            name,
        } => {
            say(format!(
                "Clearing runtime parameter \"{}\" for component \"{}\" on vhost \"{}\" ...",
                name, component, vhost
            ));
            c.delete(&path(component, vhost, name))
        }
        ParamsCommand::ListParameters { vhost } => {
            say(format!(
                "Listing runtime parameters for vhost \"{}\" ...",
                vhost
            ));
            let all = match c.get("/api/parameters")? {
                Value::Array(items) => items,
                other => return Err(fail(1, format!("not a list: {}", other))),
            };
            let mine: Vec<Value> = all
                .into_iter()
                .filter(|p| p["vhost"].as_str() == Some(vhost))
                .collect();
            let cols: Vec<Column> = ["component", "name", "value"]
                .iter()
                .map(|n| Column {
                    name: n.to_string(),
                    path: n.to_string(),
                })
                .collect();
            out.print(&cols, &mine)
        }
    }
}
