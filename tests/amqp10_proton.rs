//! AMQP 1.0 with Python clients, each scenario against a real broker on 2
//! shards: python-qpid-proton (Apache Qpid's C-based client) runs the
//! scenarios of `tests/amqp10/proton_scenarios.py` (pika declares their
//! queues over 0-9-1); RabbitMQ's own rabbitmq-amqp-python-client runs
//! `tests/amqp10/rabbitmq_amqp_client.py`, declaring everything over the
//! management link pair. The venv is `common_python`'s.
//!
//! A scenario by hand: `target/pyenv/bin/python tests/amqp10/proton_scenarios.py --port 5672 helloworld`
//! (for `anonymous_login`, start warren with `--anonymous-user guest`).

mod common_durable;
mod common_python;
use common_durable::{DataDir, Proc};
use common_python::{package_dir, run_script};

fn start() -> warren::BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = warren::Config::for_tests(2);
    config.anonymous_user = Some("guest".into());
    warren::start(config).expect("broker starts")
}

fn script(name: &str) -> std::path::PathBuf {
    package_dir().join("tests").join("amqp10").join(name)
}

fn scenario(name: &str) {
    let broker = start();
    run_script(
        &script("proton_scenarios.py"),
        &["--port".into(), broker.port().to_string(), name.into()],
    );
    broker.shutdown();
}

/// RabbitMQ's client library: its version check of our `open`, the
/// management link pair (declare, bind, queue info, unbind, delete),
/// publish outcomes (accepted, released), a consumer.
#[test]
fn rabbitmq_amqp_python_client() {
    let broker = start();
    run_script(
        &script("rabbitmq_amqp_client.py"),
        &["--port".into(), broker.port().to_string()],
    );
    broker.shutdown();
}

#[test]
fn streams_with_rabbitmq_amqp_python_client() {
    let broker = start();
    run_script(
        &script("streams_amqp10.py"),
        &["--port".into(), broker.port().to_string()],
    );
    broker.shutdown();
}

#[test]
fn proton_simple_send_and_receive() {
    scenario("simple_send_recv");
}

#[test]
fn proton_helloworld() {
    scenario("helloworld");
}

#[test]
fn proton_request_response_through_anonymous_relay() {
    scenario("request_response");
}

#[test]
fn proton_bodies_and_properties_round_trip() {
    scenario("body_types");
}

#[test]
fn proton_credit_one_gets_one() {
    scenario("credit_one");
}

#[test]
fn proton_sasl_anonymous() {
    scenario("anonymous_login");
}

#[test]
fn proton_wrong_password_is_refused() {
    scenario("bad_login");
}

/// Durable messages a 1.0 publisher saw accepted are there after SIGKILL
/// (the `warren` binary as a child process) and a restart.
#[test]
fn proton_durable_messages_survive_kill_9() {
    let dir = DataDir::new("amqp10-kill");
    let p = Proc::start(&dir.0);
    let port = p.port.to_string();
    let run = |name: &str, port: &str| {
        run_script(
            &script("proton_scenarios.py"),
            &["--port".into(), port.to_string(), name.into()],
        )
    };
    run("durable_publish", &port);
    p.kill9();
    let p = Proc::start(&dir.0);
    run("durable_consume", &p.port.to_string());
}
