//! Fanout exchange: every binding gets every message; keys are ignored.

use super::{remove_one, Dest, ExchangeType};
use crate::protocol::FieldTable;

#[derive(Default)]
pub struct Fanout {
    dests: Vec<Dest>,
}

impl ExchangeType for Fanout {
    fn bind(&mut self, _key: &str, _args: &FieldTable, dest: Dest) {
        self.dests.push(dest);
    }
    fn unbind(&mut self, _key: &str, _args: &FieldTable, dest: Dest) {
        remove_one(&mut self.dests, dest);
    }
    #[inline]
    fn route(&mut self, _key: &[u8], _headers: Option<&FieldTable>, out: &mut Vec<Dest>) {
        out.extend_from_slice(&self.dests);
    }
}
