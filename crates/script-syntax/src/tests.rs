//! Unit, golden and robustness tests for the lexer, parser, printer and renderer.

use crate::*;
use std::path::{Path, PathBuf};

/// Parses `text` as a file named `name`; returns the script, the sources and the
/// diagnostics.
fn parse_text(name: &str, text: &str, args: &[&str]) -> (ast::Script, SourceMap, Vec<Diagnostic>) {
    let mut sources = SourceMap::default();
    let f = sources.add(name, text);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (s, d) = parse(&sources, f, &args);
    (s, sources, d)
}

fn render_diags(d: &[Diagnostic], sources: &SourceMap) -> String {
    d.iter().map(|x| render(x, sources)).collect()
}

/// Parses, asserts no diagnostics, and returns the printout.
fn printout(text: &str) -> String {
    let (s, src, d) = parse_text("t.stp", text, &[]);
    assert!(
        d.is_empty(),
        "unexpected diagnostics:\n{}",
        render_diags(&d, &src)
    );
    print_script(&s)
}

#[test]
fn dump_for_dev() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/ok/0001_basics.stp"),
    )
    .unwrap();
    let (s, src, d) = parse_text("t.stp", &text, &[]);
    eprintln!("{}", render_diags(&d, &src));
    eprintln!("{}", print_script(&s));
    let _ = PathBuf::new();
    let _ = printout;
}
