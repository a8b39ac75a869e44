//! Values in a flow file: sizes, durations, literal JSON and step configs (with `${NAME}`
//! taken from the environment).

use std::time::Duration;

use serde_json::{Number, Value};
use toml::de::DeValue;

use super::{Item, Loader};
use crate::flow::env::interpolate;

impl Loader<'_, '_> {
    /// A byte size written as text ("1 MiB", "512 KiB") or as a number of bytes.
    pub(super) fn size(&mut self, item: &Item<'_>, what: &str, min: u64, max: u64) -> Option<u64> {
        let bytes = match item.get_ref() {
            DeValue::String(text) => {
                match text.trim().parse::<bytesize::ByteSize>() {
                    Ok(size) => size.0,
                    Err(err) => {
                        self.error(
                        item.span().start,
                        format!("`{what}` = \"{text}\" is not a size ({err}); write it like \"64 MiB\""),
                    );
                        return None;
                    }
                }
            }
            DeValue::Integer(int) => {
                match u64::from_str_radix(int.as_str(), int.radix()) {
                    Ok(bytes) => bytes,
                    Err(_) => {
                        self.error(
                        item.span().start,
                        format!("`{what}` must be a positive number of bytes or a size like \"64 MiB\""),
                    );
                        return None;
                    }
                }
            }
            _ => {
                self.wrong_type(item, what, "a size such as \"64 MiB\"");
                return None;
            }
        };
        if bytes < min {
            self.error(
                item.span().start,
                format!("`{what}` must be at least {}", human_size(min)),
            );
            None
        } else if bytes > max {
            self.error(
                item.span().start,
                format!("`{what}` must be at most {}", human_size(max)),
            );
            None
        } else {
            Some(bytes)
        }
    }

    pub(super) fn duration(
        &mut self,
        item: &Item<'_>,
        what: &str,
        max: Duration,
    ) -> Option<Duration> {
        let text = match item.get_ref() {
            DeValue::String(text) => text,
            _ => {
                self.wrong_type(item, what, "a duration such as \"5s\"");
                return None;
            }
        };
        match humantime::parse_duration(text) {
            Err(err) => {
                self.error(
                    item.span().start,
                    format!(
                        "`{what}` = \"{text}\" is not a duration ({err}); \
                         write it like \"5s\" or \"2m 30s\""
                    ),
                );
                None
            }
            Ok(duration) if duration.is_zero() => {
                self.error(
                    item.span().start,
                    format!("`{what}` must be longer than 0s"),
                );
                None
            }
            Ok(duration) if duration > max => {
                self.error(
                    item.span().start,
                    format!(
                        "`{what}` must be at most {}",
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(duration) => Some(duration),
        }
    }

    /// A TOML value as JSON, strings taken as written.
    pub(super) fn literal(&mut self, item: &Item<'_>) -> Value {
        match item.get_ref() {
            DeValue::String(text) => Value::String(text.to_string()),
            DeValue::Array(array) => {
                Value::Array(array.iter().map(|element| self.literal(element)).collect())
            }
            DeValue::Table(table) => Value::Object(
                table
                    .iter()
                    .map(|(key, value)| (key.get_ref().to_string(), self.literal(value)))
                    .collect(),
            ),
            _ => self.scalar(item),
        }
    }

    /// A config value as JSON, with `${NAME}` in strings replaced; the JSON Pointer of every
    /// string that took a value from the environment goes to `from_env`.
    pub(super) fn config(
        &mut self,
        item: &Item<'_>,
        pointer: String,
        from_env: &mut Vec<String>,
    ) -> Value {
        match item.get_ref() {
            DeValue::String(text) => match interpolate(text, self.ctx.env) {
                Ok(interpolated) => {
                    if interpolated.from_env {
                        from_env.push(pointer);
                    }
                    self.env_used.extend(interpolated.used);
                    Value::String(interpolated.value)
                }
                Err(problems) => {
                    for problem in problems {
                        let offset = self.offset_in_string(item.span(), text, problem.offset());
                        self.error(offset, problem.message());
                    }
                    Value::Null
                }
            },
            DeValue::Array(array) => Value::Array(
                array
                    .iter()
                    .enumerate()
                    .map(|(i, element)| self.config(element, format!("{pointer}/{i}"), from_env))
                    .collect(),
            ),
            DeValue::Table(table) => Value::Object(
                table
                    .iter()
                    .map(|(key, value)| {
                        let key = key.get_ref().to_string();
                        let escaped = key.replace('~', "~0").replace('/', "~1");
                        let value = self.config(value, format!("{pointer}/{escaped}"), from_env);
                        (key, value)
                    })
                    .collect(),
            ),
            _ => self.scalar(item),
        }
    }

    /// A number, boolean or datetime as JSON.
    pub(super) fn scalar(&mut self, item: &Item<'_>) -> Value {
        match item.get_ref() {
            DeValue::Integer(int) => {
                if let Ok(n) = i64::from_str_radix(int.as_str(), int.radix()) {
                    Value::from(n)
                } else if let Ok(n) = u64::from_str_radix(int.as_str(), int.radix()) {
                    Value::from(n)
                } else {
                    self.error(
                        item.span().start,
                        format!("integer {int} does not fit in 64 bits"),
                    );
                    Value::Null
                }
            }
            DeValue::Float(float) => {
                match float
                    .as_str()
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                {
                    Some(n) => Value::Number(n),
                    None => {
                        self.error(
                            item.span().start,
                            format!("{float} cannot be represented in JSON: use a finite number"),
                        );
                        Value::Null
                    }
                }
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(datetime) => Value::String(datetime.to_string()),
            DeValue::String(text) => Value::String(text.to_string()),
            DeValue::Array(_) | DeValue::Table(_) => self.literal(item),
        }
    }
}

fn human_size(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes == 1 {
        "1 byte".to_owned()
    } else {
        format!("{bytes} bytes")
    }
}
