//! `/api/bindings…`, `/api/exchanges/{vhost}/{name}/bindings/{source,
//! destination}` and `/api/queues/{vhost}/{name}/bindings` (RabbitMQ 3.13's
//! `rabbit_mgmt_wm_bindings`, `_wm_binding`): list, create (201 with a
//! `Location` relative to the request, as RabbitMQ's), show and delete one
//! binding named by its `properties_key` (`binding_key.rs`). Lists take
//! `sort`, `sort_reverse` and `columns`, not pages (RabbitMQ's
//! `reply_list`). The default exchange's implicit bindings are listed as
//! RabbitMQ lists them (in every list that can hold them, even for a queue
//! that does not exist); one can be shown while its queue exists, and
//! deleting it is refused (401, the default exchange).

use super::binding_key::{args_hash, properties_key, quote_plus, unpack};
use super::exchanges::exchange_name;
use super::listing::ListQuery;
use super::objects::{body_arguments, body_str, direct_error, vhost_not_found};
use super::queues::vhost_checked;
use super::scope::check_vhost;
use super::{body_object, ok, Api, ApiError, Creds, Level};
use crate::admin::{Admin, BindingFilter, BindingView};
use crate::core::definitions::BindingDest;
use crate::core::definitions_json::table_to_json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;

fn binding_json(b: &BindingView) -> Value {
    let (dest, kind) = match &b.dest {
        BindingDest::Queue(q) => (q, "queue"),
        BindingDest::Exchange(x) => (x, "exchange"),
    };
    json!({
        "source": b.source,
        "vhost": &*b.vhost,
        "destination": dest,
        "destination_type": kind,
        "routing_key": b.key,
        "arguments": table_to_json(&b.args),
        "properties_key": properties_key(&b.key, &b.args),
    })
}

/// The destination named by `{dtype}/{dest}` (`q` or `e`).
fn destination(dtype: &str, dest: &str) -> Result<BindingDest, ApiError> {
    match dtype {
        "q" => Ok(BindingDest::Queue(dest.to_string())),
        "e" => Ok(BindingDest::Exchange(exchange_name(dest))),
        _ => Err(ApiError::not_found()),
    }
}

/// A binding list answer: sorted, reversed and trimmed, never paged.
fn reply_list(q: &HashMap<String, String>, items: &[BindingView]) -> Result<Response, ApiError> {
    let mut lq = ListQuery::parse(q)?;
    lq.page = None;
    lq.name = None;
    let items = items.iter().map(binding_json).collect();
    Ok(ok(&lq.apply(items)?))
}

/// Every vhost listed, or one checked.
async fn list_in(
    api: Api,
    c: Creds,
    vhost: Option<String>,
    filter: BindingFilter,
    q: HashMap<String, String>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        if let Some(v) = &vhost {
            check_vhost(a, user, v)?;
        }
        let visible = a.listed_vhosts(user);
        let items: Vec<BindingView> = a
            .bindings(vhost.as_deref(), &filter)
            .into_iter()
            .filter(|b| visible.contains(&*b.vhost))
            .collect();
        reply_list(&q, &items)
    })
    .await
}

/// `GET /api/bindings`.
pub(crate) async fn list(
    State(api): State<Api>,
    c: Creds,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_in(api, c, None, BindingFilter::All, q).await
}

/// `GET /api/bindings/{vhost}` (404 for an unknown vhost).
pub(crate) async fn list_vhost(
    State(api): State<Api>,
    c: Creds,
    Path(vhost): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = vhost.clone();
    let check = api
        .call(c.clone(), Level::Management, move |a, user| {
            vhost_checked(a, user, &v)?;
            Ok(StatusCode::OK.into_response())
        })
        .await;
    if check.status() != StatusCode::OK {
        return check;
    }
    list_in(api, c, Some(vhost), BindingFilter::All, q).await
}

/// `GET /api/exchanges/{vhost}/{name}/bindings/source`.
pub(crate) async fn of_source(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = BindingFilter::Source(exchange_name(&name));
    list_in(api, c, Some(vhost), filter, q).await
}

/// `GET /api/exchanges/{vhost}/{name}/bindings/destination`.
pub(crate) async fn of_destination(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = BindingFilter::Destination(BindingDest::Exchange(exchange_name(&name)));
    list_in(api, c, Some(vhost), filter, q).await
}

/// `GET /api/queues/{vhost}/{name}/bindings`.
pub(crate) async fn of_queue(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = BindingFilter::Destination(BindingDest::Queue(name));
    list_in(api, c, Some(vhost), filter, q).await
}

/// `GET /api/bindings/{vhost}/e/{source}/{q|e}/{dest}`.
pub(crate) async fn between(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, source, dtype, dest)): Path<(String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match destination(&dtype, &dest) {
        Ok(d) => BindingFilter::Between(exchange_name(&source), d),
        Err(e) => return e.into_response(),
    };
    list_in(api, c, Some(vhost), filter, q).await
}

