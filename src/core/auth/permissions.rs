//! RabbitMQ's permission model (rabbit_auth_backend_internal,
//! rabbit_access_control), without any storage.
//!
//! **Resource permissions.** A user has, per vhost, three regular expressions:
//! `configure`, `write` and `read`. An operation on a queue or exchange named
//! `N` is allowed when the pattern for its kind of access matches `N` the way
//! Erlang's `re:run(N, Pattern, [{capture, none}])` does: an unanchored search,
//! so `"q"` matches `"my-queue"`; anchor with `^…$` for a whole name. An
//! **empty** pattern is replaced by `^$` before matching, so it matches only
//! the empty name, that is no real resource. A user without a permission entry
//! for the vhost cannot even open it (that check is the caller's).
//!
//! The default exchange `""` is checked under the name `amq.default`
//! ([`resource_name`]).
//!
//! **Topic permissions** ([`CompiledTopicPermission`]) restrict the routing
//! keys a user may publish with (`write`) or bind/consume with (`read`) on one
//! topic exchange. They apply to exchanges of type `topic` only, and a user
//! with **no** topic permission for an exchange is allowed everything on it
//! (`check_topic_access` returns `true` when the lookup finds nothing). In a
//! pattern, `{username}` and `{vhost}` are replaced by the user's name and the
//! vhost's name before it is compiled (`expand_topic_permission`: a plain
//! `binary:replace`, so the values are **not** regex-escaped: a `.` in a user
//! name matches any character). An empty topic pattern is `^$` too.
//!
//! **Regex dialect.** RabbitMQ uses PCRE; this module uses the `regex` crate
//! with its default (Unicode) settings. Patterns in common use (`.*`, `^$`,
//! `^amq\.`, alternations, classes, `{username}-.*`) behave the same. The
//! differences: no backreferences, lookahead or lookbehind (such a pattern
//! fails to compile, so it cannot be stored); `$` matches only at the very
//! end (PCRE also before a final newline); `.` and classes match Unicode
//! scalar values where Erlang (no `unicode` option) matches single bytes.
//! One PCRE leniency is kept: a `{` that does not open a quantifier is a
//! literal (so `{username}-.*`, common in topic permissions, is a valid
//! pattern before expansion and matches the literal text in a resource
//! permission); such braces are escaped before the `regex` crate sees them.

use regex::Regex;

/// The name the default exchange (`""`) is checked under, in permission
/// patterns and topic permissions.
pub const DEFAULT_EXCHANGE_RESOURCE: &str = "amq.default";

/// The name an exchange is checked under: `amq.default` for the default
/// exchange `""`, the name itself otherwise (rabbit_access_control:
/// `check_resource_access(User, R = #resource{kind = exchange, name = <<"">>}, …)`).
pub fn resource_name(exchange: &str) -> &str {
    if exchange.is_empty() {
        DEFAULT_EXCHANGE_RESOURCE
    } else {
        exchange
    }
}

/// A kind of access to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Declare or delete a queue or exchange.
    Configure,
    /// Publish to an exchange; bind a queue/exchange as destination.
    Write,
    /// Consume from or purge a queue; bind from an exchange as source.
    Read,
}

