//! warren-loadgen: the bundled load generator for AMQP 0-9-1 brokers (warren,
//! RabbitMQ), and for AMQP 1.0 in `throughput10`. It speaks the protocols
//! itself over blocking std TCP, with the broker's own codecs, one thread and
//! one connection per producer/consumer (`fleet` alone runs non-blocking
//! sockets in a few event loops).
//!
//! Scenarios are subcommands, each in its own module with its own clap `Args`
//! (flattening [`CommonArgs`]) and a `run(args) -> exit code`:
//! - `throughput` ([`throughput`]): producers -> `--queues` queues (default
//!   exchange, or a direct/fanout/topic/headers exchange) -> consumers, msg/s.
//! - `throughput10` ([`throughput10`]): the same over AMQP 1.0, one sender
//!   -> one queue -> one receiver, settled or with outcomes and
//!   dispositions (workers in [`workers10`], connection in [`client10`]).
//! - `latency` ([`latency`]): one producer at a fixed rate -> one queue -> one
//!   consumer; end-to-end latency percentiles from the scheduled send time.
//! - `connections` ([`connections`]): many idle connections; open rate and
//!   the broker's memory per connection.
//! - `fleet` ([`fleet`]): many publisher connections at a low rate each
//!   (confirms) and many consumer connections, on a few event-loop threads
//!   (mio) instead of a thread per connection; latency, and the broker's
//!   CPU and memory per connection.
//! - `churn` ([`churn`]): connection, channel, queue and binding create +
//!   destroy rates.
//! - `fuzz` ([`fuzz`]): mutated sessions against a live broker while a
//!   canary client checks that it keeps serving (sessions in
//!   [`fuzz_session`]).
//!
//! Shared pieces: [`CommonArgs`] (`--uri`, `--json`, the start-up checks),
//! [`uri`] (AMQP URI), [`client`] (connection, handshake, frame walking,
//! admin calls), [`workers`] (producer/consumer loops, queue/exchange
//! topology, the stop flag with its errors), [`report`] (counters, CPU
//! time, number and JSON formatting, the final report and exit status).

mod churn;
// The AMQP 0-9-1 client, its socket and URIs live in the library (the
// shovels use them too); `crate::client` … keep naming them.
use warren::client::{self, amqp10 as client10, stream, uri};
mod connections;
mod fleet;
mod fuzz;
mod fuzz_session;
mod latency;
mod report;
mod throughput;
mod throughput10;
mod workers;
mod workers10;

use clap::{Parser, Subcommand};

use uri::AmqpUri;

/// Load generator for AMQP 0-9-1 (and 1.0) brokers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Producers publish to one queue as fast as allowed, consumers drain it;
    /// prints msg/s each second and a summary.
    Throughput(throughput::Args),
    /// One sender publishes to one queue over AMQP 1.0 as fast as link
    /// credit and session windows allow, one receiver drains it; settled,
    /// or with outcomes and accepted dispositions. Prints msg/s each second
    /// and a summary.
    Throughput10(throughput10::Args),
    /// One producer publishes at a fixed rate, one consumer measures the
    /// end-to-end latency (p50..p99.9, max) from each message's scheduled
    /// send time; prints p50/p99 each second and a summary.
    Latency(latency::Args),
    /// Opens many idle connections (with channels), holds them and reports
    /// the open rate and, with --pid, the broker's RSS growth per connection.
    Connections(connections::Args),
    /// Many publisher connections at a low rate each (confirms) and many
    /// consumer connections, served by a few event-loop threads; end-to-end
    /// and confirm latency, and with --pid the broker's CPU and memory per
    /// connection.
    Fleet(fleet::Args),
    /// Creates and destroys connections, channels, queues and bindings as
    /// fast as possible, one phase after the other; prints the rates.
    Churn(churn::Args),
    /// Sends mutated valid sessions (handshake, publish, consume, ack) over
    /// many connections while a canary client publishes with confirms and
    /// consumes; fails if the canary is disturbed or the broker stops
    /// accepting connections.
    Fuzz(fuzz::Args),
}

/// Options every scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Broker URI: amqp://user:password@host:port/vhost (vhost percent-encoded).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// CA bundle (PEM) the broker's certificate must chain to, for an
    /// `amqps://` URI.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl CommonArgs {
    /// The start-up checks of a scenario: `--uri` must parse and the
    /// scenario's own flags be valid (`flags_ok`; else `rule` says what they
    /// must be). Returns the URI, or None after printing the problem (exit
    /// status 2).
    pub fn validate(&self, flags_ok: bool, rule: &str) -> Option<AmqpUri> {
        let uri = match AmqpUri::parse(&self.uri) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("warren-loadgen: --uri: {e}");
                return None;
            }
        };
        if !flags_ok {
            eprintln!("warren-loadgen: {rule}");
            return None;
        }
        if uri.tls {
            let Some(ca) = &self.tls_ca else {
                eprintln!("warren-loadgen: an amqps:// --uri needs --tls-ca");
                return None;
            };
            if let Err(e) = stream::set_tls_ca(ca) {
                eprintln!("warren-loadgen: --tls-ca {e}");
                return None;
            }
        }
        Some(uri)
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Throughput(args) => throughput::run(args),
        Command::Throughput10(args) => throughput10::run(args),
        Command::Latency(args) => latency::run(args),
        Command::Connections(args) => connections::run(args),
        Command::Fleet(args) => fleet::run(args),
        Command::Churn(args) => churn::run(args),
        Command::Fuzz(args) => fuzz::run(args),
    };
    std::process::exit(code);
}
