//! The shovel plugin's rabbitmqctl commands: `shovel_status`,
//! `delete_shovel`, `restart_shovel`, over `/api/shovels…`. Shovels are
//! created with `set_parameter shovel …` (`params_cmds.rs`).

use super::client::{fail, seg, Client, Failure};
use super::table::{Column, Output};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum ShovelCommand {
    /// Lists the shovels and their state (name, vhost, type, state,
    /// source, destination, termination_reason, last_changed, forwarded).
    ShovelStatus,
    /// Deletes a shovel (clears its parameter).
    DeleteShovel {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        name: String,
    },
    /// Restarts a shovel (it reconnects to both ends).
    RestartShovel {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        name: String,
    },
}

fn path(vhost: &str, name: &str) -> String {
    format!("/api/shovels/vhost/{}/{}", seg(vhost), seg(name))
}

pub fn run(
    c: &Client,
    cmd: &ShovelCommand,
    out: &Output,
    say: &dyn Fn(String),
) -> Result<(), Failure> {
    match cmd {
        ShovelCommand::ShovelStatus => {
            say("Shovel status on node ...".to_string());
            let items = match c.get("/api/shovels")? {
                Value::Array(items) => items,
                other => return Err(fail(1, format!("not a list: {}", other))),
            };
            let cols: Vec<Column> = [
                ("name", "name"),
                ("vhost", "vhost"),
                ("type", "type"),
                ("state", "state"),
                ("source", "src_uri"),
                ("destination", "dest_uri"),
                ("termination_reason", "reason"),
                ("last_changed", "timestamp"),
                ("forwarded", "forwarded"),
            ]
            .iter()
            .map(|(n, p)| Column {
                name: n.to_string(),
                path: p.to_string(),
            })
            .collect();
            out.print(&cols, &items)
        }
        ShovelCommand::DeleteShovel { vhost, name } => {
            say(format!("Deleting shovel {} in vhost {}", name, vhost));
            c.delete(&path(vhost, name))
        }
        ShovelCommand::RestartShovel { vhost, name } => {
            say(format!(
                "Restarting dynamic shovel {} in vhost {}",
                name, vhost
            ));
            c.delete(&format!("{}/restart", path(vhost, name)))
        }
    }
}
