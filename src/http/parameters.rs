//! `/api/parameters…`: vhost runtime parameters (rabbit_mgmt_wm_parameters,
//! rabbit_mgmt_wm_parameter in 3.13). Access is
//! `is_authorized_policies`: an administrator, or a policymaker with a
//! permission in the vhost of the path (a missing vhost passes, and is
//! then not found); anyone else is 401 "User not authorised to access
//! object". Lists show only the vhosts the user may list
//! (`filter_vhost`).
//!
//! A PUT takes `{"value": …}` (other fields of the body are ignored: the
//! path names the parameter): 201 created, 204 replaced, 400 with
//! RabbitMQ's reason, HTML-escaped (`escape_html_tags`), when validation
//! refuses it.

use super::objects::{not_authorised, vhost_not_found};
use super::{created_or_updated, ok, Api, ApiError, Creds, Level};
use crate::admin::{Admin, UserView};
use crate::core::definitions::Parameter;
use crate::core::parameters::escape_html_tags;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

fn parameter_json(p: &Parameter) -> Value {
    json!({
        "vhost": p.vhost,
        "component": p.component,
        "name": p.name,
        "value": p.value,
    })
}

/// `is_authorized_policies`: an administrator, or a policymaker who may
/// use `vhost` (None: the path names none).
fn authorize(a: &Admin, user: &UserView, vhost: Option<&str>) -> Result<(), ApiError> {
    let policymaker = user
        .tags
        .iter()
        .any(|t| t == "administrator" || t == "policymaker");
    if Admin::is_administrator(user)
        || (policymaker && vhost.is_none_or(|v| a.may_use_vhost(user, v)))
    {
        Ok(())
    } else {
        Err(not_authorised("User not authorised to access object"))
    }
}

/// The parameters `user` may list.
fn visible(a: &Admin, user: &UserView, list: Vec<Parameter>) -> Response {
    let vhosts = a.listed_vhosts(user);
    let out: Vec<Value> = list
        .iter()
        .filter(|p| vhosts.contains(&p.vhost))
        .map(parameter_json)
        .collect();
    ok(&out)
}

/// `GET /api/parameters`.
pub(crate) async fn list(State(api): State<Api>, c: Creds) -> Response {
    api.call(c, Level::Management, |a, user| {
        authorize(a, user, None)?;
        Ok(visible(a, user, a.list_parameters(None, None)))
    })
    .await
}

/// `GET /api/parameters/{component}`.
pub(crate) async fn list_component(
    State(api): State<Api>,
    c: Creds,
    Path(component): Path<String>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        authorize(a, user, None)?;
        Ok(visible(a, user, a.list_parameters(Some(&component), None)))
    })
    .await
}

/// `GET /api/parameters/{component}/{vhost}`: 404 if the vhost does not
/// exist.
pub(crate) async fn list_component_vhost(
    State(api): State<Api>,
    c: Creds,
    Path((component, vhost)): Path<(String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        authorize(a, user, Some(&vhost))?;
        if !a.has_vhost(&vhost) {
            return Err(ApiError::not_found());
        }
        Ok(visible(
            a,
            user,
            a.list_parameters(Some(&component), Some(&vhost)),
        ))
    })
    .await
}

/// `GET /api/parameters/{component}/{vhost}/{name}`.
pub(crate) async fn get_one(
    State(api): State<Api>,
    c: Creds,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        authorize(a, user, Some(&vhost))?;
        Ok(ok(&parameter_json(
            &a.get_parameter(&vhost, &component, &name)?,
        )))
    })
    .await
}

/// The `value` of a PUT body, as `rabbit_mgmt_util:with_decode([value])`
/// finds it.
fn body_value(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("not_json"))?;
    let decoded = match text.trim() {
        "" | "null" | "undefined" => Value::Object(Default::default()),
        t => serde_json::from_str(t).map_err(|_| ApiError::bad_request("not_json"))?,
    };
    match decoded {
        Value::Object(mut m) => m
            .remove("value")
            .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]")),
        Value::String(_) => Err(ApiError::bad_request(
            "invalid payload: the request body JSON-decoded to a string. \
             Is the input doubly-JSON-encoded?",
        )),
        _ => Err(ApiError::bad_request("not_json")),
    }
}

/// `PUT /api/parameters/{component}/{vhost}/{name}` `{"value": …}`.
pub(crate) async fn put(
    State(api): State<Api>,
    c: Creds,
    Path((component, vhost, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        authorize(a, user, Some(&vhost))?;
        if !a.has_vhost(&vhost) {
            return Err(vhost_not_found());
        }
        let value = body_value(&body)?;
        match a.set_parameter(&user.name, &vhost, &component, &name, value) {
            Ok(created) => Ok(created_or_updated(created)),
            Err(crate::admin::AdminError::BadRequest(reason)) => {
                Err(ApiError::bad_request(&escape_html_tags(&reason)))
            }
            Err(crate::admin::AdminError::NotFound(_)) => Err(vhost_not_found()),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// `DELETE /api/parameters/{component}/{vhost}/{name}`: 204, or 404 if
/// there is no such parameter.
pub(crate) async fn delete(
    State(api): State<Api>,
    c: Creds,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> Response {
    api.call(c, Level::Management, move |a, user| {
        authorize(a, user, Some(&vhost))?;
        a.clear_parameter(&vhost, &component, &name)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::body_value;
    use serde_json::json;

    #[test]
    fn put_bodies_as_with_decode() {
        assert_eq!(
            body_value(br#"{"value":{"a":1},"vhost":"x"}"#).unwrap(),
            json!({"a":1})
        );
        assert_eq!(body_value(br#"{"value":null}"#).unwrap(), json!(null));
        for (body, reason) in [
            (&b""[..], "[{key_missing,value}]"),
            (b"null", "[{key_missing,value}]"),
            (br#"{"component":"shovel"}"#, "[{key_missing,value}]"),
            (b"{nope", "not_json"),
            (b"[1]", "not_json"),
        ] {
            assert_eq!(body_value(body).unwrap_err().reason, reason);
        }
        assert!(body_value(br#""{}""#)
            .unwrap_err()
            .reason
            .starts_with("invalid payload"));
    }
}
