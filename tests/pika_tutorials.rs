//! The six RabbitMQ tutorials (python/pika, the official client examples) as
//! self-checking scripts in `tests/pika/`, run against a real broker.
//!
//! Each `tests/pika/tutorialN_*.py` runs the tutorial's producer(s) and
//! consumer(s), checks what arrived and exits 0 (or non-zero with a message).
//! Producers connect to `--pub-port`, consumers to `--sub-port`: every tutorial
//! runs once on a 1-shard broker and once on a 2-shard broker with producers on
//! shard 0 and consumers on shard 1 (cross-shard routing).
//!
//! The scripts need pika, from the venv `common_python` makes.
//!
//! Against RabbitMQ (how the scripts are checked):
//! `WARREN_TEST_EXTERNAL_URI=amqp://guest:guest@127.0.0.1:5672/%2f cargo test --test pika_tutorials`
//! (both ports are then 5672). A script can also be run by hand:
//! `target/pyenv/bin/python tests/pika/tutorial1_hello.py --pub-port 5672 --sub-port 5672`.

mod common_python;
mod util;
use common_python::{package_dir, run_script};
use util::*;

fn scripts_dir() -> std::path::PathBuf {
    package_dir().join("tests").join("pika")
}

/// Runs `tests/pika/<script> --pub-port <pub_port> --sub-port <sub_port>`.
fn run_tutorial(script: &str, pub_port: u16, sub_port: u16) {
    let args = [
        "--pub-port".to_string(),
        pub_port.to_string(),
        "--sub-port".to_string(),
        sub_port.to_string(),
    ];
    run_script(&scripts_dir().join(script), &args);
}

/// All on one shard: producers and consumers on the same port.
fn one_shard(script: &str) {
    let broker = start_broker(1);
    run_tutorial(script, broker.port(), broker.port());
}

/// Producers on shard 0, consumers on shard 1.
fn cross_shard(script: &str) {
    let broker = start_broker(2);
    run_tutorial(script, broker.shard_port(0), broker.shard_port(1));
}

#[test]
fn tutorial1_hello_world() {
    one_shard("tutorial1_hello.py");
}

#[test]
fn tutorial1_hello_world_cross_shard() {
    cross_shard("tutorial1_hello.py");
}

#[test]
fn tutorial2_work_queues() {
    one_shard("tutorial2_work_queues.py");
}

#[test]
fn tutorial2_work_queues_cross_shard() {
    cross_shard("tutorial2_work_queues.py");
}

#[test]
fn tutorial3_publish_subscribe() {
    one_shard("tutorial3_pubsub.py");
}

#[test]
fn tutorial3_publish_subscribe_cross_shard() {
    cross_shard("tutorial3_pubsub.py");
}

#[test]
fn tutorial4_routing() {
    one_shard("tutorial4_routing.py");
}

#[test]
fn tutorial4_routing_cross_shard() {
    cross_shard("tutorial4_routing.py");
}

#[test]
fn tutorial5_topics() {
    one_shard("tutorial5_topics.py");
}

#[test]
fn tutorial5_topics_cross_shard() {
    cross_shard("tutorial5_topics.py");
}

#[test]
fn tutorial6_rpc() {
    one_shard("tutorial6_rpc.py");
}

#[test]
fn tutorial6_rpc_cross_shard() {
    cross_shard("tutorial6_rpc.py");
}
