//! `warrenctl`: rabbitmqctl's commands (same names, same argument order,
//! same default columns) over warren's management HTTP API (src/http/):
//! users, vhosts, permissions, limits and definitions (`admin_cmds.rs`);
//! set_parameter, clear_parameter, list_parameters (`params_cmds.rs`);
//! shovel_status, delete_shovel, restart_shovel (`shovel_cmds.rs`);
//! list_queues, list_exchanges, list_bindings, list_connections,
//! list_channels, list_consumers, purge_queue, delete_queue,
//! close_connection, status, cluster_status (`inspect.rs`, printed by `table.rs`);
//! drain, revive, rebalance (`cluster_cmds.rs`). Exit code 0 on success; otherwise the server's
//! reason on stderr and a non-zero code (1: the server refused, 69: it could
//! not be reached, 64: bad arguments).

mod admin_cmds;
mod client;
mod cluster_cmds;
mod inspect;
mod params_cmds;
mod shovel_cmds;
mod table;

use clap::{Parser, Subcommand};
use client::{Client, Failure};
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
    /// List commands: leave out the header row.
    #[arg(long, global = true)]
    no_table_headers: bool,
    /// List commands: `table` (tab-separated, rabbitmqctl's default) or
    /// `json` (an array of objects).
    #[arg(long, global = true, default_value = "table", value_parser = ["table", "json"])]
    formatter: String,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    fn output(&self) -> table::Output {
        table::Output {
            headers: !self.no_table_headers,
            json: self.formatter == "json",
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Admin(admin_cmds::AdminCommand),
    #[command(flatten)]
    Inspect(inspect::InspectCommand),
    #[command(flatten)]
    Params(params_cmds::ParamsCommand),
    #[command(flatten)]
    Shovel(shovel_cmds::ShovelCommand),
    #[command(flatten)]
    Cluster(cluster_cmds::ClusterCommand),
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

fn run(cli: &Cli) -> Result<(), Failure> {
    let c = Client::new(&cli.host, cli.port, &cli.username, &cli.login_password);
    let say = |s: String| {
        if !cli.quiet {
            println!("{}", s);
        }
    };
    match &cli.command {
        Command::Admin(cmd) => admin_cmds::run(&c, cmd, &say),
        Command::Inspect(cmd) => inspect::run(&c, cmd, &cli.output(), &say),
        Command::Params(cmd) => params_cmds::run(&c, cmd, &cli.output(), &say),
        Command::Shovel(cmd) => shovel_cmds::run(&c, cmd, &cli.output(), &say),
        Command::Cluster(cmd) => cluster_cmds::run(&c, cmd, &say),
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every command (e.g. two
    /// arguments sharing a short flag), which otherwise fire only when that
    /// command runs.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
