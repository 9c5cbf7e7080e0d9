//! SystemTap script text → tokens → AST, with source spans and diagnostics.
//!
//! Overview: [`SourceMap`] holds script files (a file, `-e` text, tapsets). [`lexer`]
//! turns text into tokens, [`preproc`] evaluates `%( ... %? ... %: ... %)` conditionals
//! and `@define` macros, and [`parser`] builds an [`ast::Script`]: [`parse`] for one
//! file with a fresh id counter, [`parse_session`] / [`parse_files`] to share one
//! [`IdGen`] across tapsets and the user script. Parsing never fails: it returns every
//! error as a [`Diagnostic`] (parse errors carry stap's token description, such as
//! `operator '{'`, in their label's message), which [`render()`] formats as stap does.
//! Nesting deeper than 200 levels (statements, parentheses, operator chains) is an
//! error, which bounds the depth of every tree later passes walk. [`print_script`] prints a
//! script back in normalised form, [`print_script_stap`] exactly as `stap -p1` dumps its
//! parse tree; [`expand_script`] / [`expand_aliases`]
//! resolve probe aliases into concrete handlers (a conditional probe point gets a
//! handler of its own, since a handler cannot tell which point fired). [`visit`] is the
//! one walker over statements and expressions that every later pass uses. Probe points
//! support brace expansion (`a.{b,c}.d`, capped at 10000 points); string literals keep
//! only C's escapes as stap's lexer does (`\x41` is `x41`). Nothing here knows about
//! DWARF, targets or backends, and nothing here does I/O.
#![forbid(unsafe_code)]

pub mod alias;
pub mod ast;
pub mod diag;
pub mod lexer;
pub mod parser;
pub mod preproc;
pub mod print;
pub mod render;
pub mod stap_print;
pub mod visit;

#[cfg(test)]
mod tests;

pub use alias::{expand_aliases, expand_script, ResolvedProbe};
pub use diag::{Diagnostic, Label, Severity, SourceFile, SourceMap};
pub use parser::{parse, parse_files, parse_int, parse_session, IdGen, ParseOptions};
pub use preproc::PpConfig;
pub use print::{print_expr, print_script, print_script_with_sources};
pub use render::{render, render_all, render_failure};
pub use stap_print::print_script_stap;
