//! Shared helpers for the integration tests: start a real broker (in-process, on
//! ephemeral ports, real TCP) and hand out AMQP URIs for it.
//!
//! Set `WARREN_TEST_EXTERNAL_URI=amqp://guest:guest@127.0.0.1:5672/%2f` to run a test file
//! against another broker (e.g. a local RabbitMQ) instead — that is how the tests
//! themselves are checked against the reference implementation.
#![allow(dead_code)]

use std::time::Duration;

/// A broker started for one test; stopped when dropped.
pub struct TestBroker {
    handle: Option<warren::BrokerHandle>,
    external: Option<String>,
}

/// Starts a broker with `shards` shard threads on ephemeral loopback ports.
/// Each shard also gets its own port (`shard_uri`) so a test can force a
/// connection onto a given shard.
pub fn start_broker(shards: usize) -> TestBroker {
    if let Ok(uri) = std::env::var("WARREN_TEST_EXTERNAL_URI") {
        return TestBroker {
            handle: None,
            external: Some(uri),
        };
    }
    // RUST_LOG=debug shows the broker's log in a failing test's output.
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = warren::Config::for_tests(shards);
    config.heartbeat = 60;
    let handle = warren::start(config).expect("broker starts");
    TestBroker {
        handle: Some(handle),
        external: None,
    }
}

impl TestBroker {
    /// The main listener's port (connections are spread over shards by the kernel).
    pub fn port(&self) -> u16 {
        match &self.handle {
            Some(h) => h.port(),
            None => 5672,
        }
    }

    /// URI of the main listener.
    /// The in-process broker (None against an external broker).
    pub fn handle(&self) -> Option<&warren::BrokerHandle> {
        self.handle.as_ref()
    }

    /// Running against an external broker (`WARREN_TEST_EXTERNAL_URI`).
    #[allow(dead_code)]
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    pub fn uri(&self) -> String {
        match &self.external {
            Some(u) => u.clone(),
            None => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port()),
        }
    }

    /// Port whose connections are always served by shard `shard`.
    pub fn shard_port(&self, shard: usize) -> u16 {
        match &self.handle {
            Some(h) => h.shard_ports()[shard],
            None => 5672,
        }
    }

    /// URI whose connections are always served by shard `shard`.
    pub fn shard_uri(&self, shard: usize) -> String {
        match &self.external {
            Some(u) => u.clone(),
            None => format!(
                "amqp://guest:guest@127.0.0.1:{}/%2f",
                self.shard_port(shard)
            ),
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// Polls `f` every 10 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}
