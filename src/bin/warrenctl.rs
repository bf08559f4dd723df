//! `warrenctl`: rabbitmqctl's user, vhost, permission, limit and definitions
//! commands (same names, same argument order), over warren's management
//! HTTP API (src/http/). Exit code 0 on success; otherwise the server's
//! reason on stderr and a non-zero code (1: the server refused, 69: it could
//! not be reached, 64: bad arguments).

use base64::Engine;
use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::process::ExitCode;

/// warrenctl: manage a warren broker's users, vhosts, permissions, limits
/// and definitions (rabbitmqctl's commands, over the HTTP API).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Host of the broker's HTTP API.
    #[arg(long, global = true, env = "WARREN_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port of the broker's HTTP API.
    #[arg(
        long,
        alias = "http-port",
        global = true,
        env = "WARREN_HTTP_PORT",
        default_value_t = 15672
    )]
    port: u16,
    /// User to log in as (an administrator).
    #[arg(
        short = 'u',
        long,
        global = true,
        env = "WARREN_USER",
        default_value = "guest"
    )]
    username: String,
    /// That user's password. (Its own id: a command's `password` argument
    /// must not fill it.)
    #[arg(
        long = "password",
        id = "login_password",
        global = true,
        env = "WARREN_PASS",
        default_value = "guest"
    )]
    login_password: String,
    /// Print only the results, not what is being done.
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
enum Command {
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

/// Why a command failed, and its exit code.
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: String) -> Failure {
    Failure { code, message }
}

/// The broker's HTTP API.
struct Client {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// Percent-encodes one path segment (`/` is `%2F`).
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{:02X}", b));
        }
    }
    out
}

impl Client {
    fn new(cli: &Cli) -> Client {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cli.username, cli.login_password));
        let host = if cli.host.contains(':') && !cli.host.starts_with('[') {
            format!("[{}]", cli.host)
        } else {
            cli.host.clone()
        };
        Client {
            base: format!("http://{}:{}", host, cli.port),
            auth: format!("Basic {}", token),
            agent: ureq::AgentBuilder::new()
                .timeout(std::time::Duration::from_secs(60))
                .build(),
        }
    }

    /// One request; the body of a 2xx answer, or the failure.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, Failure> {
        let req = self
            .agent
            .request(method, &format!("{}{}", self.base, path))
            .set("Authorization", &self.auth);
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match res {
            Ok(r) => r
                .into_string()
                .map_err(|e| fail(1, format!("reading the answer: {}", e))),
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                let reason = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|j| {
                        let reason = match &j["reason"] {
                            Value::String(s) => s.clone(),
                            Value::Null => return None,
                            other => other.to_string(),
                        };
                        Some(format!(
                            "{} ({})",
                            reason,
                            j["error"].as_str().unwrap_or("error")
                        ))
                    })
                    .unwrap_or(text);
                Err(fail(
                    1,
                    format!("{} {}: {} {}", method, path, status, reason),
                ))
            }
            Err(e) => Err(fail(
                69,
                format!("cannot reach the HTTP API at {}: {}", self.base, e),
            )),
        }
    }

    fn get(&self, path: &str) -> Result<Value, Failure> {
        let text = self.call("GET", path, None)?;
        serde_json::from_str(&text).map_err(|e| fail(1, format!("GET {}: {}", path, e)))
    }

    fn put(&self, path: &str, body: &Value) -> Result<(), Failure> {
        self.call("PUT", path, Some(&body.to_string())).map(drop)
    }

    fn delete(&self, path: &str) -> Result<(), Failure> {
        self.call("DELETE", path, None).map(drop)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("Error:\n{}", f.message);
            ExitCode::from(f.code)
        }
    }
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

fn run(cli: &Cli) -> Result<(), Failure> {
    let c = Client::new(cli);
    let say = |s: String| {
        if !cli.quiet {
            println!("{}", s);
        }
    };
    match &cli.command {
        Command::AddUser { user, password } => {
            say(format!("Adding user \"{}\" ...", user));
            if c.get(&format!("/api/users/{}", seg(user))).is_ok() {
                return Err(fail(1, format!("user \"{}\" already exists", user)));
            }
            c.put(
                &format!("/api/users/{}", seg(user)),
                &json!({ "password": password, "tags": "" }),
            )
        }
        Command::DeleteUser { user } => {
            say(format!("Deleting user \"{}\" ...", user));
            c.delete(&format!("/api/users/{}", seg(user)))
        }
        Command::ChangePassword { user, password } => {
            say(format!("Changing password for user \"{}\" ...", user));
            let path = format!("/api/users/{}", seg(user));
            let tags = tags_of(&c.get(&path)?);
            c.put(&path, &json!({ "password": password, "tags": tags }))
        }
        Command::SetUserTags { user, tags } => {
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
        Command::ListUsers => {
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
        Command::AddVhost {
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
        Command::DeleteVhost { vhost } => {
            say(format!("Deleting vhost \"{}\" ...", vhost));
            c.delete(&format!("/api/vhosts/{}", seg(vhost)))
        }
        Command::ListVhosts => {
            say("Listing vhosts ...".into());
            let mut out = String::from("name\n");
            for v in c.get("/api/vhosts")?.as_array().into_iter().flatten() {
                out.push_str(v["name"].as_str().unwrap_or(""));
                out.push('\n');
            }
            print_out(&out)
        }
        Command::SetPermissions {
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
        Command::ClearPermissions { vhost, user } => {
            say(format!(
                "Clearing permissions for user \"{}\" in vhost \"{}\" ...",
                user, vhost
            ));
            c.delete(&format!("/api/permissions/{}/{}", seg(vhost), seg(user)))
        }
        Command::ListPermissions { vhost } => {
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
        Command::SetTopicPermissions {
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
        Command::SetVhostLimits { vhost, definition } => {
            say(format!("Applying limits to vhost \"{}\" ...", vhost));
            apply_limits(&c, &format!("/api/vhost-limits/{}", seg(vhost)), definition)
        }
        Command::SetUserLimits { user, definition } => {
            say(format!(
                "Setting user limits to \"{}\" for user \"{}\" ...",
                definition, user
            ));
            apply_limits(&c, &format!("/api/user-limits/{}", seg(user)), definition)
        }
        Command::ExportDefinitions { file } => {
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
        Command::ImportDefinitions { file } => {
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

fn print_out(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| fail(1, format!("stdout: {}", e)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(super::seg("/"), "%2F");
        assert_eq!(super::seg("a b/c.d"), "a%20b%2Fc.d");
    }
}
