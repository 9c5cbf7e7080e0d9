//! Renders a [`Diagnostic`] as SystemTap prints its errors.
//!
//! Parse errors (kind `parse error`) look like stap's `parser::print_error`:
//!
//! ```text
//! parse error: expected ')'
//!         saw: operator '{' at /tmp/x.stp:1:35
//!      source: probe process("./a").function("f" { printf("x") }
//!                                                ^
//!
//! ```
//!
//! (stap 4.8; every error ends with an empty line, warnings do not.) Other kinds (`semantic error`, ...) follow
//! `systemtap_session::print_error`: the token goes on the message line and the source
//! is indented by eight spaces. Warnings start with `WARNING: ` and indent by one.
//! The caret line copies the whitespace of the source line (so tabs line up) and
//! replaces every other character by a space.
//!
//! The token shown is the label's message when it is not empty (the parser stores
//! stap's token description there, e.g. `operator '{'`); otherwise it is derived by
//! lexing the source at the label's start. Secondary labels are shown the same way
//! after the primary one; notes follow on their own lines.

use crate::ast::FileId;
use crate::ast::Span;
use crate::diag::{Diagnostic, Label, Severity, SourceMap};
use crate::lexer::{self, is_keyword, Tok};

/// Renders one diagnostic, ending with a newline.
pub fn render(d: &Diagnostic, sources: &SourceMap) -> String {
    render_in(d, sources, &mut None)
}

/// [`render`] inside a sequence of diagnostics: stap 4.8 names a semantic error's or a
/// warning's file only when it differs from the previously printed location's file
/// (`at :3:31` otherwise); parse errors always name it.
/// `seq` is `None` for a diagnostic on its own (every file named), else the file of the
/// previous location printed in the sequence (`Some(None)` before the first).
fn render_in(d: &Diagnostic, sources: &SourceMap, seq: &mut Option<Option<FileId>>) -> String {
    // The parser prints its errors itself, always with the file name.
    let parse_error = d.kind == "parse error" && d.severity == Severity::Error;
    let mut token_text = |label: &Label, sources: &SourceMap| {
        let file = label.span.file;
        let elide = match seq {
            _ if parse_error => false,
            Some(prev) => {
                let same = *prev == Some(file);
                *prev = Some(file);
                same
            }
            None => false,
        };
        token_text(label, sources, elide)
    };
    let mut out = String::new();
    let parse_style = d.kind == "parse error" && d.severity == Severity::Error;
    let align = if d.severity == Severity::Warning {
        " "
    } else if parse_style {
        "     "
    } else {
        "        "
    };
    let head = if d.severity == Severity::Warning {
        "WARNING".to_string()
    } else {
        d.kind.clone()
    };
    out.push_str(&head);
    out.push_str(": ");
    out.push_str(&d.message);
    let mut labels = d.labels.iter();
    if let Some(primary) = labels.next() {
        if parse_style {
            out.push('\n');
            match at_eof(primary.span, sources) {
                Some(name) => {
                    out.push_str(&format!("        saw: {name} EOF\n"));
                }
                // Errors stap's lexer throws carry an empty junk token and say `at:`.
                None if primary.message == "junk ''"
                    || primary.message.starts_with(crate::parser::AT_TOKEN) =>
                {
                    out.push_str(&format!("         at: {}\n", token_text(primary, sources)));
                    source_lines(&mut out, align, primary.span, sources);
                }
                None => {
                    out.push_str(&format!("        saw: {}\n", token_text(primary, sources)));
                    source_lines(&mut out, align, primary.span, sources);
                }
            }
        } else {
            out.push_str(": ");
            out.push_str(&token_text(primary, sources));
            out.push('\n');
            source_lines(&mut out, align, primary.span, sources);
        }
    } else {
        out.push('\n');
    }
    for l in labels {
        // stap chains a further location as the bare token on its own line
        // (`identifier 'f' at x.stp:1:10`) for semantic errors, `at:` for parse errors.
        if parse_style || d.severity == Severity::Warning {
            out.push_str(&format!("{align}at: {}\n", token_text(l, sources)));
        } else {
            out.push_str(&format!("{}\n", token_text(l, sources)));
        }
        source_lines(&mut out, align, l.span, sources);
    }
    for n in &d.notes {
        out.push_str(align);
        out.push_str(n);
        out.push('\n');
    }
    if d.severity == Severity::Error {
        out.push('\n');
    }
    out
}

