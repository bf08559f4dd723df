//! The cluster's etcd client (`warren::cluster::etcd`) against a real etcd
//! (Debian's etcd-server, installed by scripts/install-etcd.sh; without it
//! these tests say so and skip): keys, prefixes, transactions that create
//! only if absent, leases whose keys go when they are revoked or expire,
//! and endpoint fallback.

mod common_durable;
mod common_etcd;
use common_etcd::etcd;

use std::time::{Duration, Instant};
use warren::cluster::etcd::{Cmp, Compare, Etcd, Op};

#[test]
fn keys_prefixes_and_transactions() {
    let Some(p) = etcd() else { return };
    let e = Etcd::new(std::slice::from_ref(&p.url));
    assert_eq!(e.get(b"/w/a").unwrap(), None);
    let r1 = e.put(b"/w/a", b"1", 0).unwrap();
    let r2 = e.put(b"/w/b", b"\x00\xff binary", 0).unwrap();
    assert!(r2 > r1);
    e.put(b"/x/c", b"3", 0).unwrap();
    let a = e.get(b"/w/a").unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.version, a.mod_revision),
        (&b"1"[..], 1, r1)
    );
    let (kvs, rev) = e.range_prefix(b"/w/").unwrap();
    assert_eq!(
        kvs.iter().map(|k| k.key.as_slice()).collect::<Vec<_>>(),
        vec![&b"/w/a"[..], &b"/w/b"[..]]
    );
    assert_eq!(kvs[1].value, b"\x00\xff binary");
    assert!(rev >= r2);

    // Create only if absent: the second one loses, and runs its failure branch.
    let create = |v: &[u8]| {
        e.txn(
            &[Compare::Version(b"/w/leader".to_vec(), Cmp::Equal, 0)],
            &[Op::Put {
                key: b"/w/leader".to_vec(),
                value: v.to_vec(),
                lease: 0,
            }],
            &[Op::Put {
                key: b"/w/lost".to_vec(),
                value: v.to_vec(),
                lease: 0,
            }],
        )
        .unwrap()
    };
    assert!(create(b"n1").succeeded);
    assert!(!create(b"n2").succeeded);
    assert_eq!(e.get(b"/w/leader").unwrap().unwrap().value, b"n1");
    assert_eq!(e.get(b"/w/lost").unwrap().unwrap().value, b"n2");
    // Compare on value, and on the modification revision.
    let m = e.get(b"/w/leader").unwrap().unwrap().mod_revision;
    let t = e
        .txn(
            &[
                Compare::Value(b"/w/leader".to_vec(), Cmp::Equal, b"n1".to_vec()),
                Compare::ModRevision(b"/w/leader".to_vec(), Cmp::Equal, m),
            ],
            &[Op::DeletePrefix(b"/w/".to_vec())],
            &[],
        )
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(e.range_prefix(b"/w/").unwrap().0.len(), 0);
    assert_eq!(e.get(b"/x/c").unwrap().unwrap().value, b"3");
    assert_eq!(e.delete(b"/x/c").unwrap(), 1);
    assert_eq!(e.delete(b"/x/c").unwrap(), 0);
}

#[test]
fn leased_keys_go_with_their_lease() {
    let Some(p) = etcd() else { return };
    let e = Etcd::new(std::slice::from_ref(&p.url));
    let lease = e.grant(10).unwrap();
    e.put(b"/nodes/a", b"up", lease).unwrap();
    assert_eq!(e.get(b"/nodes/a").unwrap().unwrap().lease, lease);
    assert!(e.keep_alive(lease).unwrap() > 0);
    e.revoke(lease).unwrap();
    assert_eq!(e.get(b"/nodes/a").unwrap(), None);
    assert_eq!(
        e.keep_alive(lease).unwrap(),
        0,
        "a revoked lease does not renew"
    );

    // Not kept alive: the key goes by itself (etcd's shortest TTL is a
    // few seconds).
    let lease = e.grant(1).unwrap();
    e.put(b"/nodes/b", b"up", lease).unwrap();
    let t0 = Instant::now();
    while e.get(b"/nodes/b").unwrap().is_some() {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the leased key stayed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dead_endpoint_is_skipped_and_none_answering_is_an_error() {
    let Some(p) = etcd() else { return };
    let dead = format!("http://127.0.0.1:{}", common_durable::free_port());
    let e = Etcd::new(&[dead.clone(), p.url.clone()]);
    e.put(b"k", b"v", 0).unwrap();
    assert_eq!(e.get(b"k").unwrap().unwrap().value, b"v");
    let none = Etcd::new(&[dead]);
    let err = none.get(b"k").unwrap_err().to_string();
    assert!(err.starts_with("etcd unreachable"), "{err}");
    assert!(Etcd::new(&[]).get(b"k").is_err());
}
