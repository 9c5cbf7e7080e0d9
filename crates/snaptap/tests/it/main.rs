//! End-to-end tests: the built `snaptap` binary traces C fixtures compiled at test time.
//!
//! Every check compares what snaptap printed with what the fixture itself reports about
//! its own calls (lines starting with `truth`), so a test fails whenever a value is wrong.

mod support;

mod args;
mod ctxfns;
mod errors;
mod golden;
mod mach;
mod options;
mod probes;
mod process;
mod realpkgs;
mod retvals;
mod signals;
mod syscalls;
mod tidy;
mod ustack;
