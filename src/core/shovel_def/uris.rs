//! The URIs of a shovel definition: `validate_uri` (a string or a list,
//! each checked as `amqp_uri:parse/1` does, with its error terms; a direct
//! URI's vhost checked for the acting user) and `strip_credentials`
//! (`amqp_uri:remove_credentials`, for status and forward headers).

use super::erl_term::{tp, Term};
use super::Ctx;
use crate::client::uri::AmqpUri;
use serde_json::Value;

/// `amqp_uri:remove_credentials`: `scheme://host[:port][path]`, the userinfo
/// and the query dropped; `amqp://` stays `amqp://`. As RabbitMQ's
/// `uri_parser`, an IPv6 host loses its brackets. A string without a
/// scheme is returned as is (it is not a valid URI).
pub fn strip_credentials(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.to_string();
    };
    let Some(rest) = rest.strip_prefix("//") else {
        return format!("{scheme}://{}", before_any(rest, &['?', '#']));
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(split);
    let path = before_any(after, &['?', '#']);
    let (host, port) = host_port(authority.split_once('@').map_or(authority, |(_, h)| h));
    let port = match port.and_then(|p| p.parse::<i64>().ok()) {
        Some(p) => format!(":{p}"),
        None => String::new(),
    };
    format!("{scheme}://{host}{port}{path}")
}

fn before_any<'a>(s: &'a str, chars: &[char]) -> &'a str {
    s.find(chars).map_or(s, |i| &s[..i])
}

