//! AMQP 1.0 with python-qpid-proton (Apache Qpid's C-based client): the
//! scenarios of `tests/amqp10/proton_scenarios.py`, each against a real
//! broker on 2 shards. The venv is `common_python`'s (pika declares the
//! queues over 0-9-1, proton does the rest over 1.0).
//!
//! A scenario by hand: `target/pyenv/bin/python tests/amqp10/proton_scenarios.py --port 5672 helloworld`
//! (for `anonymous_login`, start warren with `--anonymous-user guest`).

mod common_python;
use common_python::{package_dir, run_script};

fn scenario(name: &str) {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = warren::Config::for_tests(2);
    config.anonymous_user = Some("guest".into());
    let broker = warren::start(config).expect("broker starts");
    let script = package_dir()
        .join("tests")
        .join("amqp10")
        .join("proton_scenarios.py");
    run_script(
        &script,
        &["--port".into(), broker.port().to_string(), name.into()],
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
