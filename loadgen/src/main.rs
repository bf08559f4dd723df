//! warren-loadgen: the bundled load generator. Its real work (throughput, latency,
//! connections, churn scenarios) is a later issue; today it only parses its flags.
use clap::Parser;

/// Load generator for AMQP 0-9-1 brokers.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Broker URI.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    uri: String,
}

fn main() {
    let args = Args::parse();
    eprintln!("warren-loadgen: scenarios are not implemented yet (uri {})", args.uri);
    std::process::exit(2);
}
