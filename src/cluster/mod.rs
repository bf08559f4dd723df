//! Clustering (issue 20, under way; `docs/clustering-design.md`): nodes
//! that share definitions and replicate quorum queues through etcd. The
//! etcd client (`etcd.rs`); membership (`members.rs`: nodes registered
//! under leases, shown by `/api/nodes`); the definitions in etcd
//! (`defs_sync.rs`); the node-to-node transport (`transport.rs`); quorum
//! queues' leaders and in-sync sets (`quorum.rs`); the link that
//! replicates them (`link.rs`). Nothing here runs unless `--etcd` is
//! given.

pub mod defs_sync;
pub mod etcd;
pub mod link;
pub mod members;
pub mod quorum;
pub mod transport;

use etcd::{Cmp, Compare, Etcd, Op};
use std::io;

/// The cluster's shared secret for the node-to-node transport's
/// handshake: made by the first node (32 random bytes in
/// `/warren/<cluster>/secret`), read by the others. Whoever can read etcd
/// can join: etcd is the cluster's root of trust.
pub fn secret(endpoints: &[String], cluster: &str) -> io::Result<Vec<u8>> {
    let etcd = Etcd::new(endpoints);
    let key = format!("/warren/{cluster}/secret").into_bytes();
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).map_err(|e| io::Error::other(e.to_string()))?;
    let err = |e: etcd::EtcdError| io::Error::other(format!("cluster secret: {e}"));
    etcd.txn(
        &[Compare::Version(key.clone(), Cmp::Equal, 0)],
        &[Op::Put {
            key: key.clone(),
            value: fresh.to_vec(),
            lease: 0,
        }],
        &[],
    )
    .map_err(err)?;
    Ok(etcd
        .get(&key)
        .map_err(err)?
        .map(|kv| kv.value)
        .unwrap_or_default())
}

/// Starts quorum-queue replication on a clustered node: the quorum
/// manager and the link (on the mesh's last member), stopped with the
/// broker before the membership.
pub fn start_replication(
    handle: &mut crate::BrokerHandle,
    config: &crate::config::ClusterConfig,
    listener: std::net::TcpListener,
    membership: members::Membership,
) -> io::Result<quorum::Quorum> {
    let node = crate::config::node_name();
    let secret = secret(&config.etcd, &config.name)?;
    let admin = handle.admin();
    let shards = admin.config().shards;
    let quorum = quorum::Quorum::start(
        &config.etcd,
        &config.name,
        &node,
        admin.clone(),
        membership.clone(),
    );
    let links = handle
        .take_cluster_links()
        .ok_or_else(|| io::Error::other("the broker has no cluster link"))?;
    let mut link = link::Link::start(
        links,
        shards,
        listener,
        secret,
        node,
        membership,
        quorum.clone(),
        admin,
    )?;
    let q = quorum.clone();
    handle.attach_stop(Box::new(move || {
        q.stop();
        link.stop();
    }));
    Ok(quorum)
}
