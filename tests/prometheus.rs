//! The Prometheus endpoint (`--prometheus-port`), scraped over HTTP after
//! known traffic from a real AMQP client (lapin). The exposition text is
//! parsed by a small strict parser (every line well formed, `# TYPE` and
//! `# HELP` before a family's samples, families contiguous, no duplicate
//! series); the numbers are exact; every metric and label the Grafana
//! "RabbitMQ-Overview" dashboard's PromQL uses exists
//! (tests/fixtures/mgmt/grafana-rabbitmq-overview.json); and the types and
//! help texts are those of RabbitMQ's plugin where both have a family
//! (tests/fixtures/mgmt/prometheus-metrics*.txt, RabbitMQ 3.10.8).

mod common_http;
mod common_lapin;

use common_http::*;
use common_lapin::*;
use lapin::options::*;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::{BTreeMap, HashMap, HashSet};
use warren::{BrokerHandle, Config};

fn broker(config: Config) -> (BrokerHandle, Api) {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = warren::start(config).expect("broker starts");
    let port = b
        .prometheus_port()
        .expect("the Prometheus endpoint runs in tests");
    (b, Api::new(port).as_user(None))
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the series `name{labels}` (labels: all of them).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    fn names(&self) -> HashSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }

    fn label_names(&self) -> HashSet<&str> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.keys().map(String::as_str))
            .collect()
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to (histograms and summaries have suffixed
/// series).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base;
            }
        }
    }
    name
}

/// `{k="v",…}`: the labels and the rest of the line.
fn parse_labels(s: &str, line: usize) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let eq = rest
            .find("=\"")
            .unwrap_or_else(|| panic!("line {line}: label without =\""));
        let key = &rest[..eq];
        assert!(valid_name(key), "line {line}: bad label name {key:?}");
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("line {line}: bad escape {other:?}"),
                },
                Some((i, '"')) => break eq + 2 + i + 1,
                Some((_, c)) => value.push(c),
                None => panic!("line {line}: unterminated label value"),
            }
        };
        assert!(
            labels.insert(key.to_string(), value).is_none(),
            "line {line}: label {key} twice"
        );
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the text exposition format 0.0.4, strictly.
fn parse(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut e = Exposition::default();
    let mut done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    let mut enter = |family: &str, current: &mut Option<String>, line: usize| {
        if current.as_deref() != Some(family) {
            if let Some(c) = current.take() {
                done.insert(c);
            }
            assert!(
                !done.contains(family),
                "line {line}: family {family} is not contiguous"
            );
            *current = Some(family.to_string());
        }
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("line {n}: {line}"));
            assert!(valid_name(name), "line {n}: bad name {name}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "line {n}: bad type {kind}"
            );
            assert!(
                !e.types.contains_key(name),
                "line {n}: second TYPE for {name}"
            );
            enter(name, &mut current, n);
            e.types.insert(name.to_string(), kind.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("line {n}: {line}"));
            assert!(valid_name(name), "line {n}: bad name {name}");
            assert!(!help.is_empty(), "line {n}: empty help");
            enter(name, &mut current, n);
            assert!(
                e.helps.insert(name.to_string(), help.to_string()).is_none(),
                "line {n}: second HELP"
            );
        } else {
            assert!(!line.starts_with('#'), "line {n}: unknown comment {line}");
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("line {n}: {line}"));
            let name = &line[..name_end];
            assert!(valid_name(name), "line {n}: bad metric name {name}");
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end + 1..], n)
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let value = rest
                .strip_prefix(' ')
                .unwrap_or_else(|| panic!("line {n}: no value"));
            let value: f64 = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("line {n}: bad value {v:?}")),
            };
            let family = family_of(name, &e.types).to_string();
            assert!(
                e.types.contains_key(&family),
                "line {n}: {name} has no TYPE before it"
            );
            assert!(
                e.helps.contains_key(&family),
                "line {n}: {name} has no HELP before it"
            );
            enter(&family, &mut current, n);
            assert!(
                series.insert((name.to_string(), labels.clone())),
                "line {n}: duplicate series"
            );
            e.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    e
}

fn scrape(api: &Api, path: &str) -> Exposition {
    let a = api.get(path);
    assert_eq!(a.status, 200, "GET {path}: {a:?}");
    parse(&a.body)
}