/// RabbitMQ's `rabbit_web_dispatch_util:relativise`: `to` relative to
/// `from`, segment by segment.
fn relativise(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    let mut i = 0;
    while i < from.len() && i < to.len() && from[i] == to[i] {
        if i + 1 == from.len() {
            // The last segment of `from` is shared: `to` from there on.
            return to[i..].join("/");
        }
        i += 1;
    }
    let mut out: Vec<&str> = Vec::new();
    if i < from.len() {
        let ups = if i < to.len() {
            from.len() - i - 1
        } else {
            from.len() - i
        };
        out.extend(std::iter::repeat_n("..", ups));
    }
    out.extend(&to[i..]);
    out.join("/")
}

/// `POST /api/bindings/{vhost}/e/{source}/{q|e}/{dest}` `{routing_key,
/// arguments}`: 201 with the new binding's `Location`.
pub(crate) async fn create(
    State(api): State<Api>,
    c: Creds,
    uri: Uri,
    Path((vhost, source, dtype, dest)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let dest_kind = destination(&dtype, &dest)?;
        if !a.has_vhost(&vhost) {
            return Err(vhost_not_found());
        }
        let body = body_object(&body)?;
        let key = body_str(&body, "routing_key", "")?;
        let args = body_arguments(&body)?;
        let props = properties_key(&key, &args);
        let source = exchange_name(&source);
        a.bind(&user.name, &vhost, &source, dest_kind, &key, args)
            .map_err(direct_error)?;
        let to = format!(
            "/api/bindings/{}/e/{}/{}/{}/{}",
            quote_plus(vhost.as_bytes()),
            quote_plus(source.as_bytes()),
            quote_plus(dtype.as_bytes()),
            quote_plus(dest.as_bytes()),
            quote_plus(props.as_bytes())
        );
        let location = relativise(uri.path(), &to);
        let mut r = StatusCode::CREATED.into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Ok(r)
    })
    .await
}

/// The binding `{props}` names between `source` and `dest`, if it exists
/// (`rabbit_mgmt_wm_binding:binding` + `rabbit_binding:exists`).
fn find(
    a: &Admin,
    vhost: &str,
    source: &str,
    dest: BindingDest,
    props: &str,
) -> Option<BindingView> {
    let (key, hash) = unpack(props)?;
    // The default exchange's implicit binding exists while its queue does.
    let implicit_ok = |b: &BindingView| !b.source.is_empty() || a.has_queue(vhost, b.dest.name());
    let between: Vec<BindingView> = a
        .bindings(
            Some(vhost),
            &BindingFilter::Between(source.to_string(), dest),
        )
        .into_iter()
        .filter(implicit_ok)
        .collect();
    let args_key = match hash {
        None => None,
        Some(h) => Some(
            between
                .iter()
                .find(|b| args_hash(&b.args).as_bytes() == h)?
                .args
                .clone(),
        ),
    };
    between.into_iter().find(|b| {
        b.key.as_bytes() == key.as_slice()
            && match &args_key {
                None => b.args.is_empty(),
                Some(args) => {
                    let (mut x, mut y) = (Vec::new(), Vec::new());
                    args.encode(&mut x);
                    b.args.encode(&mut y);
                    x == y
                }
            }
    })
}

/// `GET /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}`.
pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, source, dtype, dest, props)): Path<(String, String, String, String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let dest = destination(&dtype, &dest)?;
        let b = find(a, &vhost, &exchange_name(&source), dest, &props)
            .ok_or_else(ApiError::not_found)?;
        Ok(ok(&binding_json(&b)))
    })
    .await
}

/// `DELETE /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}`.
pub(crate) async fn delete(
    State(api): State<Api>,
    c: Creds,
    Path((vhost, source, dtype, dest, props)): Path<(String, String, String, String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        check_vhost(a, user, &vhost)?;
        let dest = destination(&dtype, &dest)?;
        let b = find(a, &vhost, &exchange_name(&source), dest, &props)
            .ok_or_else(ApiError::not_found)?;
        a.unbind(&user.name, &vhost, &b).map_err(direct_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::relativise;

    #[test]
    fn locations_relative_to_the_request() {
        let from = "/api/bindings/%2F/e/x1/q/q1";
        assert_eq!(relativise(from, "/api/bindings/%2F/e/x1/q/q1/~"), "q1/~");
        assert_eq!(
            relativise(
                "/api/bindings/%2F/e/amq.direct/e/amq.fanout",
                "/api/bindings/%2F/e/amq.direct/e/amq.fanout/routing"
            ),
            "amq.fanout/routing"
        );
        assert_eq!(
            relativise(
                "/api/bindings/%2f/e/x1/q/q1",
                "/api/bindings/%2F/e/x1/q/q1/k"
            ),
            "../../../../%2F/e/x1/q/q1/k"
        );
    }
}
