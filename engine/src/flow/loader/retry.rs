//! A step's retry keys (`retries`, `backoff`, `max_backoff`, `jitter`, `retry_on_trap`) and
//! the flow's `on_failure`.

use toml::de::{DeTable, DeValue};

use super::{Item, Loader};
use crate::flow::id::FlowId;
use crate::flow::retry::{DEFAULT_MAX_BACKOFF, Jitter, MAX_BACKOFF, MAX_RETRIES, RetryPolicy};

/// The step keys read here.
pub(super) const RETRY_KEYS: &[&str] = &[
    "retries",
    "backoff",
    "max_backoff",
    "jitter",
    "retry_on_trap",
];

impl Loader<'_, '_> {
    /// The step's retry policy; the default (no retries) when it sets none of the keys.
    pub(super) fn retry(&mut self, table: &DeTable<'_>) -> Option<RetryPolicy> {
        let mut policy = RetryPolicy::default();
        let mut ok = true;
        if let Some(item) = table.get("retries") {
            match self.retries(item) {
                Some(n) => policy.retries = n,
                None => return None,
            }
        }
        if let Some(item) = table.get("backoff") {
            match self.duration(item, "backoff", MAX_BACKOFF) {
                Some(d) => policy.backoff = d,
                None => ok = false,
            }
        }
        match table.get("max_backoff") {
            Some(item) => match self.duration(item, "max_backoff", MAX_BACKOFF) {
                Some(d) if d < policy.backoff => {
                    self.error(
                        item.span().start,
                        "`max_backoff` must not be shorter than `backoff`",
                    );
                    ok = false;
                }
                Some(d) => policy.max_backoff = d,
                None => ok = false,
            },
            // A backoff longer than the default cap is what the flow asked for.
            None => policy.max_backoff = DEFAULT_MAX_BACKOFF.max(policy.backoff),
        }
        if let Some(item) = table.get("jitter") {
            match self.jitter(item) {
                Some(j) => policy.jitter = j,
                None => ok = false,
            }
        }
        if let Some(item) = table.get("retry_on_trap") {
            match item.get_ref() {
                DeValue::Boolean(value) => policy.on_trap = *value,
                _ => {
                    self.wrong_type(item, "retry_on_trap", "true or false");
                    ok = false;
                }
            }
        }
        if policy.retries == 0 {
            // Keys that would do nothing are a mistake worth pointing at.
            for key in &RETRY_KEYS[1..] {
                if let Some(key_item) = table.get(*key) {
                    self.error(
                        key_item.span().start,
                        format!("`{key}` has no effect without `retries`: add `retries = 3`"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(policy)
    }

    fn retries(&mut self, item: &Item<'_>) -> Option<u32> {
        let DeValue::Integer(int) = item.get_ref() else {
            self.wrong_type(item, "retries", "a whole number from 0 to 20");
            return None;
        };
        match u32::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if n <= MAX_RETRIES => Some(n),
            _ => {
                self.error(
                    item.span().start,
                    format!("`retries` must be a whole number from 0 to {MAX_RETRIES}"),
                );
                None
            }
        }
    }

    /// `"none"`, `"full"` or a percentage such as `"20%"` (more than 0, at most 100).
    fn jitter(&mut self, item: &Item<'_>) -> Option<Jitter> {
        let text = self.string(item, "jitter")?;
        let text = text.trim();
        let jitter = match text {
            "none" => Some(Jitter::None),
            "full" => Some(Jitter::Full),
            _ => text
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .filter(|n| *n > 0.0 && *n <= 100.0)
                .map(|n| Jitter::Percent(n / 100.0)),
        };
        if jitter.is_none() {
            self.error(
                item.span().start,
                format!(
                    "`jitter` = \"{text}\" is not a jitter: write \"none\", \"full\" (a random \
                     wait up to the backoff) or a percentage such as \"20%\" (the backoff \
                     plus or minus up to 20%)"
                ),
            );
        }
        jitter
    }

    /// `on_failure = "flow-id"`: the flow started when a run of this one fails. The flow need
    /// not exist yet; a run that fails while it does not is logged and starts nothing.
    pub(super) fn on_failure(&mut self, item: &Item<'_>) -> Option<FlowId> {
        let text = self.string(item, "on_failure")?;
        match FlowId::new(text) {
            Ok(id) => Some(id),
            Err(err) => {
                self.error(
                    item.span().start,
                    format!("`on_failure` = \"{text}\" is not a flow id: {err}"),
                );
                None
            }
        }
    }
}