/// Publishes 7 messages to queue `q` and one unroutable, in confirm mode;
/// the channel stays open (lapin closes a channel when it is dropped).
async fn traffic(b: &BrokerHandle) -> (Connection, lapin::Channel, String) {
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2F", b.port());
    let conn = within(Connection::connect(
        &uri,
        ConnectionProperties::default().with_connection_name("prom".into()),
    ))
    .await
    .unwrap();
    let ch = channel(&conn).await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    let q = "q".to_string();
    declare(&ch, &q).await;
    // 5 small and 2 larger messages, then one unroutable.
    for size in [50, 50, 50, 50, 50, 500, 500] {
        let body = vec![b'x'; size];
        let c = within(ch.basic_publish(
            "",
            &q,
            Default::default(),
            &body,
            BasicProperties::default(),
        ))
        .await
        .unwrap();
        assert!(within(c).await.unwrap().is_ack());
    }
    let c = within(ch.basic_publish(
        "",
        "nowhere",
        Default::default(),
        b"y",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    within(c).await.unwrap();
    (conn, ch, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    deadline(30, async {
        let (b, prom) = broker(Config::for_tests(2));
        let fresh = scrape(&prom, "/metrics");
        assert_eq!(fresh.get("rabbitmq_queues", &[]), 0.0);
        let (conn, _ch, q) = traffic(&b).await;
        let p = [("protocol", "amqp091")];
        let pq = [
            ("protocol", "amqp091"),
            ("queue_type", "rabbit_classic_queue"),
        ];

        let per = scrape(&prom, "/metrics/per-object");
        let ql = [("vhost", "/"), ("queue", q.as_str())];
        assert_eq!(per.get("rabbitmq_queue_messages", &ql), 7.0);
        assert_eq!(per.get("rabbitmq_queue_messages_ready", &ql), 7.0);
        assert_eq!(per.get("rabbitmq_queue_messages_unacked", &ql), 0.0);
        assert_eq!(per.get("rabbitmq_queue_messages_ready_bytes", &ql), 1250.0);
        assert_eq!(per.get("rabbitmq_queue_messages_published_total", &ql), 7.0);
        assert_eq!(per.get("rabbitmq_queue_messages_delivered_total", &ql), 0.0);
        // warren's latency histograms: 7 confirms timed on the queue, none
        // delivered yet (an empty histogram of a queue is left out).
        let confirm_inf = [("vhost", "/"), ("queue", q.as_str()), ("le", "+Inf")];
        assert_eq!(
            per.get(
                "rabbitmq_queue_publish_to_confirm_seconds_bucket",
                &confirm_inf
            ),
            7.0
        );
        assert_eq!(
            per.get("rabbitmq_queue_publish_to_confirm_seconds_count", &ql),
            7.0
        );
        assert_eq!(
            per.value("rabbitmq_queue_time_in_queue_seconds_count", &ql),
            None,
            "nothing delivered: no time-in-queue series"
        );
        assert_eq!(
            per.types["rabbitmq_queue_time_in_queue_seconds"], "histogram",
            "the family is declared even when empty"
        );
        assert_eq!(per.get("rabbitmq_queues", &[]), 1.0);
        assert_eq!(per.get("rabbitmq_connections", &[]), 1.0);
        assert_eq!(per.get("rabbitmq_channels", &[]), 1.0);
        assert_eq!(per.get("rabbitmq_global_messages_received_total", &p), 8.0);
        assert_eq!(
            per.get("rabbitmq_global_messages_received_confirm_total", &p),
            8.0
        );
        assert_eq!(per.get("rabbitmq_global_messages_confirmed_total", &p), 8.0);
        assert_eq!(per.get("rabbitmq_global_messages_routed_total", &p), 7.0);
        assert_eq!(
            per.get("rabbitmq_global_messages_unroutable_dropped_total", &p),
            1.0
        );
        assert_eq!(
            per.get("rabbitmq_global_messages_unroutable_returned_total", &p),
            0.0
        );
        assert_eq!(per.get("rabbitmq_global_publishers", &p), 1.0);
        let chans: Vec<&Sample> = per
            .samples
            .iter()
            .filter(|s| s.name == "rabbitmq_channel_messages_published_total")
            .collect();
        assert_eq!(chans.len(), 1);
        assert!(
            chans[0].labels["channel"].ends_with(" (1)"),
            "{:?}",
            chans[0].labels
        );
        assert_eq!(chans[0].value, 8.0);
        // The message size histogram: cumulative buckets.
        let le = |v: &str| {
            per.get(
                "rabbitmq_message_size_bytes_bucket",
                &[("protocol", "amqp091"), ("le", v)],
            )
        };
        assert_eq!(le("100.0"), 6.0);
        assert_eq!(le("1000.0"), 8.0);
        assert_eq!(le("+Inf"), 8.0);
        assert_eq!(per.get("rabbitmq_message_size_bytes_count", &p), 8.0);
        assert_eq!(per.get("rabbitmq_message_size_bytes_sum", &p), 1251.0);

        // Two gets with manual ack, one without.
        let ch = channel(&conn).await;
        for _ in 0..2 {
            let m = get(&ch, &q, false).await.expect("a message");
            within(m.delivery.acker.ack(BasicAckOptions::default()))
                .await
                .unwrap();
        }
        get(&ch, &q, true).await.expect("a message");
        let agg = poll_for("two acks counted", async || {
            let e = scrape(&prom, "/metrics");
            // Acks are counted by the channel; the queue drops the messages
            // when the settles reach its shard: wait for both.
            (e.get("rabbitmq_global_messages_acknowledged_total", &pq) == 2.0
                && e.get("rabbitmq_queue_messages", &[]) == 4.0)
                .then_some(e)
        })
        .await;
        assert_eq!(
            agg.get("rabbitmq_queue_messages", &[]),
            4.0,
            "aggregated: no labels"
        );
        assert_eq!(
            agg.get(
                "rabbitmq_global_messages_delivered_get_manual_ack_total",
                &pq
            ),
            2.0
        );
        assert_eq!(
            agg.get("rabbitmq_global_messages_delivered_get_auto_ack_total", &pq),
            1.0
        );
        assert_eq!(
            agg.get("rabbitmq_global_messages_delivered_total", &pq),
            3.0
        );
        assert_eq!(
            agg.get(
                "rabbitmq_global_messages_delivered_total",
                &[
                    ("protocol", "amqp091"),
                    ("queue_type", "rabbit_quorum_queue")
                ]
            ),
            0.0
        );
        assert_eq!(agg.get("rabbitmq_channels_opened_total", &[]), 2.0);
        assert_eq!(agg.get("rabbitmq_queues_created_total", &[]), 1.0);
        assert_eq!(agg.get("rabbitmq_alarms_memory_used_watermark", &[]), 0.0);
        assert!(agg.get("rabbitmq_process_resident_memory_bytes", &[]) > 0.0);
        assert!(agg.get("rabbitmq_process_open_fds", &[]) > 0.0);
        assert!(agg.get("rabbitmq_erlang_uptime_seconds", &[]) >= 0.0);
        assert!(
            agg.samples.iter().all(|s| !s.labels.contains_key("queue")),
            "no per-object labels in /metrics"
        );
        let ident = |e: &Exposition| {
            let s: Vec<&Sample> = e
                .samples
                .iter()
                .filter(|s| s.name == "rabbitmq_identity_info")
                .collect();
            assert_eq!(s.len(), 1, "exactly one identity_info");
            s[0].labels["rabbitmq_endpoint"].clone()
        };
        assert_eq!(ident(&agg), "aggregated");
        assert_eq!(ident(&per), "per-object");

        // /metrics/detailed: only the families asked for, renamed.
        let d = scrape(
            &prom,
            "/metrics/detailed?family=queue_coarse_metrics&vhost=%2F",
        );
        assert_eq!(d.get("rabbitmq_detailed_queue_messages", &ql), 4.0);
        let names = d.names();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("rabbitmq_detailed_queue_messages")
                    || *n == "rabbitmq_identity_info"
                    || *n == "rabbitmq_build_info"),
            "{names:?}"
        );
        let d = scrape(
            &prom,
            "/metrics/detailed?family=queue_coarse_metrics&vhost=other",
        );
        assert_eq!(
            d.value("rabbitmq_detailed_queue_messages", &ql),
            None,
            "vhost filter"
        );
        let none = scrape(&prom, "/metrics/detailed");
        assert_eq!(
            none.names(),
            ["rabbitmq_identity_info", "rabbitmq_build_info"]
                .into_iter()
                .collect()
        );
        let unknown = prom.get("/metrics/nope");
        assert_eq!(
            (unknown.status, unknown.body.as_str()),
            (404, "Unknown Registry")
        );
        conn.close(200, "bye").await.ok();
        b.shutdown();
    })
    .await
}

fn fixture_text(name: &str) -> String {
    let path = format!("{}/tests/fixtures/mgmt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect(&path)
}

/// Every `rabbitmq_*` identifier in the dashboard's PromQL is a metric or a
/// label warren exposes, every `le` it selects exists, and the joins work:
/// one identity sample with the cluster, node and endpoint labels, which no
/// other series carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_overview_dashboard_finds_its_metrics() {
    deadline(30, async {
        let (b, prom) = broker(Config::for_tests(1));
        let (conn, _ch, _) = traffic(&b).await;
        let dashboard = fixture_text("grafana-rabbitmq-overview.json");
        let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
        let mut exprs = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        match (k.as_str(), v) {
                            ("expr" | "definition", serde_json::Value::String(s)) => {
                                out.push(s.clone())
                            }
                            _ => walk(v, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(&json, &mut exprs);
        assert!(
            exprs.len() >= 50,
            "the dashboard's queries: {}",
            exprs.len()
        );
        for path in ["/metrics", "/metrics/per-object"] {
            let e = scrape(&prom, path);
            let (names, labels) = (e.names(), e.label_names());
            let mut checked = 0;
            for expr in &exprs {
                for id in identifiers(expr) {
                    assert!(
                        names.contains(id.as_str()) || labels.contains(id.as_str()),
                        "{path}: `{id}` of `{expr}` is neither a metric nor a label"
                    );
                    checked += 1;
                }
                for le in le_values(expr) {
                    assert!(
                        e.value(
                            "rabbitmq_message_size_bytes_bucket",
                            &[("protocol", "amqp091"), ("le", &le)]
                        )
                        .is_some(),
                        "{path}: no bucket le=\"{le}\""
                    );
                }
            }
            assert!(checked > 100);
            let ident: Vec<&Sample> = e
                .samples
                .iter()
                .filter(|s| s.name == "rabbitmq_identity_info")
                .collect();
            assert_eq!(ident.len(), 1);
            for l in ["rabbitmq_cluster", "rabbitmq_node", "rabbitmq_endpoint"] {
                assert!(ident[0].labels.contains_key(l), "identity_info has {l}");
            }
            for s in e
                .samples
                .iter()
                .filter(|s| s.name != "rabbitmq_identity_info")
            {
                assert!(
                    !s.labels.contains_key("rabbitmq_cluster")
                        && !s.labels.contains_key("rabbitmq_node"),
                    "{} carries identity labels: the joins would fail",
                    s.name
                );
            }
            let build: Vec<&Sample> = e
                .samples
                .iter()
                .filter(|s| s.name == "rabbitmq_build_info")
                .collect();
            assert_eq!(build.len(), 1);
            assert_eq!(build[0].labels["rabbitmq_version"], "3.13.7");
            assert!(build[0].labels.contains_key("erlang_version"));
        }
        conn.close(200, "bye").await.ok();
        b.shutdown();
    })
    .await
}

/// `rabbitmq_[a-z_]+` identifiers of a PromQL expression.
fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("rabbitmq_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        // Only whole identifiers (not the middle of a longer word).
        let before = expr.len() - rest.len() + i;
        let whole = before == 0 || !expr.as_bytes()[before - 1].is_ascii_alphanumeric();
        if whole {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// The `le="…"` values an expression selects.
fn le_values(expr: &str) -> Vec<String> {
    expr.split("le=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(String::from))
        .collect()
}

/// Where warren and RabbitMQ (3.10.8 captures) both have a family, its type
/// and help text are RabbitMQ's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_and_help_are_rabbitmqs() {
    deadline(30, async {
        let (b, prom) = broker(Config::for_tests(1));
        let (conn, _ch, _) = traffic(&b).await;
        for (path, fixture) in [
            ("/metrics", "prometheus-metrics.txt"),
            ("/metrics/per-object", "prometheus-metrics-per-object.txt"),
        ] {
            let theirs = fixture_text(fixture);
            let mut types = HashMap::new();
            let mut helps = HashMap::new();
            for line in theirs.lines() {
                if let Some(r) = line.strip_prefix("# TYPE ") {
                    let (n, t) = r.split_once(' ').unwrap();
                    types.insert(n.to_string(), t.to_string());
                } else if let Some(r) = line.strip_prefix("# HELP ") {
                    let (n, h) = r.split_once(' ').unwrap();
                    helps.insert(n.to_string(), h.to_string());
                }
            }
            let ours = scrape(&prom, path);
            let mut shared = 0;
            for (name, kind) in &ours.types {
                if let Some(t) = types.get(name) {
                    assert_eq!(kind, t, "{path}: type of {name}");
                    shared += 1;
                }
                if let (Some(h), Some(ours_h)) = (helps.get(name), ours.helps.get(name)) {
                    // 3.13 kept 3.10's texts for these families.
                    assert_eq!(ours_h, h, "{path}: help of {name}");
                }
            }
            assert!(shared >= 50, "{path}: only {shared} families in common");
        }
        conn.close(200, "bye").await.ok();
        b.shutdown();
    })
    .await
}

/// No credentials needed, RabbitMQ's content type, and the endpoint runs
/// without the management API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_without_auth_and_without_the_api() {
    deadline(30, async {
        let (b, _) = broker(Config {
            http_port: None,
            ..Config::for_tests(1)
        });
        assert_eq!(b.http_port(), None);
        let port = b.prometheus_port().unwrap();
        let r = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
            .call()
            .expect("scrape");
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
        let text = r.into_string().unwrap();
        parse(&text);
        assert!(text.contains("\nrabbitmq_connections 0\n"));
        b.shutdown();
        let b = warren::start(Config {
            prometheus_port: None,
            ..Config::for_tests(1)
        })
        .unwrap();
        assert_eq!(b.prometheus_port(), None);
        assert!(b.http_port().is_some());
        b.shutdown();
    })
    .await
}
