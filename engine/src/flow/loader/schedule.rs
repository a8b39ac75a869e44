//! The flow-level keys that shape when a flow's runs execute: `concurrency` and `order_by`
//! (see [`crate::run`]'s dispatcher for what they do).

use toml::de::DeValue;

use super::{Item, Loader};
use crate::flow::MAX_CONCURRENCY;
use crate::flow::query::Query;

impl Loader<'_, '_> {
    /// `concurrency = N`: a whole number from 1 to [`MAX_CONCURRENCY`].
    pub(super) fn concurrency(&mut self, item: &Item<'_>) -> Option<u32> {
        let DeValue::Integer(int) = item.get_ref() else {
            self.wrong_type(
                item,
                "concurrency",
                "a whole number of runs, such as `concurrency = 4`",
            );
            return None;
        };
        match u32::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Some(n),
            _ => {
                self.error(
                    item.span().start,
                    format!(
                        "`concurrency` must be from 1 to {MAX_CONCURRENCY} (runs of this flow \
                         executing at once), found {int}"
                    ),
                );
                None
            }
        }
    }

    /// `order_by = "$.webhook…"`: a singular query on the webhook, read when it arrives.
    pub(super) fn order_by(&mut self, item: &Item<'_>) -> Option<Query> {
        self.arrival_query(item, "order_by", "$.webhook.body.customer")
    }
}
