//! Source files and diagnostics (data only; rendering lives in `render`).

use crate::ast::{FileId, Span};

/// One script source: a file, the `-e` text, or a tapset.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Name shown in diagnostics (a path, or `<input>` for `-e`).
    pub name: String,
    /// Full text.
    pub text: String,
}

/// All sources of a session.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    /// Files indexed by `FileId`.
    pub files: Vec<SourceFile>,
}

impl SourceMap {
    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile {
            name: name.into(),
            text: text.into(),
        });
        FileId((self.files.len() - 1) as u32)
    }

    /// The file with this id.
    pub fn file(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// 1-based line and column (in characters) of a span's start.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let Some(f) = self.file(span.file) else {
            return (0, 0);
        };
        let start = (span.start as usize).min(f.text.len());
        let before = &f.text[..floor_char_boundary(&f.text, start)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// The text of the span.
    pub fn snippet(&self, span: Span) -> &str {
        let Some(f) = self.file(span.file) else {
            return "";
        };
        let s = floor_char_boundary(&f.text, span.start as usize);
        let e = floor_char_boundary(&f.text, span.end as usize).max(s);
        &f.text[s..e]
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Stops the session before any target starts.
    Error,
    /// Reported; the session goes on.
    Warning,
}

/// A labelled span inside a diagnostic.
#[derive(Clone, Debug)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What about it (may be empty).
    pub message: String,
}

/// A problem in a script, found by any pass before the target runs.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The kind prefix stap uses: `parse error`, `semantic error`, ...
    pub kind: String,
    /// The message, lowercase, no trailing period (stap style).
    pub message: String,
    /// The primary location first, then secondary ones.
    pub labels: Vec<Label>,
    /// Extra lines such as `did you mean: foo, food?`.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error with one primary label.
    pub fn error(kind: &str, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            kind: kind.into(),
            message: message.into(),
            labels: vec![Label {
                span,
                message: String::new(),
            }],
            notes: Vec::new(),
        }
    }

    /// A warning with one primary label.
    pub fn warning(kind: &str, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            kind: kind.into(),
            message: message.into(),
            labels: vec![Label {
                span,
                message: String::new(),
            }],
            notes: Vec::new(),
        }
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}