/// Renders the diagnostics of a pass that failed, closed as stap closes it: every
/// diagnostic (one whose kind and message were already shown is counted instead, as
/// stap suppresses similar errors and warnings), for pass 1 the count line (`2 parse errors.`),
/// `Pass N: ... failed.  [man error::passN]`, then the number of suppressed errors.
pub fn render_failure(diags: &[Diagnostic], sources: &SourceMap, pass: u8) -> String {
    let mut out = String::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut last_file = Some(None);
    let mut suppressed = 0usize;
    let mut suppressed_warnings = 0usize;
    for d in diags {
        let key = (d.kind.as_str(), d.message.as_str());
        let warning = d.severity == Severity::Warning;
        // The preprocessor's errors (explicit tokens) are all shown, as stap shows them.
        let explicit = d
            .labels
            .first()
            .is_some_and(|l| l.message.starts_with(crate::parser::AT_TOKEN));
        if seen.contains(&key) && !explicit {
            if warning {
                suppressed_warnings += 1;
            } else {
                suppressed += 1;
            }
            continue;
        }
        seen.push(key);
        out.push_str(&render_in(d, sources, &mut last_file));
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if pass == 1 && errors > 0 {
        let plural = if errors == 1 { "" } else { "s" };
        out.push_str(&format!("{errors} parse error{plural}.\n"));
    }
    let what = match pass {
        1 => "parse",
        2 => "analysis",
        3 => "translation",
        4 => "compilation",
        _ => "run",
    };
    out.push_str(&format!(
        "Pass {pass}: {what} failed.  [man error::pass{pass}]\n"
    ));
    for (n, what) in [(suppressed, "error"), (suppressed_warnings, "warning")] {
        if n > 0 {
            out.push_str(&format!(
                "Number of similar {what} messages suppressed: {n}.\nRerun with -v to see them.\n"
            ));
        }
    }
    out
}

/// Renders several diagnostics and stap's closing count line for errors of the first
/// error's kind, e.g. `2 parse errors.`.
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap) -> String {
    let mut out = String::new();
    let mut last_file = Some(None);
    for d in diags {
        out.push_str(&render_in(d, sources, &mut last_file));
    }
    let errors: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if let Some(first) = errors.first() {
        let n = errors.iter().filter(|d| d.kind == first.kind).count();
        let plural = if n == 1 { "" } else { "s" };
        out.push_str(&format!("{n} {}{plural}.\n", first.kind));
    }
    out
}

/// The file name when `span` points at the end of its file (nothing left to show).
fn at_eof(span: Span, sources: &SourceMap) -> Option<String> {
    let f = sources.file(span.file)?;
    let rest = f.text.get(span.start as usize..).unwrap_or("");
    if rest.trim().is_empty() {
        Some(f.name.clone())
    } else {
        None
    }
}

/// `operator '{' at FILE:LINE:COL`
fn token_text(label: &Label, sources: &SourceMap, elide_file: bool) -> String {
    let (line, col) = sources.line_col(label.span);
    let name = if elide_file {
        ""
    } else {
        sources
            .file(label.span.file)
            .map_or("<unknown>", |f| f.name.as_str())
    };
    let what = if label.message.is_empty() {
        describe_at(label.span, sources)
    } else {
        label
            .message
            .trim_start_matches(crate::parser::AT_TOKEN)
            .to_string()
    };
    format!("{what} at {name}:{line}:{col}")
}

/// Describes the token starting at `span` the way stap prints tokens.
fn describe_at(span: Span, sources: &SourceMap) -> String {
    let Some(f) = sources.file(span.file) else {
        return "token".into();
    };
    match lexer::token_at(span.file, &f.text, span.start as usize) {
        Some(t) => match t.tok {
            Tok::Ident(w) if is_keyword(&w) => "keyword".into(),
            // stap's lexer makes `@hist_log`, `@count`... operators.
            Tok::Ident(w) if w.starts_with('@') => format!("operator '{w}'"),
            Tok::Ident(w) => format!("identifier '{w}'"),
            Tok::Number(_) => format!("number '{}'", lexer::printable(sources.snippet(t.span))),
            Tok::Str(s) => format!("string '{}'", lexer::printable(&s)),
            Tok::Op(o) => format!("operator '{o}'"),
            Tok::Embedded => "embedded-code".into(),
            Tok::Eof => "end of file".into(),
        },
        None => "end of file".into(),
    }
}

/// The `source:` line and the caret line under the span's column.
fn source_lines(out: &mut String, align: &str, span: Span, sources: &SourceMap) {
    let Some(f) = sources.file(span.file) else {
        return;
    };
    let mut at = (span.start as usize).min(f.text.len());
    while !f.text.is_char_boundary(at) {
        at -= 1;
    }
    let line_start = f.text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = f.text[at..].find('\n').map_or(f.text.len(), |i| at + i);
    let line = f.text[line_start..line_end].trim_end_matches('\r');
    out.push_str(align);
    out.push_str("source: ");
    out.push_str(line);
    out.push('\n');
    out.push_str(align);
    out.push_str("        ");
    for c in f.text[line_start..at].chars() {
        out.push(if c.is_whitespace() { c } else { ' ' });
    }
    out.push_str("^\n");
}
