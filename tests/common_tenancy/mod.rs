//! Setup of users, vhosts, permissions and limits for the tenancy tests
//! (tests/permissions.rs, vhosts.rs, limits.rs), with two backends:
//! - in-process warren: [`warren::admin::Admin`] of the broker the test started;
//! - an external broker (`WARREN_TEST_EXTERNAL_URI`, e.g. RabbitMQ): its
//!   management HTTP API on http://127.0.0.1:15672 as guest:guest, so the same
//!   tests run against the reference implementation.
//!
//! Every name a test creates is unique ([`common_lapin::unique`]); in external
//! mode the users and vhosts are deleted again when the [`Tenancy`] is dropped.
//!
//! Reply texts: warren follows RabbitMQ 3.12+, which names the permission
//! (`configure access to queue 'q' in vhost 'v' refused for user 'u'`);
//! RabbitMQ 3.10/3.11 omit the word (`access to queue …`). In external mode
//! [`assert_refused`] accepts either form (it strips the leading word).
#![allow(dead_code)]

use std::sync::Mutex;
use warren::admin::{Admin, PasswordSpec};
use warren::core::auth::permissions::{Permission, TopicPermission};

/// Management API of the external broker.
const MGMT: &str = "http://127.0.0.1:15672";
/// base64("guest:guest").
const GUEST_BASIC: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

/// The backend that applies the definitions.
pub enum Backend {
    Local(Admin),
    Http,
}

/// Creates users, vhosts, permissions and limits on the broker under test.
pub struct Tenancy {
    backend: Backend,
    /// host:port of the AMQP listener, for [`Tenancy::uri`].
    amqp: String,
    users: Mutex<Vec<String>>,
    vhosts: Mutex<Vec<String>>,
}

impl Tenancy {
    /// For the in-process broker `h` (AMQP on its main port).
    pub fn local(h: &warren::BrokerHandle) -> Tenancy {
        Tenancy::new(Backend::Local(h.admin()), format!("127.0.0.1:{}", h.port()))
    }

    /// For the broker of `b`: in-process admin, or the HTTP API when external.
    pub fn for_broker(b: &crate::util::TestBroker) -> Tenancy {
        match b.handle() {
            Some(h) => Tenancy::local(h),
            None => Tenancy::new(Backend::Http, external_host_port(&b.uri())),
        }
    }

    pub fn new(backend: Backend, amqp: String) -> Tenancy {
        Tenancy {
            backend,
            amqp,
            users: Mutex::new(Vec::new()),
            vhosts: Mutex::new(Vec::new()),
        }
    }

    pub fn is_external(&self) -> bool {
        matches!(self.backend, Backend::Http)
    }

    /// `amqp://user:pass@host:port/vhost` (vhost percent-encoded).
    pub fn uri(&self, user: &str, pass: &str, vhost: &str) -> String {
        format!("amqp://{user}:{pass}@{}/{}", self.amqp, enc(vhost))
    }

    /// Same, on another `host:port` (a shard's own port).
    pub fn uri_at(&self, host_port: &str, user: &str, pass: &str, vhost: &str) -> String {
        format!("amqp://{user}:{pass}@{host_port}/{}", enc(vhost))
    }

