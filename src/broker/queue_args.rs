//! Validation of queue arguments (`x-…`) at declaration, with RabbitMQ's 406
//! texts: `invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}`.
//! Unknown arguments are accepted and ignored, as RabbitMQ does.

use super::error::AmqpError;
use crate::protocol::{FieldTable, FieldValue};

/// What a known argument must look like.
enum Rule {
    /// Integer, >= min.
    Int {
        min: i64,
    },
    /// Integer in [0, 255].
    Priority,
    Str,
    OneOf(&'static [&'static str]),
    Bool,
}

const RULES: &[(&str, Rule)] = &[
    ("x-message-ttl", Rule::Int { min: 0 }),
    ("x-expires", Rule::Int { min: 1 }),
    ("x-max-length", Rule::Int { min: 0 }),
    ("x-max-length-bytes", Rule::Int { min: 0 }),
    ("x-max-priority", Rule::Priority),
    ("x-dead-letter-exchange", Rule::Str),
    ("x-dead-letter-routing-key", Rule::Str),
    (
        "x-overflow",
        Rule::OneOf(&["drop-head", "reject-publish", "reject-publish-dlx"]),
    ),
    ("x-single-active-consumer", Rule::Bool),
    ("x-queue-mode", Rule::OneOf(&["default", "lazy"])),
    ("x-queue-type", Rule::OneOf(&["classic", "quorum"])),
];

/// Checks every known argument of a queue.declare.
pub fn validate(queue: &str, args: &FieldTable) -> Result<(), AmqpError> {
    for (key, rule) in RULES {
        let Some(v) = args.get(key) else { continue };
        if let Err(detail) = check(rule, v) {
            return Err(AmqpError::precondition(format!(
                "invalid arg '{}' for queue '{}' in vhost '/': {}",
                key, queue, detail
            )));
        }
    }
    if args.get("x-dead-letter-routing-key").is_some()
        && args.get("x-dead-letter-exchange").is_none()
    {
        return Err(AmqpError::precondition(format!(
            "invalid arg 'x-dead-letter-routing-key' for queue '{}' in vhost '/': \
             {{routing_key_but_no_dlx_defined}}",
            queue
        )));
    }
    Ok(())
}

fn expected(rule: &Rule) -> &'static str {
    match rule {
        Rule::Int { .. } | Rule::Priority => "integer",
        Rule::Str | Rule::OneOf(_) => "longstr",
        Rule::Bool => "bool",
    }
}

fn check(rule: &Rule, v: &FieldValue) -> Result<(), String> {
    let unacceptable = || format!("\"expected {}, got {}\"", expected(rule), v.type_name());
    match rule {
        Rule::Int { min } => {
            let n = v.as_i64().ok_or_else(unacceptable)?;
            if n < 0 {
                Err(format!("{{value_negative,{}}}", n))
            } else if n < *min {
                Err(format!("{{value_zero,{}}}", n))
            } else {
                Ok(())
            }
        }
        Rule::Priority => {
            let n = v.as_i64().ok_or_else(unacceptable)?;
            if n < 0 {
                Err(format!("{{value_negative,{}}}", n))
            } else if n > 255 {
                Err(format!("{{max_value_exceeded,{}}}", n))
            } else {
                Ok(())
            }
        }
        Rule::Str => v.as_str().map(|_| ()).ok_or_else(unacceptable),
        Rule::OneOf(allowed) => {
            let s = v.as_str().ok_or_else(unacceptable)?;
            if allowed.contains(&s) {
                Ok(())
            } else {
                Err(format!("{{invalid_value,<<\"{}\">>}}", s))
            }
        }
        Rule::Bool => v.as_bool().map(|_| ()).ok_or_else(unacceptable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn t(k: &str, v: FieldValue) -> FieldTable {
        let mut t = FieldTable::new();
        t.insert(k, v);
        t
    }

    #[test]
    fn rabbitmq_texts() {
        let e = validate("q", &t("x-message-ttl", FieldValue::I32(-1))).unwrap_err();
        assert_eq!(e.text, "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}");
        let e = validate("q", &t("x-expires", FieldValue::I32(0))).unwrap_err();
        assert!(e.text.ends_with("{value_zero,0}"));
        let e = validate(
            "q",
            &t(
                "x-message-ttl",
                FieldValue::LongStr(Bytes::from_static(b"abc")),
            ),
        )
        .unwrap_err();
        assert!(e.text.ends_with("\"expected integer, got longstr\""));
        assert!(validate("q", &t("x-message-ttl", FieldValue::I64(0))).is_ok());
        assert!(validate("q", &t("x-custom", FieldValue::Void)).is_ok());
        let e = validate(
            "q",
            &t(
                "x-overflow",
                FieldValue::LongStr(Bytes::from_static(b"nope")),
            ),
        )
        .unwrap_err();
        assert_eq!(e.code, 406);
    }
}
