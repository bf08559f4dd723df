//! rabbitmqctl's user, vhost, permission, limit and definitions commands.

use super::client::{fail, print_out, seg, Client, Failure};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::io::Read;

#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum AdminCommand {
    /// Creates a user (no tags, no permissions).
    AddUser { user: String, password: String },
    /// Deletes a user.
    DeleteUser { user: String },
    /// Changes a user's password (its tags stay).
    ChangePassword { user: String, password: String },
    /// Sets a user's tags (none: clears them); its password stays.
    SetUserTags { user: String, tags: Vec<String> },
    /// Lists users and their tags.
    ListUsers,
    /// Creates a vhost.
    AddVhost {
        vhost: String,
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated tags.
        #[arg(long)]
        tags: Option<String>,
        #[arg(long)]
        default_queue_type: Option<String>,
    },
    /// Deletes a vhost, its queues and exchanges; closes its connections.
    DeleteVhost { vhost: String },
    /// Lists vhosts.
    ListVhosts,
    /// Sets a user's permissions in a vhost (three regular expressions).
    SetPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    /// Removes a user's permissions in a vhost.
    ClearPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
    },
    /// Lists the permissions in a vhost.
    ListPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// Sets a user's topic permission on one exchange of a vhost.
    SetTopicPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
        exchange: String,
        write: String,
        read: String,
    },
    /// Sets vhost limits, e.g. '{"max-connections": 10}' (negative clears).
    SetVhostLimits {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        definition: String,
    },
    /// Sets user limits, e.g. '{"max-channels": 10}' (negative clears).
    SetUserLimits { user: String, definition: String },
    /// Writes the broker's definitions to a file ('-': stdout).
    ExportDefinitions { file: String },
    /// Imports a definitions file ('-': stdin).
    ImportDefinitions { file: String },
}

/// `{"max-connections": 10}` as (name, value) pairs.
fn limits(definition: &str) -> Result<Vec<(String, i64)>, Failure> {
    let v: Value = serde_json::from_str(definition)
        .map_err(|e| fail(64, format!("limits must be a JSON object: {}", e)))?;
    let Value::Object(m) = v else {
        return Err(fail(64, "limits must be a JSON object".into()));
    };
    m.into_iter()
        .map(|(k, v)| match v.as_i64() {
            Some(n) => Ok((k, n)),
            None => Err(fail(
                64,
                format!("limit {} must be an integer, not {}", k, v),
            )),
        })
        .collect()
}

/// Applies limits: PUT for a value >= 0, DELETE for a negative one.
fn apply_limits(c: &Client, prefix: &str, definition: &str) -> Result<(), Failure> {
    for (name, value) in limits(definition)? {
        let path = format!("{}/{}", prefix, seg(&name));
        if value < 0 {
            c.delete(&path)?;
        } else {
            c.put(&path, &json!({ "value": value }))?;
        }
    }
    Ok(())
}

