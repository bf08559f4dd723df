//! rabbitmqctl's inspection and queue/connection commands: `list_queues`,
//! `list_exchanges`, `list_bindings`, `list_connections`, `list_channels`,
//! `list_consumers` (rabbitmqctl's info items as columns, its default
//! columns when none are given), `purge_queue`, `delete_queue`,
//! `close_connection` and `status`.
//!
//! Each info item is a field of the management API's object, most under
//! the same name; the few rabbitmqctl names that differ (`source_name`,
//! `pid`, `queue_name`, `channel_pid`…) are mapped in [`columns`].

use super::client::{fail, print_out, seg, Client, Failure};
use super::table::{Column, Output};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum InspectCommand {
    /// Lists queues (default columns: name messages).
    ListQueues {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        /// Info items, e.g. name durable messages consumers.
        columns: Vec<String>,
    },
    /// Lists exchanges (default columns: name type).
    ListExchanges {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        columns: Vec<String>,
    },
    /// Lists bindings (default: source_name source_kind destination_name
    /// destination_kind routing_key arguments).
    ListBindings {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        columns: Vec<String>,
    },
    /// Lists connections (default columns: user peer_host peer_port state).
    ListConnections { columns: Vec<String> },
    /// Lists channels (default: pid user consumer_count
    /// messages_unacknowledged).
    ListChannels { columns: Vec<String> },
    /// Lists consumers (default: queue_name channel_pid consumer_tag
    /// ack_required prefetch_count active arguments).
    ListConsumers {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        columns: Vec<String>,
    },
    /// Removes every ready message from a queue.
    PurgeQueue {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        queue: String,
    },
    /// Deletes a queue.
    DeleteQueue {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        queue: String,
        /// Only if it has no messages.
        #[arg(short = 'e', long)]
        if_empty: bool,
        /// Only if it has no consumers. (No `-u`: that is the login user.)
        #[arg(long)]
        if_unused: bool,
    },
    /// Closes a connection (its name as list_connections name shows it)
    /// with 320 CONNECTION_FORCED and the explanation.
    CloseConnection {
        connection: String,
        explanation: String,
    },
    /// The node's status: versions, uptime, memory, disk, alarms,
    /// listeners, totals.
    Status,
    /// The cluster's name, its nodes and which of them run.
    ClusterStatus,
}

/// What a list command may show: (info item, API field path); the first
/// `defaults` are shown when no column is given.
struct Items {
    all: &'static [(&'static str, &'static str)],
    defaults: usize,
}

const QUEUE_ITEMS: Items = Items {
    all: &[
        ("name", "name"),
        ("messages", "messages"),
        ("durable", "durable"),
        ("auto_delete", "auto_delete"),
        ("arguments", "arguments"),
        ("policy", "policy"),
        ("exclusive", "exclusive"),
        ("messages_ready", "messages_ready"),
        ("messages_unacknowledged", "messages_unacknowledged"),
        ("messages_ram", "messages_ram"),
        ("messages_persistent", "messages_persistent"),
        ("message_bytes", "message_bytes"),
        ("message_bytes_ready", "message_bytes_ready"),
        (
            "message_bytes_unacknowledged",
            "message_bytes_unacknowledged",
        ),
        ("message_bytes_ram", "message_bytes_ram"),
        ("message_bytes_persistent", "message_bytes_persistent"),
        ("head_message_timestamp", "head_message_timestamp"),
        ("consumers", "consumers"),
        ("consumer_utilisation", "consumer_utilisation"),
        ("consumer_capacity", "consumer_capacity"),
        ("memory", "memory"),
        ("state", "state"),
        ("type", "type"),
        ("vhost", "vhost"),
        ("node", "node"),
    ],
    defaults: 2,
};

const EXCHANGE_ITEMS: Items = Items {
    all: &[
        ("name", "name"),
        ("type", "type"),
        ("durable", "durable"),
        ("auto_delete", "auto_delete"),
        ("internal", "internal"),
        ("arguments", "arguments"),
        ("policy", "policy"),
        ("vhost", "vhost"),
    ],
    defaults: 2,
};

