//! SystemTap script text → tokens → AST, with source spans and diagnostics.
//!
//! Overview: [`SourceMap`] holds script files (a file, `-e` text, tapsets); [`parse`]
//! turns one file into an [`ast::Script`] plus [`Diagnostic`]s and never fails;
//! [`ast`] holds the tree every later pass reads. Nothing here knows about DWARF,
//! targets or backends, and nothing here does I/O.
#![forbid(unsafe_code)]

pub mod ast;
pub mod diag;

pub use diag::{Diagnostic, Label, Severity, SourceFile, SourceMap};
