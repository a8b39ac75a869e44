//! Masking the `${ENV}` values a flow uses out of what a run stores and serves.
//!
//! A flow's config and `verify` may take secrets from the environment. Steps get them as they
//! are (a later step may need a token an earlier one built), but every text the host keeps or
//! shows about a run (a step's input, output, logs and error, the run's error, the result a
//! waiting sender gets) goes through the flow's [`Redactor`] first, which writes each value as
//! `[redacted:NAME]`.
//!
//! Values shorter than [`MIN_REDACTED_LEN`] are not masked: they are settings rather than
//! secrets (`us-east`, `3`, `true`), and masking them would rewrite ordinary data everywhere
//! they happen to occur (every `3` in every stored string) while hiding nothing a guess would
//! not find. Secrets worth the name are longer; HMAC keys must be 16 bytes at least anyway.

use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::{Map, Value};

/// The shortest `${ENV}` value that is masked, in bytes.
pub const MIN_REDACTED_LEN: usize = 8;

/// Masks a flow's `${ENV}` values. Cheap to clone; a flow without such values masks nothing and
/// costs nothing.
#[derive(Clone, Default)]
pub struct Redactor {
    /// `None` when there is nothing to mask.
    matcher: Option<AhoCorasick>,
    /// `[redacted:NAME]`, by pattern index of `matcher`.
    replacements: Vec<String>,
}

impl fmt::Debug for Redactor {
    /// The names masked, never their values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Redactor").field(&self.replacements).finish()
    }
}

impl Redactor {
    /// A redactor for these `(NAME, value)` pairs. A value used under two names is masked with
    /// the first name in alphabetical order; values under [`MIN_REDACTED_LEN`] are left alone.
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> Redactor {
        let mut pairs: Vec<(String, String)> = values
            .into_iter()
            .filter(|(_, value)| value.len() >= MIN_REDACTED_LEN)
            .collect();
        pairs.sort();
        let mut seen = std::collections::HashSet::new();
        pairs.retain(|(_, value)| seen.insert(value.clone()));
        if pairs.is_empty() {
            return Redactor::default();
        }
        // Leftmost-longest: of two values where one contains the other, the longer is masked
        // whole.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(pairs.iter().map(|(_, value)| value.as_bytes()));
        match matcher {
            Ok(matcher) => Redactor {
                matcher: Some(matcher),
                replacements: pairs
                    .iter()
                    .map(|(name, _)| format!("[redacted:{name}]"))
                    .collect(),
            },
            // Only past aho-corasick's size limits (megabytes of values): then every string
            // is hidden whole, rather than none.
            Err(_) => Redactor {
                matcher: None,
                replacements: vec!["[redacted]".to_owned()],
            },
        }
    }

    /// Whether it masks nothing.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none() && self.replacements.is_empty()
    }

    /// `text` with every value masked; `None` when it holds none.
    pub fn text(&self, text: &str) -> Option<String> {
        match &self.matcher {
            Some(matcher) => matcher
                .is_match(text)
                .then(|| matcher.replace_all(text, &self.replacements)),
            None if self.replacements.is_empty() => None,
            None => Some(self.replacements[0].clone()),
        }
    }

    /// Masks `text` in place.
    pub fn string(&self, text: &mut String) {
        if let Some(masked) = self.text(text) {
            *text = masked;
        }
    }

    /// Masks every string of `value` in place: values, keys, and the text of numbers (a
    /// number holding a value becomes the masked string).
    pub fn value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(text) => self.string(text),
            Value::Number(number) => {
                if let Some(masked) = self.text(&number.to_string()) {
                    *value = Value::String(masked);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.value(item)),
            Value::Object(map) => {
                if map.keys().any(|key| self.text(key).is_some()) {
                    let old = std::mem::take(map);
                    *map = old
                        .into_iter()
                        .map(|(key, mut item)| {
                            self.value(&mut item);
                            (self.text(&key).unwrap_or(key), item)
                        })
                        .collect::<Map<String, Value>>();
                } else {
                    map.values_mut().for_each(|item| self.value(item));
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn redactor() -> Redactor {
        Redactor::new([
            ("API_KEY".to_owned(), "supersecretapikey123".to_owned()),
            ("SHORT".to_owned(), "us-east".to_owned()),
            ("TOKEN".to_owned(), "tok_0123456789".to_owned()),
            ("LONGER".to_owned(), "tok_0123456789_and_more".to_owned()),
        ])
    }

    #[test]
    fn masks_each_value_by_name_in_strings_keys_and_numbers() {
        let mut value = json!({
            "a": "Bearer supersecretapikey123!",
            "supersecretapikey123": ["tok_0123456789", "tok_0123456789_and_more", 1],
            "region": "us-east",
        });
        redactor().value(&mut value);
        assert_eq!(
            value,
            json!({
                "a": "Bearer [redacted:API_KEY]!",
                "[redacted:API_KEY]": ["[redacted:TOKEN]", "[redacted:LONGER]", 1],
                "region": "us-east",
            })
        );
        let digits = Redactor::new([("PIN".to_owned(), "1234567890".to_owned())]);
        let mut number = json!([1234567890, 12]);
        digits.value(&mut number);
        assert_eq!(number, json!(["[redacted:PIN]", 12]));
    }

    #[test]
    fn debug_names_the_values_without_showing_them() {
        let shown = format!("{:?}", redactor());
        assert!(shown.contains("API_KEY"), "{shown}");
        assert!(!shown.contains("supersecret"), "{shown}");
    }

    #[test]
    fn nothing_to_mask_costs_nothing() {
        let empty = Redactor::new([("X".to_owned(), "short".to_owned())]);
        assert!(empty.is_empty());
        assert_eq!(empty.text("short"), None);
    }
}
