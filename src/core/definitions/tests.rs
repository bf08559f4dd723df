//! Unit tests of `Definitions`: persistence through the definitions log.

use super::*;
use crate::protocol::FieldTable;
use crate::protocol::FieldValue;
use std::collections::HashSet;

/// The vhost `/` of a bootstrapped (or `new`) definitions: the first one.
const V: VhostId = VhostId(1);

/// Opens the definitions in `dir`, with the defaults of a fresh data dir.
fn open(dir: &Path, shards: usize) -> Definitions {
    let defs = Definitions::open(dir, shards).unwrap();
    defs.lock().bootstrap("guest", "guest").unwrap();
    defs
}

fn exchange(name: &str, durable: bool) -> ExchangeDef {
    ExchangeDef {
        vhost: V,
        name: name.into(),
        kind: ExchangeKind::Topic,
        durable,
        auto_delete: false,
        internal: false,
        args: FieldTable::default(),
    }
}

/// Declares a queue as `queue_declare` does, on `shard`.
fn queue(g: &mut Defs, name: &str, shard: u16, durable: bool, owner: Option<u64>) -> u64 {
    let store_id = if durable && owner.is_none() {
        g.next_store_id()
    } else {
        0
    };
    let mut args = FieldTable::default();
    args.insert("x-max-length", FieldValue::I32(7));
    g.add_queue(QueueDef {
        vhost: V,
        name: name.into(),
        queue: QueueRef {
            shard,
            slot: 99,
            gen: 5,
        },
        durable,
        auto_delete: false,
        exclusive_owner: owner,
        args,
        store_id,
        node: None,
    });
    store_id
}

fn bind(source: &str, dest: BindingDest) -> Binding {
    Binding::new(V, source.into(), dest, "k".into(), FieldTable::default())
}

fn q(n: &str) -> BindingDest {
    BindingDest::Queue(n.into())
}

fn x(n: &str) -> BindingDest {
    BindingDest::Exchange(n.into())
}

#[test]
fn durable_definitions_come_back_and_the_rest_does_not() {
    let tmp = crate::store::segments::test_dir("back");
    let dir = tmp.path().to_path_buf();
    let (id_d1, id_d2);
    {
        let defs = open(&dir, 2);
        let mut g = defs.lock();
        g.add_exchange(exchange("xd", true));
        g.add_exchange(exchange("xd2", true));
        g.add_exchange(exchange("xt", false));
        id_d1 = queue(&mut g, "qd1", 1, true, None);
        id_d2 = queue(&mut g, "qd2", 0, true, None);
        assert_eq!(queue(&mut g, "qt", 0, false, None), 0);
        assert_eq!(queue(&mut g, "qx", 0, true, Some(9)), 0);
        for b in [
            bind("xd", q("qd1")),
            bind("amq.direct", q("qd2")),
            bind("xd", x("xd2")),
            bind("xd", q("qt")),
            bind("xd", q("qx")),
            bind("xt", q("qd1")),
            bind("xd", x("xt")),
            bind("xt", x("xd")),
        ] {
            g.add_binding(b);
        }
        g.commit().unwrap();
    }
    let defs = open(&dir, 2);
    let mut g = defs.lock();
    let mut names: Vec<&str> = g
        .vh(V)
        .unwrap()
        .exchanges
        .keys()
        .map(|s| s.as_str())
        .collect();
    names.retain(|n| !n.is_empty() && !n.starts_with("amq."));
    names.sort();
    assert_eq!(names, ["xd", "xd2"]);
    let mut qs: Vec<(&str, u64, u16)> = g
        .vh(V)
        .unwrap()
        .queues
        .values()
        .map(|d| (d.name.as_str(), d.store_id, d.queue.shard))
        .collect();
    qs.sort();
    assert_eq!(qs, [("qd1", id_d1, 1), ("qd2", id_d2, 0)]);
    let qd1 = g.queue(V, "qd1").unwrap();
    assert!(qd1.durable && qd1.exclusive_owner.is_none());
    assert_eq!(
        qd1.args.get("x-max-length").and_then(|v| v.as_i64()),
        Some(7)
    );
    assert_eq!(qd1.queue.gen, RECOVERED_GEN);
    let want: HashSet<Binding> = [
        bind("xd", q("qd1")),
        bind("amq.direct", q("qd2")),
        bind("xd", x("xd2")),
    ]
    .into_iter()
    .collect();
    assert_eq!(g.vh(V).unwrap().bindings, want);
    // Each shard gets its own recovered queues, at slots from 0.
    let r0 = g.take_recovered(0);
    let r1 = g.take_recovered(1);
    assert_eq!(r0.len(), 1);
    assert_eq!((r0[0].name.as_str(), r0[0].queue.slot), ("qd2", 0));
    assert_eq!((r1[0].name.as_str(), r1[0].queue.slot), ("qd1", 0));
    assert!(g.take_recovered(1).is_empty(), "taken once");
    // Ids are never handed out twice.
    assert!(g.next_store_id() > id_d1.max(id_d2));
    // Shards replay the recovered state from the change log.
    let mut ev = Vec::new();
    g.take_events(0, 0, &mut ev);
    let added = |n: &str| {
        ev.iter()
            .any(|e| matches!(e, DefEvent::QueueAdded { name, .. } if name == n))
    };
    assert!(added("qd1") && added("qd2"));
    drop(g);
    drop(defs);
}

