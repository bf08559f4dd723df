//! Moving quorum-queue leaders, as RabbitMQ's `rabbitmq-upgrade drain` /
//! `revive` and `rabbitmq-queues rebalance`, over `/api/nodes/{node}/drain`
//! and `/api/rebalance/queues` (src/http/maintenance.rs).

use super::client::{fail, seg, Client, Failure};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum ClusterCommand {
    /// Moves every quorum queue the node leads to another in-sync member
    /// and keeps it from leading any, before its maintenance
    /// (`rabbitmq-upgrade drain`). The node: --node, else the one
    /// connected to.
    Drain {
        #[arg(long)]
        node: Option<String>,
    },
    /// Lets a drained node lead quorum queues again
    /// (`rabbitmq-upgrade revive`).
    Revive {
        #[arg(long)]
        node: Option<String>,
    },
    /// Spreads quorum-queue leaders over the running nodes
    /// (`rabbitmq-queues rebalance quorum`; `all` is the same here).
    Rebalance {
        #[arg(default_value = "quorum", value_parser = ["quorum", "all"])]
        queue_type: String,
    },
}

/// `node`, or the name of the node the API belongs to.
fn node_name(c: &Client, node: &Option<String>) -> Result<String, Failure> {
    if let Some(n) = node {
        return Ok(n.clone());
    }
    let o = c.get("/api/overview")?;
    o["node"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| fail(1, "the broker did not name its node".into()))
}

pub fn run(c: &Client, cmd: &ClusterCommand, say: &dyn Fn(String)) -> Result<(), Failure> {
    match cmd {
        ClusterCommand::Drain { node } => {
            let n = node_name(c, node)?;
            say(format!(
                "Will put node {n} into maintenance mode: quorum queue leaders move to other nodes"
            ));
            c.put(
                &format!("/api/nodes/{}/drain", seg(&n)),
                &serde_json::json!({}),
            )
        }
        ClusterCommand::Revive { node } => {
            let n = node_name(c, node)?;
            say(format!("Will take node {n} out of maintenance mode"));
            c.delete(&format!("/api/nodes/{}/drain", seg(&n)))
        }
        ClusterCommand::Rebalance { queue_type } => {
            say(format!(
                "Re-balancing leaders of {queue_type} queues across the running nodes"
            ));
            c.call("POST", "/api/rebalance/queues", Some("{}"))
                .map(|_| ())
        }
    }
}
