//! A flow's `retain = { age = "7d", runs = 10000 }`: which of its finished runs the store
//! keeps.

use std::time::Duration;

use toml::de::DeValue;

use super::{Item, Loader};
use crate::flow::Retain;

const RETAIN_KEYS: &[&str] = &["age", "runs"];

/// The longest `retain.age`: a hundred years, so that any sensible age fits and the
/// cutoff it makes stays a valid time.
const MAX_AGE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Loader<'_, '_> {
    pub(super) fn retain(&mut self, item: &Item<'_>) -> Option<Retain> {
        let DeValue::Table(table) = item.get_ref() else {
            self.wrong_type(
                item,
                "retain",
                "a table such as `retain = { age = \"7d\", runs = 10000 }`",
            );
            return None;
        };
        self.unknown_keys(table, RETAIN_KEYS, "in `retain`");
        let age = match table.get("age") {
            None => Some(None),
            Some(item) => self.duration(item, "retain.age", MAX_AGE).map(Some),
        };
        let runs = match table.get("runs") {
            None => Some(None),
            Some(item) => match item.get_ref() {
                DeValue::Integer(int) => match u64::from_str_radix(int.as_str(), int.radix()) {
                    Ok(runs) if runs > 0 => Some(Some(runs)),
                    _ => {
                        self.error(
                            item.span().start,
                            "`retain.runs` must be a whole number of runs, at least 1",
                        );
                        None
                    }
                },
                _ => {
                    self.wrong_type(item, "retain.runs", "a whole number of runs such as 10000");
                    None
                }
            },
        };
        Some(Retain {
            age: age?,
            runs: runs?,
        })
    }
}