#[test]
fn deletes_persist_and_ids_survive_compaction() {
    let tmp = crate::store::segments::test_dir("del");
    let dir = tmp.path().to_path_buf();
    let mut last_id = 0;
    {
        let defs = open(&dir, 1);
        let mut g = defs.lock();
        g.add_exchange(exchange("xd", true));
        g.add_exchange(exchange("xgone", true));
        queue(&mut g, "keep", 0, true, None);
        queue(&mut g, "unbound", 0, true, None);
        g.add_binding(bind("xd", q("keep")));
        g.add_binding(bind("xd", q("unbound")));
        g.add_binding(bind("xgone", q("keep")));
        // Churn: enough records to trigger compaction at the next boot.
        for i in 0..1500 {
            last_id = queue(&mut g, &format!("tmp{}", i), 0, true, None);
            let r = g.queue(V, &format!("tmp{}", i)).unwrap().queue;
            g.remove_queue(V, &format!("tmp{}", i), r);
        }
        g.remove_binding(&bind("xd", q("unbound")));
        g.remove_exchange(V, "xgone");
        g.commit().unwrap();
    }
    let len_before = std::fs::metadata(dir.join("definitions.log"))
        .unwrap()
        .len();
    {
        let defs = open(&dir, 1);
        let mut g = defs.lock();
        let len_after = std::fs::metadata(dir.join("definitions.log"))
            .unwrap()
            .len();
        assert!(
            len_after < len_before / 10,
            "compacted {} → {}",
            len_before,
            len_after
        );
        assert!(
            g.vh(V).unwrap().exchanges.contains_key("xd")
                && !g.vh(V).unwrap().exchanges.contains_key("xgone")
        );
        assert_eq!(g.vh(V).unwrap().queues.len(), 2);
        let want: HashSet<Binding> = [bind("xd", q("keep"))].into_iter().collect();
        assert_eq!(g.vh(V).unwrap().bindings, want);
        // The highest id belonged to a deleted queue: still not reused.
        assert_eq!(g.next_store_id(), last_id + 1);
        let keep = g.queue(V, "keep").unwrap().queue;
        g.remove_queue(V, "keep", keep);
        g.commit().unwrap();
    }
    // After compaction the log keeps working: appends, then replay.
    let defs = open(&dir, 3);
    let mut g = defs.lock();
    assert_eq!(
        g.vh(V).unwrap().queues.keys().collect::<Vec<_>>(),
        ["unbound"]
    );
    assert!(g.vh(V).unwrap().bindings.is_empty());
    // (The id taken above went to no queue, so it may come again.)
    assert_eq!(g.next_store_id(), last_id + 1);
    drop(g);
    drop(defs);
}

#[test]
fn a_changed_shard_count_wraps_homes() {
    let tmp = crate::store::segments::test_dir("shards");
    let dir = tmp.path().to_path_buf();
    {
        let defs = open(&dir, 4);
        let mut g = defs.lock();
        for s in 0..4 {
            queue(&mut g, &format!("q{}", s), s, true, None);
        }
    }
    let defs = open(&dir, 3);
    let mut g = defs.lock();
    let home = |g: &Defs, n: &str| g.queue(V, n).unwrap().queue;
    assert_eq!(home(&g, "q3").shard, 0);
    assert_eq!(home(&g, "q2").shard, 2);
    let mut slots: Vec<(u16, u32)> = (0..4)
        .map(|s| home(&g, &format!("q{}", s)))
        .map(|r| (r.shard, r.slot))
        .collect();
    slots.sort();
    assert_eq!(slots, [(0, 0), (0, 1), (1, 0), (2, 0)]);
    assert_eq!(g.take_recovered(0).len(), 2);
    drop(g);
    drop(defs);
}

#[test]
fn in_memory_definitions_write_nothing() {
    let defs = Definitions::new(1);
    let mut g = defs.lock();
    g.add_exchange(exchange("xd", true));
    assert_eq!(queue(&mut g, "qd", 0, true, None), 1);
    assert!(g.commit().is_ok());
    assert!(g.persist.is_none());
}