const BINDING_ITEMS: Items = Items {
    all: &[
        ("source_name", "source"),
        ("source_kind", "source_kind"),
        ("destination_name", "destination"),
        ("destination_kind", "destination_type"),
        ("routing_key", "routing_key"),
        ("arguments", "arguments"),
        ("vhost", "vhost"),
    ],
    defaults: 6,
};

const CONNECTION_ITEMS: Items = Items {
    all: &[
        ("user", "user"),
        ("peer_host", "peer_host"),
        ("peer_port", "peer_port"),
        ("state", "state"),
        ("name", "name"),
        ("pid", "name"),
        ("host", "host"),
        ("port", "port"),
        ("vhost", "vhost"),
        ("protocol", "protocol"),
        ("channels", "channels"),
        ("channel_max", "channel_max"),
        ("frame_max", "frame_max"),
        ("timeout", "timeout"),
        ("ssl", "ssl"),
        ("ssl_protocol", "ssl_protocol"),
        ("ssl_cipher", "ssl_cipher"),
        ("peer_cert_subject", "peer_cert_subject"),
        ("auth_mechanism", "auth_mechanism"),
        ("client_properties", "client_properties"),
        ("connected_at", "connected_at"),
        ("recv_oct", "recv_oct"),
        ("recv_cnt", "recv_cnt"),
        ("send_oct", "send_oct"),
        ("send_cnt", "send_cnt"),
        ("send_pend", "send_pend"),
        ("blocked_by", "blocked_by"),
        ("type", "type"),
        ("node", "node"),
    ],
    defaults: 4,
};

const CHANNEL_ITEMS: Items = Items {
    all: &[
        ("pid", "name"),
        ("user", "user"),
        ("consumer_count", "consumer_count"),
        ("messages_unacknowledged", "messages_unacknowledged"),
        ("name", "name"),
        ("connection", "connection_details.name"),
        ("number", "number"),
        ("vhost", "vhost"),
        ("transactional", "transactional"),
        ("confirm", "confirm"),
        ("messages_unconfirmed", "messages_unconfirmed"),
        ("messages_uncommitted", "messages_uncommitted"),
        ("acks_uncommitted", "acks_uncommitted"),
        ("prefetch_count", "prefetch_count"),
        ("global_prefetch_count", "global_prefetch_count"),
        ("state", "state"),
        ("node", "node"),
    ],
    defaults: 4,
};

const CONSUMER_ITEMS: Items = Items {
    all: &[
        ("queue_name", "queue.name"),
        ("channel_pid", "channel_details.name"),
        ("consumer_tag", "consumer_tag"),
        ("ack_required", "ack_required"),
        ("prefetch_count", "prefetch_count"),
        ("active", "active"),
        ("arguments", "arguments"),
        ("exclusive", "exclusive"),
        ("activity_status", "activity_status"),
    ],
    defaults: 7,
};

/// The columns asked for (or the defaults); an unknown info item is an
/// error, as in rabbitmqctl.
fn columns(items: &Items, asked: &[String]) -> Result<Vec<Column>, Failure> {
    // rabbitmqctl also takes the items comma-separated in one argument.
    let asked: Vec<&str> = asked
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if asked.is_empty() {
        return Ok(items.all[..items.defaults]
            .iter()
            .map(|(n, p)| Column {
                name: n.to_string(),
                path: p.to_string(),
            })
            .collect());
    }
    let unknown: Vec<&str> = asked
        .iter()
        .copied()
        .filter(|a| !items.all.iter().any(|(n, _)| n == a))
        .collect();
    if !unknown.is_empty() {
        let valid: Vec<&str> = items.all.iter().map(|(n, _)| *n).collect();
        return Err(fail(
            64,
            format!(
                "Invalid info item(s): {}. Valid items: {}",
                unknown.join(", "),
                valid.join(", ")
            ),
        ));
    }
    Ok(asked
        .iter()
        .map(|a| {
            let (n, p) = items.all.iter().find(|(n, _)| n == a).expect("checked");
            Column {
                name: n.to_string(),
                path: p.to_string(),
            }
        })
        .collect())
}

fn list(c: &Client, path: &str) -> Result<Vec<Value>, Failure> {
    match c.get(path)? {
        Value::Array(items) => Ok(items),
        other => Err(fail(1, format!("GET {}: not a list: {}", path, other))),
    }
}

