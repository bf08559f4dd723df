//! Validation of vhost runtime parameters before they are set (RabbitMQ's
//! `rabbit_runtime_parameters:set_any`): the component's own checks, and
//! RabbitMQ's texts for a failure (`format_error`). The only component
//! warren knows is `shovel` (`core::shovel_def`); any other (federation
//! upstreams, …) is "not found", as on a RabbitMQ without that plugin.

use super::definitions::Defs;

/// The components warren runs.
pub const COMPONENTS: &[&str] = &["shovel"];

/// The acting user of an import (RabbitMQ's `none`): no user check.
pub const NO_USER: &str = "";

/// Whether `value` may be set as parameter `name` of `component` in
/// `vhost` by `acting_user` (`NO_USER`: a definitions import). On failure,
/// RabbitMQ's whole reason: `"Validation failed\n\n"`, then each error and
/// a newline (not HTML-escaped: see [`escape_html_tags`]).
pub fn validate(
    component: &str,
    vhost: &str,
    name: &str,
    value: &serde_json::Value,
    acting_user: &str,
    defs: &Defs,
) -> Result<(), String> {
    // `set/5`'s first clause.
    if component == "policy" {
        return Err("policies may not be set using this method".into());
    }
    let _ = vhost; // The shovel's checks do not depend on it (`params:validate/5`).
    let errors = match component {
        "shovel" => {
            let direct_ok = |vh: &str| may_connect(defs, acting_user, vh);
            match super::shovel_def::validate(name, value, &direct_ok) {
                Ok(_) => return Ok(()),
                Err(errors) => errors,
            }
        }
        other => vec![format!("component {} not found", other)],
    };
    Err(format_error(&errors))
}

/// `rabbit_shovel_parameters:validate_params_user` for a direct URI: the
/// vhost exists and the user has a permission in it.
fn may_connect(defs: &Defs, user: &str, vhost: &str) -> Result<(), String> {
    if user == NO_USER
        || (defs.vhost_id(vhost).is_some() && defs.tenancy.permission(user, vhost).is_some())
    {
        return Ok(());
    }
    Err(format!(
        "user \"{}\" may not connect to vhost \"{}\"",
        user, vhost
    ))
}

/// `rabbit_runtime_parameters:format_error`: `"Validation failed~n"`
/// and each error, every one followed by `~n` (so a blank line comes
/// after the first).
pub fn format_error(errors: &[String]) -> String {
    let mut out = String::from("Validation failed\n\n");
    for e in errors {
        out.push_str(e);
        out.push('\n');
    }
    out
}

/// `rabbit_mgmt_format:escape_html_tags` (and `rabbit_misc`'s): `<`, `>`
/// and `&` as entities, nothing else.
pub fn escape_html_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::definitions::Definitions;
    use serde_json::json;

    #[test]
    fn texts_as_rabbitmq() {
        assert_eq!(
            format_error(&["a".into(), "b".into()]),
            "Validation failed\n\na\nb\n"
        );
        assert_eq!(
            escape_html_tags(r#"<<"x">> => & y"#),
            r#"&lt;&lt;"x"&gt;&gt; =&gt; &amp; y"#
        );
    }

    #[test]
    fn unknown_components_and_policies() {
        let defs = Definitions::new(1);
        let g = defs.lock();
        let v = json!({});
        assert_eq!(
            validate("federation-upstream", "/", "u", &v, "guest", &g),
            Err("Validation failed\n\ncomponent federation-upstream not found\n".into())
        );
        assert_eq!(
            validate("policy", "/", "p", &v, "guest", &g),
            Err("policies may not be set using this method".into())
        );
    }

    #[test]
    fn a_direct_uri_needs_access_to_its_vhost() {
        let defs = Definitions::new(1);
        let mut g = defs.lock();
        g.bootstrap("guest", "guest").unwrap();
        let v = |uri: &str| json!({"src-uri": uri, "dest-uri": "amqp://", "src-queue": "q"});
        assert_eq!(
            validate("shovel", "/", "s", &v("amqp://"), "guest", &g),
            Ok(())
        );
        let e = validate("shovel", "/", "s", &v("amqp:///nope"), "guest", &g).unwrap_err();
        assert!(
            e.contains("user \"guest\" may not connect to vhost \"nope\"\n"),
            "{e}"
        );
        assert_eq!(
            validate("shovel", "/", "s", &v("amqp:///nope"), NO_USER, &g),
            Ok(())
        );
    }
}
