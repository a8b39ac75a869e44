//! `${NAME}` interpolation of environment values into config strings, done once at load time.
//!
//! Values come from a lookup the caller passes, never from the process directly, so loading
//! stays pure and testable. `$${` writes a literal `${`; a `$` in any other position is kept as
//! it is.

/// A problem with one `${...}` in a string; `offset` is the byte offset of its `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvProblem {
    /// The variable is not set.
    Missing { name: String, offset: usize },
    /// `${` without a closing `}`.
    Unterminated { offset: usize },
    /// What is between the braces is not a variable name.
    BadName { name: String, offset: usize },
}

impl EnvProblem {
    pub(crate) fn offset(&self) -> usize {
        match self {
            EnvProblem::Missing { offset, .. }
            | EnvProblem::Unterminated { offset }
            | EnvProblem::BadName { offset, .. } => *offset,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            EnvProblem::Missing { name, .. } => format!(
                "environment variable `{name}` is not set (referenced as `${{{name}}}`); set it before starting Weir, or write `$${{` for a literal `${{`"
            ),
            EnvProblem::Unterminated { .. } => {
                "`${` has no closing `}`; write `$${` for a literal `${`".to_owned()
            }
            EnvProblem::BadName { name, .. } => format!(
                "`${{{name}}}` is not a variable reference: names use A-Z, a-z, 0-9 and '_' and do not start with a digit; write `$${{` for a literal `${{`"
            ),
        }
    }
}

/// A string after interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpolated {
    pub(crate) value: String,
    /// True when at least one `${NAME}` was replaced, so the value may hold a secret.
    pub(crate) from_env: bool,
    /// Each `${NAME}` replaced, with its value: what the flow's redactor masks.
    pub(crate) used: Vec<(String, String)>,
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` in `text` with `lookup(NAME)`, reporting every problem at once.
pub(crate) fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, Vec<EnvProblem>> {
    let mut value = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut used = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(dollar) = rest.find('$') {
        value.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        let consumed = if after.starts_with("$${") {
            value.push_str("${");
            3
        } else if let Some(body) = after.strip_prefix("${") {
            match body.find('}') {
                None => {
                    problems.push(EnvProblem::Unterminated {
                        offset: offset + dollar,
                    });
                    after.len()
                }
                Some(end) => {
                    let name = &body[..end];
                    if !is_name(name) {
                        problems.push(EnvProblem::BadName {
                            name: name.to_owned(),
                            offset: offset + dollar,
                        });
                    } else if let Some(found) = lookup(name) {
                        value.push_str(&found);
                        used.push((name.to_owned(), found));
                    } else {
                        problems.push(EnvProblem::Missing {
                            name: name.to_owned(),
                            offset: offset + dollar,
                        });
                    }
                    end + 3
                }
            }
        } else {
            value.push('$');
            1
        };
        offset += dollar + consumed;
        rest = &rest[dollar + consumed..];
    }
    value.push_str(rest);
    if problems.is_empty() {
        Ok(Interpolated {
            value,
            from_env: !used.is_empty(),
            used,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ok(text: &str) -> Interpolated {
        interpolate(text, &env).unwrap()
    }

    #[test]
    fn replaces_variables_and_marks_the_value() {
        assert_eq!(
            ok("Bearer ${TOKEN}!"),
            Interpolated {
                value: "Bearer s3cret!".into(),
                from_env: true,
                used: vec![("TOKEN".into(), "s3cret".into())],
            }
        );
        assert_eq!(ok("${EMPTY}").value, "");
        assert!(!ok("plain").from_env);
    }

    #[test]
    fn escapes_and_lone_dollars_stay_literal() {
        assert_eq!(ok("$${TOKEN}").value, "${TOKEN}");
        assert!(!ok("$${TOKEN}").from_env);
        assert_eq!(ok("costs $5, $$6 or $").value, "costs $5, $$6 or $");
    }

    #[test]
    fn reports_every_problem_with_its_offset() {
        let problems = interpolate("${A} and ${TOKEN} ${9x} ${B", &env).unwrap_err();
        assert_eq!(
            problems,
            vec![
                EnvProblem::Missing {
                    name: "A".into(),
                    offset: 0
                },
                EnvProblem::BadName {
                    name: "9x".into(),
                    offset: 18
                },
                EnvProblem::Unterminated { offset: 24 },
            ]
        );
    }
}