pub fn run(
    c: &Client,
    cmd: &InspectCommand,
    out: &Output,
    say: &dyn Fn(String),
) -> Result<(), Failure> {
    use InspectCommand::*;
    match cmd {
        ListQueues {
            vhost,
            columns: cols,
        } => {
            let cols = columns(&QUEUE_ITEMS, cols)?;
            say(format!("Listing queues for vhost {} ...", vhost));
            out.print(&cols, &list(c, &format!("/api/queues/{}", seg(vhost)))?)
        }
        ListExchanges {
            vhost,
            columns: cols,
        } => {
            let cols = columns(&EXCHANGE_ITEMS, cols)?;
            say(format!("Listing exchanges for vhost {} ...", vhost));
            out.print(&cols, &list(c, &format!("/api/exchanges/{}", seg(vhost)))?)
        }
        ListBindings {
            vhost,
            columns: cols,
        } => {
            let cols = columns(&BINDING_ITEMS, cols)?;
            say(format!("Listing bindings for vhost {}...", vhost));
            let mut items = list(c, &format!("/api/bindings/{}", seg(vhost)))?;
            for b in &mut items {
                b["source_kind"] = Value::from("exchange");
            }
            out.print(&cols, &items)
        }
        ListConnections { columns: cols } => {
            let cols = columns(&CONNECTION_ITEMS, cols)?;
            say("Listing connections ...".into());
            out.print(&cols, &list(c, "/api/connections")?)
        }
        ListChannels { columns: cols } => {
            let cols = columns(&CHANNEL_ITEMS, cols)?;
            say("Listing channels ...".into());
            out.print(&cols, &list(c, "/api/channels")?)
        }
        ListConsumers {
            vhost,
            columns: cols,
        } => {
            let cols = columns(&CONSUMER_ITEMS, cols)?;
            say(format!("Listing consumers in vhost {} ...", vhost));
            out.print(&cols, &list(c, &format!("/api/consumers/{}", seg(vhost)))?)
        }
        PurgeQueue { vhost, queue } => {
            say(format!(
                "Purging queue '{}' in vhost '{}' ...",
                queue, vhost
            ));
            c.delete(&format!(
                "/api/queues/{}/{}/contents",
                seg(vhost),
                seg(queue)
            ))
        }
        DeleteQueue {
            vhost,
            queue,
            if_empty,
            if_unused,
        } => {
            say(format!(
                "Deleting queue '{}' on vhost '{}' ...",
                queue, vhost
            ));
            let mut path = format!("/api/queues/{}/{}", seg(vhost), seg(queue));
            let mut sep = '?';
            for (on, q) in [(*if_empty, "if-empty=true"), (*if_unused, "if-unused=true")] {
                if on {
                    path.push(sep);
                    path.push_str(q);
                    sep = '&';
                }
            }
            c.delete(&path)
        }
        CloseConnection {
            connection,
            explanation,
        } => {
            say(format!(
                "Closing connection {}, reason: {}...",
                connection, explanation
            ));
            c.call_with_headers(
                "DELETE",
                &format!("/api/connections/{}", seg(connection)),
                &[("X-Reason", explanation)],
            )
            .map(drop)
        }
        Status => status(c, out, say),
        ClusterStatus => cluster_status(c, out, say),
    }
}

/// rabbitmqctl cluster_status's sections: the cluster's name, its nodes
/// (every member is a disc node) and which of them run, from
/// `/api/overview` and `/api/nodes`.
fn cluster_status(c: &Client, out: &Output, say: &dyn Fn(String)) -> Result<(), Failure> {
    let overview = c.get("/api/overview")?;
    let nodes = match c.get("/api/nodes")? {
        Value::Array(n) => n,
        other => return Err(fail(1, format!("not a list: {}", other))),
    };
    let name = |n: &Value| n["name"].as_str().unwrap_or("").to_string();
    let mut all: Vec<String> = nodes.iter().map(name).collect();
    let mut running: Vec<String> = nodes
        .iter()
        .filter(|n| n["running"] == Value::Bool(true))
        .map(name)
        .collect();
    all.sort();
    running.sort();
    if out.json {
        let mut text = serde_json::to_string_pretty(&serde_json::json!({
            "cluster_name": overview["cluster_name"],
            "disk_nodes": all,
            "running_nodes": running,
        }))
        .unwrap_or_default();
        text.push('\n');
        return print_out(&text);
    }
    say(format!(
        "Cluster status of node {} ...",
        overview["node"].as_str().unwrap_or("")
    ));
    let mut text = format!(
        "Basics\n\nCluster name: {}\n\nDisk Nodes\n\n",
        overview["cluster_name"].as_str().unwrap_or("")
    );
    for n in &all {
        text.push_str(&format!("{n}\n"));
    }
    text.push_str("\nRunning Nodes\n\n");
    for n in &running {
        text.push_str(&format!("{n}\n"));
    }
    print_out(&text)
}

