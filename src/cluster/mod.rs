//! Clustering (issue 20, under way; `docs/clustering-design.md`): nodes
//! that share definitions and replicate quorum queues through etcd. So far
//! the etcd client (`etcd.rs`); nothing here runs unless `--etcd` is given
//! (not yet a flag).

pub mod etcd;