#[test]
fn connections_of_one_user_share_their_rights_until_a_change() {
    use crate::core::auth::permissions::{Access, Permission};
    let defs = Definitions::new(1);
    {
        let mut g = defs.lock();
        g.bootstrap("guest", "guest").unwrap();
    }
    let v = defs.auth_version();
    let mut g = defs.lock();
    let a = g.shared_access("guest", "/", v).unwrap();
    let b = g.shared_access("guest", "/", v).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "one compiled copy per user and vhost");
    assert!(a.allows(Access::Write, "q"));
    g.set_permissions(
        "guest",
        "/",
        Permission {
            configure: ".*".into(),
            write: "^only$".into(),
            read: ".*".into(),
        },
    )
    .unwrap();
    let v2 = g.auth_version();
    assert_ne!(v, v2);
    let c = g.shared_access("guest", "/", v2).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(!c.allows(Access::Write, "q"));
    assert!(c.allows(Access::Write, "only"));
}

#[test]
fn parameters_are_set_replaced_cleared_and_come_back() {
    use serde_json::json;
    let tmp = crate::store::segments::test_dir("params");
    let dir = tmp.path().to_path_buf();
    {
        let defs = open(&dir, 1);
        let v0 = defs.parameters_version();
        let mut g = defs.lock();
        g.put_vhost("vh", VhostMeta::default()).unwrap();
        assert!(g
            .set_parameter("vh", "shovel", "b", json!({"n": 1}))
            .unwrap());
        assert!(!g
            .set_parameter("vh", "shovel", "b", json!({"n": 2}))
            .unwrap());
        assert!(g
            .set_parameter("/", "shovel", "z", json!([1, "x"]))
            .unwrap());
        assert!(g.set_parameter("vh", "other", "a", json!("s")).unwrap());
        assert!(g.set_parameter("/", "shovel", "gone", json!(null)).unwrap());
        g.clear_parameter("/", "shovel", "gone").unwrap();
        assert!(matches!(
            g.clear_parameter("/", "shovel", "gone"),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            g.set_parameter("nope", "shovel", "x", json!({})),
            Err(CoreError::NotFound(_))
        ));
        g.commit().unwrap();
        drop(g);
        assert!(defs.parameters_version() > v0);
        let v1 = defs.parameters_version();
        drop(defs.lock());
        assert_eq!(defs.parameters_version(), v1, "a lock alone moves nothing");
    }
    let defs = open(&dir, 1);
    let g = defs.lock();
    let got: Vec<(String, String, String, serde_json::Value)> = g
        .parameters()
        .into_iter()
        .map(|p| (p.vhost, p.component, p.name, p.value))
        .collect();
    let t = |v: &str, c: &str, n: &str, x| (v.to_string(), c.to_string(), n.to_string(), x);
    assert_eq!(
        got,
        [
            t("/", "shovel", "z", json!([1, "x"])),
            t("vh", "other", "a", json!("s")),
            t("vh", "shovel", "b", json!({"n": 2})),
        ]
    );
    assert_eq!(g.parameter("vh", "shovel", "b"), Some(&json!({"n": 2})));
    // Compaction keeps them.
    let live = g.live_records();
    let kept = live
        .iter()
        .filter(|r| matches!(r, Record::ParameterSet { .. }))
        .count();
    assert_eq!(kept, 3);
}

#[test]
fn deleting_a_vhost_clears_its_parameters_durably() {
    use serde_json::json;
    let tmp = crate::store::segments::test_dir("params-vh");
    let dir = tmp.path().to_path_buf();
    {
        let defs = open(&dir, 1);
        let mut g = defs.lock();
        let (id, _) = g.put_vhost("vh", VhostMeta::default()).unwrap();
        g.set_parameter("vh", "shovel", "s", json!({})).unwrap();
        g.set_parameter("/", "shovel", "s", json!({})).unwrap();
        g.commit().unwrap();
        drop(g);
        let v = defs.parameters_version();
        let mut g = defs.lock();
        g.remove_vhost(id);
        g.commit().unwrap();
        assert_eq!(g.parameters().len(), 1);
        drop(g);
        assert!(defs.parameters_version() > v);
        // A new namesake starts without them.
        let mut g = defs.lock();
        g.put_vhost("vh", VhostMeta::default()).unwrap();
        g.commit().unwrap();
    }
    let defs = open(&dir, 1);
    let g = defs.lock();
    let left: Vec<String> = g.parameters().into_iter().map(|p| p.vhost).collect();
    assert_eq!(left, ["/"]);
}

#[test]
fn setting_the_same_value_again_changes_nothing() {
    use serde_json::json;
    let defs = Definitions::new(1);
    assert!(defs
        .lock()
        .set_parameter("/", "shovel", "s", json!({"a": 1}))
        .unwrap());
    let v = defs.parameters_version();
    assert!(!defs
        .lock()
        .set_parameter("/", "shovel", "s", json!({"a": 1}))
        .unwrap());
    assert_eq!(defs.parameters_version(), v);
    assert!(!defs
        .lock()
        .set_parameter("/", "shovel", "s", json!({"a": 2}))
        .unwrap());
    assert_eq!(defs.parameters_version(), v + 1);
}
