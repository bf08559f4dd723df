//! Clustering (issue 20, under way; `docs/clustering-design.md`): nodes
//! that share definitions and replicate quorum queues through etcd. So far
//! the etcd client (`etcd.rs`), membership (`members.rs`: nodes
//! registered under leases, shown by `/api/nodes`) and the node-to-node
//! transport (`transport.rs`: authenticated frames on the cluster port,
//! driven by its owner's event loop; nothing uses it yet). Nothing here
//! runs unless `--etcd` is given.

pub mod defs_sync;
pub mod etcd;
pub mod members;
pub mod transport;