fn tags_of(user: &Value) -> Vec<String> {
    user["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn run(c: &Client, command: &AdminCommand, say: &dyn Fn(String)) -> Result<(), Failure> {
    match command {
        AdminCommand::AddUser { user, password } => {
            say(format!("Adding user \"{}\" ...", user));
            if c.get(&format!("/api/users/{}", seg(user))).is_ok() {
                return Err(fail(1, format!("user \"{}\" already exists", user)));
            }
            c.put(
                &format!("/api/users/{}", seg(user)),
                &json!({ "password": password, "tags": "" }),
            )
        }
        AdminCommand::DeleteUser { user } => {
            say(format!("Deleting user \"{}\" ...", user));
            c.delete(&format!("/api/users/{}", seg(user)))
        }
        AdminCommand::ChangePassword { user, password } => {
            say(format!("Changing password for user \"{}\" ...", user));
            let path = format!("/api/users/{}", seg(user));
            let tags = tags_of(&c.get(&path)?);
            c.put(&path, &json!({ "password": password, "tags": tags }))
        }
        AdminCommand::SetUserTags { user, tags } => {
            say(format!(
                "Setting tags for user \"{}\" to [{}] ...",
                user,
                tags.join(", ")
            ));
            let path = format!("/api/users/{}", seg(user));
            // A PUT without a password clears it (as in RabbitMQ): send the
            // stored hash back.
            let u = c.get(&path)?;
            c.put(
                &path,
                &json!({
                    "tags": tags,
                    "password_hash": u["password_hash"],
                    "hashing_algorithm": u["hashing_algorithm"],
                }),
            )
        }
        AdminCommand::ListUsers => {
            say("Listing users ...".into());
            let users = c.get("/api/users")?;
            let mut out = String::from("user\ttags\n");
            for u in users.as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{}\t[{}]\n",
                    u["name"].as_str().unwrap_or(""),
                    tags_of(u).join(", ")
                ));
            }
            print_out(&out)
        }
        AdminCommand::AddVhost {
            vhost,
            description,
            tags,
            default_queue_type,
        } => {
            say(format!("Adding vhost \"{}\" ...", vhost));
            let mut body = Map::new();
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(t) = tags {
                body.insert("tags".into(), json!(t));
            }
            if let Some(q) = default_queue_type {
                body.insert("default_queue_type".into(), json!(q));
            }
            c.put(&format!("/api/vhosts/{}", seg(vhost)), &Value::Object(body))
        }
        AdminCommand::DeleteVhost { vhost } => {
            say(format!("Deleting vhost \"{}\" ...", vhost));
            c.delete(&format!("/api/vhosts/{}", seg(vhost)))
        }
        AdminCommand::ListVhosts => {
            say("Listing vhosts ...".into());
            let mut out = String::from("name\n");
            for v in c.get("/api/vhosts")?.as_array().into_iter().flatten() {
                out.push_str(v["name"].as_str().unwrap_or(""));
                out.push('\n');
            }
            print_out(&out)
        }
        AdminCommand::SetPermissions {
            vhost,
            user,
            configure,
            write,
            read,
        } => {
            say(format!(
                "Setting permissions for user \"{}\" in vhost \"{}\" ...",
                user, vhost
            ));
            c.put(
                &format!("/api/permissions/{}/{}", seg(vhost), seg(user)),
                &json!({ "configure": configure, "write": write, "read": read }),
            )
        }
        AdminCommand::ClearPermissions { vhost, user } => {
            say(format!(
                "Clearing permissions for user \"{}\" in vhost \"{}\" ...",
                user, vhost
            ));
            c.delete(&format!("/api/permissions/{}/{}", seg(vhost), seg(user)))
        }
        AdminCommand::ListPermissions { vhost } => {
            say(format!("Listing permissions for vhost \"{}\" ...", vhost));
            let perms = c.get(&format!("/api/vhosts/{}/permissions", seg(vhost)))?;
            let mut out = String::from("user\tconfigure\twrite\tread\n");
            for p in perms.as_array().into_iter().flatten() {
                let f = |k: &str| p[k].as_str().unwrap_or("").to_string();
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    f("user"),
                    f("configure"),
                    f("write"),
                    f("read")
                ));
            }
            print_out(&out)
        }
        AdminCommand::SetTopicPermissions {
            vhost,
            user,
            exchange,
            write,
            read,
        } => {
            say(format!(
                "Setting topic permissions on \"{}\" for user \"{}\" in vhost \"{}\" ...",
                exchange, user, vhost
            ));
            c.put(
                &format!("/api/topic-permissions/{}/{}", seg(vhost), seg(user)),
                &json!({ "exchange": exchange, "write": write, "read": read }),
            )
        }
        AdminCommand::SetVhostLimits { vhost, definition } => {
            say(format!("Applying limits to vhost \"{}\" ...", vhost));
            apply_limits(&c, &format!("/api/vhost-limits/{}", seg(vhost)), definition)
        }
        AdminCommand::SetUserLimits { user, definition } => {
            say(format!(
                "Setting user limits to \"{}\" for user \"{}\" ...",
                definition, user
            ));
            apply_limits(&c, &format!("/api/user-limits/{}", seg(user)), definition)
        }
        AdminCommand::ExportDefinitions { file } => {
            let text = c.call("GET", "/api/definitions", None)?;
            if file == "-" {
                return print_out(&text);
            }
            say(format!(
                "Exporting definitions in JSON to a file at \"{}\" ...",
                file
            ));
            std::fs::write(file, text).map_err(|e| fail(1, format!("{}: {}", file, e)))
        }
        AdminCommand::ImportDefinitions { file } => {
            let mut text = String::new();
            if file == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| fail(1, format!("stdin: {}", e)))?;
            } else {
                say(format!(
                    "Importing definitions in JSON from a file at \"{}\" ...",
                    file
                ));
                text = std::fs::read_to_string(file)
                    .map_err(|e| fail(1, format!("{}: {}", file, e)))?;
            }
            c.call("POST", "/api/definitions", Some(&text)).map(drop)
        }
    }
}