/// `uri_parser:parse_host_port`: the host (IPv6 without brackets) and the
/// port text, if any.
fn host_port(hostport: &str) -> (&str, Option<&str>) {
    if let Some(h) = hostport.strip_prefix('[') {
        match h.split_once(']') {
            Some((host, after)) => (host, after.split_once(':').map(|(_, p)| p)),
            None => (h, None),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    }
}

/// `validate_uri`: a string, or a list whose first bad URI is reported.
/// (A list nested in the list passes here as in RabbitMQ, and its URIs are
/// flattened into the definition's, where RabbitMQ's worker would crash.)
pub(super) fn validate_uri(key: &str, v: &Value, ctx: &Ctx) -> Option<String> {
    match v {
        Value::String(s) => validate_one_uri(s, ctx),
        Value::Array(a) => a.iter().find_map(|u| validate_uri(key, u, ctx)),
        other => Some(tp(
            &format!("{key} should be list, actually was "),
            &Term::json(other),
        )),
    }
}

fn validate_one_uri(uri: &str, ctx: &Ctx) -> Option<String> {
    if let Some(term) = uri_error(uri) {
        return Some(tp(&format!("\"{uri}\" not a valid URI: "), &term));
    }
    match AmqpUri::parse(uri) {
        Ok(u) if u.direct => (ctx.direct_vhost_ok)(&u.vhost).err(),
        _ => None,
    }
}

/// The `E` of `amqp_uri:parse/1`'s `{error, E}` (`{Reason, Uri}`), as far as
/// it can be known: the checks of `uri_parser:parse/2` and
/// `amqp_uri:build_broker/2`, in their order. Not checked: the query
/// parameters (heartbeat, SSL options, auth_mechanism). Where RabbitMQ
/// prints a stack trace (a port that is not an integer) it is abridged to
/// its first call. A URI RabbitMQ accepts but `AmqpUri` cannot use (an
/// upper-case scheme, `amqp:/vh` without `//`, an escape that does not
/// decode to UTF-8) gives `{{unsupported_uri,"<why>"},"<uri>"}`, a term of
/// warren's own.
fn uri_error(uri: &str) -> Option<Term> {
    let fail = |reason: Term| Some(Term::Tuple(vec![reason, Term::Str(uri.to_string())]));
    let pair = |atom: &str, t: Term| Term::Tuple(vec![Term::atom(atom), t]);
    let Some((scheme, rest)) = uri.split_once(':') else {
        return fail(pair("unable_to_parse_uri", Term::atom("no_scheme")));
    };
    let (userinfo, host, port, path) = match rest.strip_prefix("//") {
        Some(r) => {
            let (authority, after) = r.split_at(r.find(['/', '?', '#']).unwrap_or(r.len()));
            let (userinfo, hostport) = authority.split_once('@').unwrap_or(("", authority));
            let malformed = |e: Term| {
                let m = Term::Tuple(vec![Term::atom("malformed_uri"), Term::Str(uri.into()), e]);
                fail(pair("unable_to_parse_uri", m))
            };
            if let Some((_, after)) = hostport.strip_prefix('[').and_then(|h| h.split_once(']')) {
                if !after.is_empty() && !after.contains(':') {
                    return malformed(pair("invalid_port", Term::Str(after.into())));
                }
            }
            let (host, port) = host_port(hostport);
            let port = match port {
                None => None,
                Some(p) => match erl_integer(p) {
                    Some(n) => Some(n),
                    None => {
                        let call = Term::Tuple(vec![
                            Term::atom("erlang"),
                            Term::atom("list_to_integer"),
                            Term::List(vec![Term::Str(p.into())]),
                        ]);
                        let exit = pair("badarg", Term::List(vec![call]));
                        return malformed(pair("'EXIT'", exit));
                    }
                },
            };
            (userinfo, host, port, before_any(after, &['?', '#']))
        }
        None => ("", "", None, before_any(rest, &['?', '#'])),
    };
    let scheme = scheme.to_lowercase();
    if scheme != "amqp" && scheme != "amqps" {
        return fail(pair("unexpected_uri_scheme", Term::Str(scheme)));
    }
    if let Some(p) = &port {
        if !p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)) {
            return fail(pair("port_out_of_range", Term::Raw(p.clone())));
        }
    }
    if !path.is_empty() {
        match path.strip_prefix('/') {
            None => return fail(pair("case_clause", Term::Str(path.into()))),
            Some(vhost) if vhost.contains('/') => {
                return fail(pair("invalid_vhost", Term::Str(vhost.into())))
            }
            Some(vhost) => {
                if let Some(e) = unescape_error(vhost) {
                    return fail(e);
                }
            }
        }
    }
    if let Some(e) = unescape_error(host) {
        return fail(e);
    }
    if host.is_empty() && port.is_some() {
        return fail(Term::atom("port_requires_host"));
    }
    let mut user_password = userinfo.split(':').filter(|_| !userinfo.is_empty());
    for part in user_password.by_ref().take(2) {
        if let Some(e) = unescape_error(part) {
            return fail(e);
        }
    }
    match AmqpUri::parse(uri) {
        Ok(_) => None,
        Err(why) => fail(pair("unsupported_uri", Term::Str(why))),
    }
}

/// `list_to_integer/1`'s reading of a port: an optional sign and digits,
/// normalised (`+05` is `5`); None when it would raise badarg.
fn erl_integer(s: &str) -> Option<String> {
    let (sign, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    Some(match digits {
        "" => "0".to_string(),
        d => format!("{sign}{d}"),
    })
}

/// `amqp_uri:unescape_string/1`'s errors: `%` and two non-hex characters,
/// or fewer than two characters after it.
fn unescape_error(s: &str) -> Option<Term> {
    let b = s.as_bytes();
    let percent = || Term::atom("'%'");
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        if b.len() - i < 3 {
            let mut rest = vec![percent()];
            rest.extend(b[i + 1..].iter().map(|&c| Term::Int(c.into())));
            return Some(Term::Tuple(vec![
                Term::atom("unterminated_entity"),
                Term::List(rest),
            ]));
        }
        let (n1, n2) = (b[i + 1], b[i + 2]);
        if !n1.is_ascii_hexdigit() || !n2.is_ascii_hexdigit() {
            let chars = vec![percent(), Term::Int(n1.into()), Term::Int(n2.into())];
            // Sic: RabbitMQ's atom is misspelt.
            return Some(Term::Tuple(vec![
                Term::atom("invalid_entitiy"),
                Term::List(chars),
            ]));
        }
        i += 3;
    }
    None
}
