//! Headers exchange: routes on message header values, per binding arguments with
//! `x-match` = all | any | all-with-x | any-with-x (see `headers_match`).

use super::headers_match::{headers_match, parse_x_match, XMatch};
use super::{Dest, ExchangeType};
use crate::protocol::FieldTable;

#[derive(Default)]
pub struct Headers {
    bindings: Vec<(XMatch, FieldTable, Dest)>,
}

impl ExchangeType for Headers {
    fn bind(&mut self, _key: &str, args: &FieldTable, dest: Dest) {
        // Arguments were validated when the binding was declared.
        let mode = parse_x_match(args).unwrap_or(XMatch::All);
        self.bindings.push((mode, args.clone(), dest));
    }
    fn unbind(&mut self, _key: &str, args: &FieldTable, dest: Dest) {
        if let Some(i) = self
            .bindings
            .iter()
            .position(|(_, a, d)| *d == dest && a == args)
        {
            self.bindings.remove(i);
        }
    }
    fn route(&mut self, _key: &[u8], headers: Option<&FieldTable>, out: &mut Vec<Dest>) {
        for (mode, args, dest) in &self.bindings {
            if headers_match(args, *mode, headers) {
                out.push(*dest);
            }
        }
    }
    fn needs_headers(&self) -> bool {
        true
    }
}
