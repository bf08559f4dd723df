//! Direct exchange: a message goes to the bindings whose key equals its routing key.

use super::{remove_one, Dest, ExchangeType};
use crate::core::name_map::NameMap;
use crate::protocol::FieldTable;

#[derive(Default)]
pub struct Direct {
    /// Key → destinations, one entry per binding (a multiset, since bindings that
    /// differ only in arguments are distinct).
    by_key: NameMap<Vec<Dest>>,
}

impl ExchangeType for Direct {
    fn bind(&mut self, key: &str, _args: &FieldTable, dest: Dest) {
        self.by_key
            .entry(key.as_bytes().into())
            .or_default()
            .push(dest);
    }
    fn unbind(&mut self, key: &str, _args: &FieldTable, dest: Dest) {
        if let Some(v) = self.by_key.get_mut(key.as_bytes()) {
            remove_one(v, dest);
            if v.is_empty() {
                self.by_key.remove(key.as_bytes());
            }
        }
    }
    #[inline]
    fn route(&mut self, key: &[u8], _headers: Option<&FieldTable>, out: &mut Vec<Dest>) {
        if let Some(v) = self.by_key.get(key) {
            out.extend_from_slice(v);
        }
    }
}
