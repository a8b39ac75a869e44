//! Errors found in a flow file, located by file, line and column.
//!
//! Loading a flow reports every problem of the file at once, so that one edit can fix them all.
//! Each [`Diagnostic`] prints like a compiler message (`flows/a.toml:12:5: error: ...`), which
//! editors and terminals turn into a link to the spot.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

/// One problem in a flow file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The flow file, as the caller named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, and where possible what to write instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in one flow file, in the order they appear in it. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[error("{}", render(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Diagnostics {
    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for a value returned by the loader; here for completeness.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Turns byte offsets of a source text into 1-based lines and columns.
pub(crate) struct LineIndex<'s> {
    source: &'s str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { source, starts }
    }

    /// The line and column of byte `offset`; offsets past the end (or inside a character) are
    /// clamped to the nearest preceding character boundary.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.source.len());
        while !self.source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self.source[start..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let index = LineIndex::new("ab\né = 1\n");
        assert_eq!(index.line_col(0), (1, 1));
        assert_eq!(index.line_col(2), (1, 3));
        assert_eq!(index.line_col(3), (2, 1));
        assert_eq!(index.line_col(6), (2, 3)); // after the two-byte 'é' and a space
        assert_eq!(index.line_col(100), (3, 1));
    }

    #[test]
    fn displays_like_a_compiler() {
        let diagnostics = Diagnostics(vec![
            Diagnostic {
                file: "flows/a.toml".into(),
                line: 1,
                column: 1,
                message: "first".into(),
            },
            Diagnostic {
                file: "flows/a.toml".into(),
                line: 7,
                column: 12,
                message: "second".into(),
            },
        ]);
        assert_eq!(
            diagnostics.to_string(),
            "flows/a.toml:1:1: error: first\nflows/a.toml:7:12: error: second"
        );
    }
}