impl Access {
    /// `"configure"`, `"write"` or `"read"`, as RabbitMQ names them in error
    /// messages and definitions files.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// A user's permission in one vhost, as stored: three patterns.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Permission {
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Permission {
    /// Full access: `.*` for all three (what `rabbitmqctl set_permissions -p /
    /// guest ".*" ".*" ".*"` sets).
    pub fn full() -> Permission {
        Permission {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }
}

/// Checks a pattern before storing it: RabbitMQ refuses to set a permission
/// whose pattern does not compile. The error text is the one
/// [`CompiledPermission::compile`] gives.
pub fn validate(pattern: &str) -> Result<(), String> {
    compile_pattern(pattern).map(|_| ())
}

/// Compiles one pattern: `None` for the empty pattern (RabbitMQ's `^$`, which
/// only the empty string matches).
fn compile_pattern(pattern: &str) -> Result<Option<Regex>, String> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(&pcre_braces(pattern))
        .map(Some)
        .map_err(|e| format!("regular expression '{pattern}' is invalid: {e}"))
}

/// Escapes the braces PCRE takes literally but the `regex` crate rejects: a
/// `{` that does not open a quantifier (`{n}`, `{n,}`, `{n,m}`), and the `}`
/// that closes it. So `{username}-.*`, a valid PCRE pattern that matches the
/// literal text `{username}-`, compiles here too. Escapes (`\{`) and
/// character classes are copied unchanged.
fn pcre_braces(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains(['{', '}']) {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                out.push(c);
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `]` right after `[` or `[^` is a literal member.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '{' if !in_class => match quantifier_len(&chars[i..]) {
                Some(n) => {
                    out.extend(&chars[i..i + n]);
                    i += n - 1;
                }
                None => out.push_str("\\{"),
            },
            '}' if !in_class => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// The length of a PCRE quantifier `{n}`, `{n,}` or `{n,m}` at the start of
/// `s`, if there is one.
fn quantifier_len(s: &[char]) -> Option<usize> {
    let digits = |from: usize| s[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n = digits(1);
    if n == 0 {
        return None;
    }
    let mut i = 1 + n;
    if s.get(i) == Some(&',') {
        i += 1;
        i += digits(i);
    }
    (s.get(i) == Some(&'}')).then_some(i + 1)
}

/// `re:run(Name, Pattern, [{capture, none}])` with the empty pattern as `^$`.
fn matches(re: &Option<Regex>, name: &str) -> bool {
    match re {
        Some(re) => re.is_match(name),
        None => name.is_empty(),
    }
}

/// A [`Permission`] with its patterns compiled, ready to check names against.
#[derive(Clone, Debug)]
pub struct CompiledPermission {
    configure: Option<Regex>,
    write: Option<Regex>,
    read: Option<Regex>,
}

impl CompiledPermission {
    /// Compiles the three patterns; the first that does not compile is the
    /// error (`regular expression '…' is invalid: …`).
    pub fn compile(p: &Permission) -> Result<CompiledPermission, String> {
        Ok(CompiledPermission {
            configure: compile_pattern(&p.configure)?,
            write: compile_pattern(&p.write)?,
            read: compile_pattern(&p.read)?,
        })
    }

    /// Whether `access` to the resource `name` is allowed. For exchanges pass
    /// [`resource_name`]`(exchange)` so that the default exchange is checked as
    /// `amq.default`.
    pub fn allows(&self, access: Access, name: &str) -> bool {
        let re = match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        };
        matches(re, name)
    }
}

/// A user's topic permission on one exchange of one vhost, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPermission {
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// A [`TopicPermission`] with `{username}` and `{vhost}` expanded and its
/// patterns compiled, for one user in one vhost.
#[derive(Clone, Debug)]
pub struct CompiledTopicPermission {
    /// The exchange this permission is about.
    pub exchange: String,
    write: Option<Regex>,
    read: Option<Regex>,
}

/// Replaces `{username}` then `{vhost}` in a topic permission pattern, as
/// `rabbit_auth_backend_internal:expand_topic_permission/2` does: literally,
/// every occurrence, without regex-escaping the values. (RabbitMQ folds over
/// its variable map in key order, `username` before `vhost`; MQTT adds
/// `client_id`, which AMQP 0-9-1 connections do not have.) An empty pattern
/// stays empty.
pub fn expand_topic_pattern(pattern: &str, user: &str, vhost: &str) -> String {
    pattern
        .replace("{username}", user)
        .replace("{vhost}", vhost)
}

impl CompiledTopicPermission {
    /// Expands the variables of both patterns for `user` in `vhost`, then
    /// compiles them. Because the values are not escaped, a pattern that was
    /// valid when stored can fail here (a user name with a `(`, say);
    /// RabbitMQ's check then fails too, so a caller should treat an `Err` as
    /// access refused.
    pub fn compile(
        tp: &TopicPermission,
        user: &str,
        vhost: &str,
    ) -> Result<CompiledTopicPermission, String> {
        Ok(CompiledTopicPermission {
            exchange: tp.exchange.clone(),
            write: compile_pattern(&expand_topic_pattern(&tp.write, user, vhost))?,
            read: compile_pattern(&expand_topic_pattern(&tp.read, user, vhost))?,
        })
    }

    /// Whether the routing key is allowed for `access` (`Write`: publishing;
    /// `Read`: binding and consuming). `Configure` has no topic pattern: it is
    /// always allowed here.
    pub fn allows(&self, access: Access, routing_key: &str) -> bool {
        match access {
            Access::Write => matches(&self.write, routing_key),
            Access::Read => matches(&self.read, routing_key),
            Access::Configure => true,
        }
    }
}

/// The topic check for one exchange: `None` (no topic permission for this
/// user, vhost and exchange) allows everything, as in RabbitMQ.
pub fn topic_allows(
    tp: Option<&CompiledTopicPermission>,
    access: Access,
    routing_key: &str,
) -> bool {
    tp.is_none_or(|tp| tp.allows(access, routing_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(c: &str, w: &str, r: &str) -> CompiledPermission {
        CompiledPermission::compile(&Permission {
            configure: c.into(),
            write: w.into(),
            read: r.into(),
        })
        .unwrap()
    }

    /// (pattern, name, matches?) under Erlang's unanchored `re:run`, with the
    /// empty pattern as `^$`.
    const TABLE: &[(&str, &str, bool)] = &[
        ("", "q1", false),
        ("", "amq.default", false),
        ("", "", true),
        (".*", "q1", true),
        (".*", "", true),
        (".*", "amq.gen-xyz", true),
        ("^amq\\.", "amq.gen-xyz", true),
        ("^amq\\.", "amq.default", true),
        ("^amq\\.", "my.amq.q", false),
        ("^amq\\.", "amqx", false),
        ("^$", "q1", false),
        ("^$", "", true),
        ("^(q1|q2)$", "q1", true),
        ("^(q1|q2)$", "q2", true),
        ("^(q1|q2)$", "q12", false),
        ("^(q1|q2)$", "xq1", false),
        // Unanchored: a substring match is enough.
        ("q", "my-queue", true),
        ("q1|q2", "aq2b", true),
        ("^q1", "q1-extra", true),
        ("q1$", "old-q1", true),
        ("^q1$", "q1\n", false), // PCRE would match: `$` before a final newline
        ("^[a-z]+$", "abc", true),
        ("^[a-z]+$", "ab1", false),
        ("ü", "grün", true),
        ("^.{4}$", "grün", true), // Unicode `.`; Erlang without `unicode` counts 5 bytes
        ("{username}-.*", "{username}-q", true), // literal in resource permissions
        ("{username}-.*", "bob-q", false),
    ];

    #[test]
    fn pattern_table() {
        for &(pattern, name, want) in TABLE {
            let p = perm(pattern, pattern, pattern);
            for access in [Access::Configure, Access::Write, Access::Read] {
                assert_eq!(p.allows(access, name), want, "{pattern:?} on {name:?}");
            }
        }
    }

    #[test]
    fn each_access_has_its_own_pattern() {
        let p = perm("^conf$", "^w", "r$");
        assert!(p.allows(Access::Configure, "conf"));
        assert!(!p.allows(Access::Write, "conf"));
        assert!(!p.allows(Access::Read, "conf"));
        assert!(p.allows(Access::Write, "wx"));
        assert!(p.allows(Access::Read, "xr"));
        assert!(!p.allows(Access::Read, "rx"));
        let none = CompiledPermission::compile(&Permission::default()).unwrap();
        assert!(!none.allows(Access::Write, "q"));
        let full = CompiledPermission::compile(&Permission::full()).unwrap();
        assert!(full.allows(Access::Configure, "anything"));
    }

    #[test]
    fn access_names() {
        assert_eq!(Access::Configure.as_str(), "configure");
        assert_eq!(Access::Write.as_str(), "write");
        assert_eq!(Access::Read.as_str(), "read");
    }

    #[test]
    fn default_exchange_is_amq_default() {
        assert_eq!(resource_name(""), "amq.default");
        assert_eq!(resource_name("amq.topic"), "amq.topic");
        assert_eq!(resource_name("x"), "x");
        // A user allowed only on amq.* may publish to the default exchange,
        // one with an empty write pattern may not.
        let amq = perm("", "^amq\\.", "");
        assert!(amq.allows(Access::Write, resource_name("")));
        let nothing = perm("", "", "");
        assert!(!nothing.allows(Access::Write, resource_name("")));
        let exact = perm("", "^amq\\.default$", "");
        assert!(exact.allows(Access::Write, resource_name("")));
        assert!(!exact.allows(Access::Write, resource_name("amq.direct")));
    }

    #[test]
    fn invalid_patterns_are_refused() {
        for bad in ["(", "[a-", "a{2,1}", "(?=x)", "(a)\\1", "*"] {
            let e = validate(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("regular expression '{bad}' is invalid")),
                "{e}"
            );
            let p = Permission {
                configure: ".*".into(),
                write: bad.into(),
                read: ".*".into(),
            };
            assert_eq!(CompiledPermission::compile(&p).unwrap_err(), e);
        }
        for good in [
            "",
            ".*",
            "^$",
            "^amq\\.",
            "^(q1|q2)$",
            "{username}-.*",
            "^{vhost}\\..*",
        ] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn pcre_literal_braces() {
        assert_eq!(pcre_braces("{username}-.*"), "\\{username\\}-.*");
        assert_eq!(pcre_braces("^a{2}$"), "^a{2}$");
        assert_eq!(pcre_braces("^a{2,}b{1,3}$"), "^a{2,}b{1,3}$");
        assert_eq!(pcre_braces("a{,3}"), "a\\{,3\\}");
        assert_eq!(pcre_braces("\\{x\\}"), "\\{x\\}");
        assert_eq!(pcre_braces("[{}]x"), "[{}]x");
        assert_eq!(pcre_braces("[]{]{"), "[]{]\\{");
        assert_eq!(pcre_braces("no braces"), "no braces");
        let p = perm("^a{2}$", "{x}", "a{,3}");
        assert!(p.allows(Access::Configure, "aa"));
        assert!(!p.allows(Access::Configure, "a"));
        assert!(p.allows(Access::Write, "q{x}"));
        assert!(!p.allows(Access::Write, "x"));
        assert!(p.allows(Access::Read, "a{,3}"));
        assert!(!p.allows(Access::Read, "aaa"));
    }

    fn topic(w: &str, r: &str, user: &str, vhost: &str) -> CompiledTopicPermission {
        CompiledTopicPermission::compile(
            &TopicPermission {
                exchange: "amq.topic".into(),
                write: w.into(),
                read: r.into(),
            },
            user,
            vhost,
        )
        .unwrap()
    }

    #[test]
    fn topic_variables_are_expanded() {
        let t = topic("^{username}\\.", "^{vhost}\\.{username}$", "bob", "prod");
        assert_eq!(t.exchange, "amq.topic");
        assert!(t.allows(Access::Write, "bob.orders"));
        assert!(!t.allows(Access::Write, "alice.orders"));
        assert!(!t.allows(Access::Write, "{username}.orders"));
        assert!(t.allows(Access::Read, "prod.bob"));
        assert!(!t.allows(Access::Read, "prod.bobby"));
        assert!(!t.allows(Access::Read, "test.bob"));
        assert!(t.allows(Access::Configure, "whatever"));
        // Every occurrence.
        assert_eq!(expand_topic_pattern("{username}{username}", "a", "v"), "aa");
        assert_eq!(expand_topic_pattern("{user}", "a", "v"), "{user}");
        assert_eq!(expand_topic_pattern("{client_id}", "a", "v"), "{client_id}");
    }

    #[test]
    fn topic_values_are_not_escaped() {
        // A '.' in the user name is a regex metacharacter after expansion.
        let t = topic("^{username}$", ".*", "a.b", "/");
        assert!(t.allows(Access::Write, "a.b"));
        assert!(t.allows(Access::Write, "axb"));
        // A user name that is not a valid regex makes the pattern invalid.
        let e = CompiledTopicPermission::compile(
            &TopicPermission {
                exchange: "t".into(),
                write: "^{username}$".into(),
                read: "".into(),
            },
            "bad(",
            "/",
        );
        assert!(e.is_err());
        // {username} is expanded before {vhost}, as RabbitMQ's fold does.
        assert_eq!(expand_topic_pattern("{username}", "{vhost}", "v"), "v");
    }

    #[test]
    fn topic_empty_pattern_and_no_permission() {
        let t = topic("", ".*", "u", "/");
        assert!(!t.allows(Access::Write, "a.b"));
        assert!(t.allows(Access::Write, ""));
        assert!(t.allows(Access::Read, "a.b"));
        // No topic permission for the exchange: everything is allowed.
        assert!(topic_allows(None, Access::Write, "any.key"));
        assert!(topic_allows(None, Access::Read, "any.key"));
        assert!(!topic_allows(Some(&t), Access::Write, "a.b"));
    }
}
