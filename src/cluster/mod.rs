//! Clustering (issue 20, under way; `docs/clustering-design.md`): nodes
//! that share definitions and replicate quorum queues through etcd. So far
//! the etcd client (`etcd.rs`) and membership (`members.rs`: nodes
//! registered under leases, shown by `/api/nodes`). Nothing here runs
//! unless `--etcd` is given.

pub mod defs_sync;
pub mod etcd;
pub mod members;