/// rabbitmqctl status's sections, from `/api/overview` and `/api/nodes`.
fn status(c: &Client, out: &Output, say: &dyn Fn(String)) -> Result<(), Failure> {
    let overview = c.get("/api/overview")?;
    let node_name = overview["node"].as_str().unwrap_or("").to_string();
    let node = c.get(&format!("/api/nodes/{}", seg(&node_name)))?;
    if out.json {
        let mut text = serde_json::to_string_pretty(&serde_json::json!({
            "overview": overview,
            "node": node,
        }))
        .unwrap_or_default();
        text.push('\n');
        return print_out(&text);
    }
    say(format!("Status of node {} ...", node_name));
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".into(),
        other => other.to_string(),
    };
    let mib = |v: &Value| format!("{:.4} MiB", v.as_f64().unwrap_or(0.0) / 1048576.0);
    let mut t = String::new();
    t.push_str("Basics\n\n");
    t.push_str(&format!("Cluster name: {}\n", s(&overview["cluster_name"])));
    t.push_str(&format!("Product name: {}\n", s(&overview["product_name"])));
    t.push_str(&format!(
        "Product version: {}\n",
        s(&overview["product_version"])
    ));
    t.push_str(&format!(
        "RabbitMQ version: {}\n",
        s(&overview["rabbitmq_version"])
    ));
    let uptime = node["uptime"].as_u64().unwrap_or(0) / 1000;
    t.push_str(&format!("Uptime (seconds): {}\n", uptime));
    t.push_str("\nAlarms\n\n");
    let mut alarms = Vec::new();
    if node["mem_alarm"].as_bool() == Some(true) {
        alarms.push("memory");
    }
    if node["disk_free_alarm"].as_bool() == Some(true) {
        alarms.push("disk");
    }
    if alarms.is_empty() {
        t.push_str("(none)\n");
    } else {
        for a in alarms {
            t.push_str(&format!("resource alarm: {}\n", a));
        }
    }
    t.push_str("\nMemory\n\n");
    t.push_str(&format!("Total memory used: {}\n", mib(&node["mem_used"])));
    t.push_str(&format!(
        "Memory high watermark: {}\n",
        mib(&node["mem_limit"])
    ));
    t.push_str("\nFree Disk Space\n\n");
    t.push_str(&format!(
        "Low free disk space watermark: {}\n",
        mib(&node["disk_free_limit"])
    ));
    t.push_str(&format!("Free disk space: {}\n", mib(&node["disk_free"])));
    t.push_str("\nFile Descriptors\n\n");
    t.push_str(&format!(
        "Total: {}, limit: {}\n",
        s(&node["fd_used"]),
        s(&node["fd_total"])
    ));
    t.push_str("\nListeners\n\n");
    for l in overview["listeners"].as_array().into_iter().flatten() {
        t.push_str(&format!(
            "Interface: {}, port: {}, protocol: {}\n",
            s(&l["ip_address"]),
            s(&l["port"]),
            s(&l["protocol"])
        ));
    }
    t.push_str("\nTotals\n\n");
    let totals = &overview["object_totals"];
    for k in [
        "connections",
        "channels",
        "queues",
        "consumers",
        "exchanges",
    ] {
        t.push_str(&format!("{}: {}\n", k, s(&totals[k])));
    }
    t.push_str(&format!(
        "messages: {}\n",
        s(&overview["queue_totals"]["messages"])
    ));
    print_out(&t)
}