    pub fn put_user(&self, name: &str, pass: &str) {
        match &self.backend {
            Backend::Local(a) => {
                a.put_user(name, PasswordSpec::Clear(pass.into()), vec![])
                    .expect("put_user");
            }
            Backend::Http => http(
                "PUT",
                &format!("/api/users/{}", enc(name)),
                &format!(r#"{{"password":"{pass}","tags":""}}"#),
            ),
        }
        self.users.lock().unwrap().push(name.to_string());
    }

    pub fn delete_user(&self, name: &str) {
        match &self.backend {
            Backend::Local(a) => a.delete_user(name).expect("delete_user"),
            Backend::Http => http("DELETE", &format!("/api/users/{}", enc(name)), ""),
        }
    }

    pub fn put_vhost(&self, name: &str) {
        match &self.backend {
            Backend::Local(a) => {
                a.put_vhost(name, None, None, None).expect("put_vhost");
            }
            Backend::Http => http("PUT", &format!("/api/vhosts/{}", enc(name)), "{}"),
        }
        self.vhosts.lock().unwrap().push(name.to_string());
    }

    pub fn delete_vhost(&self, name: &str) {
        match &self.backend {
            Backend::Local(a) => a.delete_vhost(name).expect("delete_vhost"),
            Backend::Http => http("DELETE", &format!("/api/vhosts/{}", enc(name)), ""),
        }
    }

    /// `set_permissions -p vhost user configure write read`.
    pub fn set_permissions(&self, user: &str, vhost: &str, c: &str, w: &str, r: &str) {
        match &self.backend {
            Backend::Local(a) => a
                .set_permissions(
                    user,
                    vhost,
                    Permission {
                        configure: c.into(),
                        write: w.into(),
                        read: r.into(),
                    },
                )
                .expect("set_permissions"),
            Backend::Http => http(
                "PUT",
                &format!("/api/permissions/{}/{}", enc(vhost), enc(user)),
                &format!(
                    r#"{{"configure":{},"write":{},"read":{}}}"#,
                    js(c),
                    js(w),
                    js(r)
                ),
            ),
        }
    }

    pub fn clear_permissions(&self, user: &str, vhost: &str) {
        match &self.backend {
            Backend::Local(a) => a.clear_permissions(user, vhost).expect("clear_permissions"),
            Backend::Http => http(
                "DELETE",
                &format!("/api/permissions/{}/{}", enc(vhost), enc(user)),
                "",
            ),
        }
    }

    pub fn set_topic_permissions(&self, user: &str, vhost: &str, x: &str, w: &str, r: &str) {
        match &self.backend {
            Backend::Local(a) => a
                .set_topic_permissions(
                    user,
                    vhost,
                    TopicPermission {
                        exchange: x.into(),
                        write: w.into(),
                        read: r.into(),
                    },
                )
                .expect("set_topic_permissions"),
            Backend::Http => http(
                "PUT",
                &format!("/api/topic-permissions/{}/{}", enc(vhost), enc(user)),
                &format!(
                    r#"{{"exchange":{},"write":{},"read":{}}}"#,
                    js(x),
                    js(w),
                    js(r)
                ),
            ),
        }
    }

    /// `max-connections` / `max-queues` of a vhost; a negative value clears it.
    pub fn set_vhost_limit(&self, vhost: &str, limit: &str, value: i64) {
        match &self.backend {
            Backend::Local(a) => a
                .set_vhost_limit(vhost, limit, value)
                .expect("set_vhost_limit"),
            Backend::Http if value < 0 => http(
                "DELETE",
                &format!("/api/vhost-limits/{}/{limit}", enc(vhost)),
                "",
            ),
            Backend::Http => http(
                "PUT",
                &format!("/api/vhost-limits/{}/{limit}", enc(vhost)),
                &format!(r#"{{"value":{value}}}"#),
            ),
        }
    }

    /// `max-connections` / `max-channels` of a user; a negative value clears it.
    pub fn set_user_limit(&self, user: &str, limit: &str, value: i64) {
        match &self.backend {
            Backend::Local(a) => a
                .set_user_limit(user, limit, value)
                .expect("set_user_limit"),
            Backend::Http if value < 0 => http(
                "DELETE",
                &format!("/api/user-limits/{}/{limit}", enc(user)),
                "",
            ),
            Backend::Http => http(
                "PUT",
                &format!("/api/user-limits/{}/{limit}", enc(user)),
                &format!(r#"{{"value":{value}}}"#),
            ),
        }
    }

    /// A fresh vhost `v-…` and user `u-…` (password `pw`) with the given
    /// permissions, and full permissions for guest there (the tests' setup
    /// connection). Returns (user, vhost).
    pub fn user_in_vhost(&self, tag: &str, c: &str, w: &str, r: &str) -> (String, String) {
        let v = crate::common_lapin::unique(&format!("v-{tag}"));
        let u = crate::common_lapin::unique(&format!("u-{tag}"));
        self.put_vhost(&v);
        self.put_user(&u, "pw");
        self.set_permissions("guest", &v, ".*", ".*", ".*");
        self.set_permissions(&u, &v, c, w, r);
        (u, v)
    }
}

impl Drop for Tenancy {
    fn drop(&mut self) {
        if let Backend::Http = self.backend {
            for u in self.users.lock().unwrap().drain(..) {
                let _ = try_http("DELETE", &format!("/api/users/{}", enc(&u)), "");
            }
            for v in self.vhosts.lock().unwrap().drain(..) {
                let _ = try_http("DELETE", &format!("/api/vhosts/{}", enc(&v)), "");
            }
        }
    }
}

/// `host:port` of an `amqp://user:pass@host:port/vhost` URI.
fn external_host_port(uri: &str) -> String {
    let rest = uri.split("://").nth(1).unwrap_or(uri);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Percent-encodes a path segment (vhost `/` is `%2F`).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn try_http(method: &str, path: &str, body: &str) -> Result<u16, String> {
    let req = ureq::request(method, &format!("{MGMT}{path}"))
        .set("Authorization", GUEST_BASIC)
        .set("Content-Type", "application/json")
        .timeout(std::time::Duration::from_secs(10));
    let r = if body.is_empty() {
        req.call()
    } else {
        req.send_string(body)
    };
    match r {
        Ok(resp) => Ok(resp.status()),
        Err(ureq::Error::Status(code, resp)) => Err(format!(
            "{method} {path}: {code} {}",
            resp.into_string().unwrap_or_default()
        )),
        Err(e) => Err(format!("{method} {path}: {e}")),
    }
}

/// A management API call that must succeed (2xx).
fn http(method: &str, path: &str, body: &str) {
    if let Err(e) = try_http(method, path, body) {
        panic!("management API: {e}");
    }
}

/// `ACCESS_REFUSED - {perm} access to {kind} '{name}' in vhost '{v}' refused for user '{u}'`.
pub fn refused(perm: &str, kind: &str, name: &str, v: &str, u: &str) -> String {
    format!(
        "ACCESS_REFUSED - {perm} access to {kind} '{name}' in vhost '{v}' refused for user '{u}'"
    )
}

/// The topic refusal text.
pub fn topic_refused(perm: &str, key: &str, x: &str, v: &str, u: &str) -> String {
    format!(
        "ACCESS_REFUSED - {perm} access to topic '{key}' in exchange '{x}' in vhost '{v}' refused for user '{u}'"
    )
}

/// Drops the permission word of a 3.12+ refusal text: the 3.10/3.11 form.
fn without_perm_word(text: &str) -> String {
    for p in ["configure ", "write ", "read "] {
        let with = format!("ACCESS_REFUSED - {p}access to ");
        if let Some(rest) = text.strip_prefix(&with) {
            return format!("ACCESS_REFUSED - access to {rest}");
        }
    }
    text.to_string()
}

/// Asserts a 403 with `expected` (3.12+ text). Against an external broker
/// (`external`), RabbitMQ 3.10/3.11's text without the permission word is
/// accepted too: warren follows 3.12+, the oracle on this machine is 3.10.8.
pub fn assert_refused(got: (u16, String), expected: &str, external: bool, what: &str) {
    let (code, text) = got;
    let ok = text == expected || (external && text == without_perm_word(expected));
    assert!(
        code == 403 && ok,
        "{what}: expected 403 {expected:?}, got {code} {text:?}"
    );
}
