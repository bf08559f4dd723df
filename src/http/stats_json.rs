//! Statistics as RabbitMQ's management API writes them
//! (`rabbit_mgmt_format`, `rabbit_mgmt_stats:format_range/…` with
//! `rates_mode = basic`): every counter `x` comes with `x_details:
//! {"rate": r}`, r per second over the last sample interval
//! (`admin::stats::Sampler`).

use crate::admin::stats::Rates;
use crate::core::ids::VhostId;
use crate::core::stats::MsgStats;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The `message_stats` fields a channel shows once it has published.
pub(crate) const PUBLISH_FIELDS: &[&str] =
    &["publish", "confirm", "return_unroutable", "drop_unroutable"];

/// The `message_stats` fields a channel shows once it has consumed or got.
pub(crate) const DELIVER_FIELDS: &[&str] = &[
    "ack",
    "deliver",
    "deliver_get",
    "deliver_no_ack",
    "get",
    "get_empty",
    "get_no_ack",
    "redeliver",
];

/// `{"rate": r}`, r rounded to 0.1 (RabbitMQ's rates over a 5 s interval
/// never show more).
pub(crate) fn details(rate: f64) -> Value {
    json!({ "rate": (rate * 10.0).round() / 10.0 })
}

/// Inserts `name` and `name_details`.
pub(crate) fn put_counter(m: &mut Map<String, Value>, name: &str, value: u64, rate: f64) {
    m.insert(name.to_string(), json!(value));
    m.insert(format!("{name}_details"), details(rate));
}

/// The `message_stats` object: the fields of `stats` named in `only` (all
/// twelve when None), each with its rate from `rates`.
pub(crate) fn message_stats(stats: &MsgStats, rates: &Rates, only: Option<&[&str]>) -> Value {
    let mut m = Map::new();
    for (i, (name, value)) in stats.fields().iter().enumerate() {
        if only.is_none_or(|o| o.contains(name)) {
            put_counter(&mut m, name, *value, rates[i]);
        }
    }
    Value::Object(m)
}

/// A channel's (or connection's) `message_stats` as RabbitMQ shows it: the
/// publishing fields once it has published, the delivery fields once it
/// has consumed or got; absent (None) while nothing happened.
pub(crate) fn channel_message_stats(stats: &MsgStats, rates: &Rates) -> Option<Value> {
    let published = stats.publish + stats.confirm + stats.return_unroutable + stats.drop_unroutable;
    let delivered = stats.deliver_get() + stats.get_empty + stats.ack + stats.redeliver;
    let mut m = Map::new();
    for (i, (name, value)) in stats.fields().iter().enumerate() {
        if (published > 0 && PUBLISH_FIELDS.contains(name))
            || (delivered > 0 && DELIVER_FIELDS.contains(name))
        {
            put_counter(&mut m, name, *value, rates[i]);
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// Vhost ids to names (`Admin::vhost_names`); an unknown id (a vhost
/// deleted meanwhile, or a connection before connection.open) is "".
pub(crate) struct VhostNames(pub HashMap<VhostId, Arc<str>>);

impl VhostNames {
    pub fn name(&self, id: Option<VhostId>) -> &str {
        id.and_then(|id| self.0.get(&id)).map_or("", |n| n)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + (m <= 2) as i64;
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-12-03 (1796339668 s since the epoch).
        assert_eq!(civil_from_days(1_796_339_668 / 86_400), (2026, 12, 3));
        assert_eq!(civil_from_days(951_782_400 / 86_400), (2000, 2, 29));
    }

    #[test]
    fn channel_stats_groups() {
        let rates = [0.0; 12];
        assert!(channel_message_stats(&MsgStats::default(), &rates).is_none());
        let s = MsgStats {
            publish: 3,
            ..MsgStats::default()
        };
        let v = channel_message_stats(&s, &rates).unwrap();
        assert_eq!(v["publish"], 3);
        assert_eq!(v["publish_details"]["rate"], 0.0);
        assert!(v.get("deliver").is_none());
        let s = MsgStats {
            deliver: 2,
            ..MsgStats::default()
        };
        let v = channel_message_stats(&s, &rates).unwrap();
        assert_eq!(v["deliver_get"], 2);
        assert!(v.get("publish").is_none());
    }
}
