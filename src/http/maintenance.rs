//! Moving quorum-queue leaders (issue 20), as RabbitMQ's
//! `rabbitmq-upgrade drain` / `revive` and `rabbitmq-queues rebalance`:
//!
//! - `PUT /api/nodes/{node}/drain`: the node hands every quorum queue it
//!   leads to another in-sync member and leads none while drained (it
//!   stands in an election only if no other member can); its clients stay
//!   connected. `being_drained` in `/api/nodes` says so.
//! - `DELETE /api/nodes/{node}/drain`: revives it.
//! - `POST /api/rebalance/queues` (RabbitMQ's path): every node hands
//!   over the leaders above its share.
//!
//! Administrator only; 400 on a single node. The moves are made by each
//! leader's quorum manager (`cluster::quorum`), within a round or two.

use super::{Api, ApiError, Creds, Level};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

fn cluster(api: &Api) -> Result<super::ClusterView, ApiError> {
    api.cluster
        .clone()
        .ok_or_else(|| ApiError::bad_request("this node is not in a cluster (--etcd)"))
}

/// `PUT /api/nodes/{node}/drain`.
pub(crate) async fn drain(State(api): State<Api>, c: Creds, Path(node): Path<String>) -> Response {
    set(api, c, node, true).await
}

/// `DELETE /api/nodes/{node}/drain`.
pub(crate) async fn revive(State(api): State<Api>, c: Creds, Path(node): Path<String>) -> Response {
    set(api, c, node, false).await
}

async fn set(api: Api, c: Creds, node: String, on: bool) -> Response {
    let cluster = match cluster(&api) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    api.call(c, Level::Administrator, move |_, _| {
        if !cluster.membership.members().iter().any(|m| m.name == node) {
            return Err(ApiError::not_found());
        }
        cluster
            .quorum
            .set_draining(&node, on)
            .map_err(|e| ApiError::internal(&e.to_string()))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `POST /api/rebalance/queues`.
pub(crate) async fn rebalance(State(api): State<Api>, c: Creds) -> Response {
    let cluster = match cluster(&api) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    api.call(c, Level::Administrator, move |_, _| {
        cluster
            .quorum
            .rebalance()
            .map_err(|e| ApiError::internal(&e.to_string()))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
