//! Probe point classification and resolution: `begin`/`end`/`error`/`timer.*`, and
//! `process(PATH).function/statement/mark/begin/end/syscall` resolved to module
//! addresses (or to address-less sites), `kernel.function/statement` likewise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use debuginfo::{DebugInfo, Function};
use script_syntax::ast::{Component, Literal, ProbePoint};
use script_syntax::Diagnostic;

use crate::Session;

/// What one probe point resolved to.
pub(crate) enum Resolved {
    Begin,
    End,
    Error,
    Timer(Duration),
    Site(Box<SiteSpec>),
}

/// The kind of a resolved process site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpecKind {
    Entry,
    Return,
    ProcessBegin,
    ProcessEnd,
    /// `process.syscall`: every system call entry of the module's processes.
    SyscallEntry,
    /// `process.syscall.return`: every system call exit.
    SyscallReturn,
}

/// A resolved process probe site, before planning its captures.
pub(crate) struct SiteSpec {
    /// Canonical absolute module path.
    pub module: PathBuf,
    /// Its debug info (absent for process begin/end).
    pub di: Option<Arc<DebugInfo>>,
    pub kind: SpecKind,
    /// Link-time address of the stop.
    pub addr: u64,
    /// The scope for target variables: a function or an inlined instance.
    pub func: Option<Function>,
    /// `pp()`, stap's spelling.
    pub pp: String,
    /// For `.mark` sites, the SDT probe (its arguments are `$arg1`...).
    pub sdt: Option<debuginfo::SdtProbe>,
}

fn err(point: &ProbePoint, msg: impl Into<String>) -> Vec<Diagnostic> {
    vec![Diagnostic::error("semantic error", msg, point.span)]
}

/// The text of a probe point as written (components joined by dots).
pub(crate) fn point_text(point: &ProbePoint) -> String {
    point
        .components
        .iter()
        .map(component_text)
        .collect::<Vec<_>>()
        .join(".")
}

fn component_text(c: &Component) -> String {
    match &c.arg {
        None => c.name.clone(),
        Some(Literal::Number(n)) => format!("{}({n})", c.name),
        Some(Literal::String(s)) => format!("{}(\"{s}\")", c.name),
    }
}

/// The listing line of a non-process probe point.
pub(crate) fn simple_pp(point: &ProbePoint, _r: &Resolved) -> String {
    point_text(point)
}

/// Resolves one probe point. An optional (`?`) point that does not resolve yields an
/// empty list instead of an error.
pub(crate) fn resolve_point(
    sess: &mut Session<'_>,
    point: &ProbePoint,
) -> Result<Vec<Resolved>, Vec<Diagnostic>> {
    match resolve_inner(sess, point) {
        Ok(v) if v.is_empty() && !point.optional => Err(err(
            point,
            format!("no match for probe point {}", point_text(point)),
        )),
        Err(_) if point.optional => Ok(Vec::new()),
        other => other,
    }
}

fn number_arg(c: &Component) -> Option<i64> {
    match c.arg {
        Some(Literal::Number(n)) => Some(n),
        _ => None,
    }
}

fn string_arg(c: &Component) -> Option<&str> {
    match &c.arg {
        Some(Literal::String(s)) => Some(s),
        _ => None,
    }
}

fn resolve_inner(
    sess: &mut Session<'_>,
    point: &ProbePoint,
) -> Result<Vec<Resolved>, Vec<Diagnostic>> {
    let c = &point.components;
    let Some(first) = c.first() else {
        return Err(err(point, "empty probe point"));
    };
    let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    match names.as_slice() {
        ["begin"] => Ok(vec![Resolved::Begin]),
        ["end"] => Ok(vec![Resolved::End]),
        ["error"] => Ok(vec![Resolved::Error]),
        ["timer", unit] => {
            let n = number_arg(&c[1])
                .filter(|n| *n > 0)
                .ok_or_else(|| err(point, "timer probes need a positive number argument"))?
                as u64;
            let d = match *unit {
                "ns" => Duration::from_nanos(n),
                "us" => Duration::from_micros(n),
                "ms" => Duration::from_millis(n),
                "s" | "sec" => Duration::from_secs(n),
                "hz" => Duration::from_nanos(1_000_000_000 / n.max(1)),
                "jiffies" => Duration::from_millis(n.saturating_mul(4)),
                _ => {
                    return Err(err(
                        point,
                        format!(
                            "probe point mismatch at position 1 (alternatives: ns us ms s hz jiffies): timer.{unit}"
                        ),
                    ))
                }
            };
            Ok(vec![Resolved::Timer(d)])
        }
        ["process", ..] => resolve_process(sess, point),
        ["kernel", ..] => {
            let Some(kernel) = sess.kernel.clone() else {
                return Err(err(
                    point,
                    "kernel probes need the kernel's ELF file: give it with --kernel ELF",
                ));
            };
            // A kernel is never probed from its symbol table alone: without DWARF there is
            // no way to check what a script reads, so such an image is refused.
            if let Ok(di) = debuginfo::DebugInfo::open_shared(&kernel) {
                if !di.has_debug_info() {
                    return Err(err(
                        point,
                        format!(
                            "{} has no DWARF debug information: kernel probes need the kernel image with its debug info (for GNU Mach: gnumach.dbg)",
                            kernel.display()
                        ),
                    ));
                }
            }
            resolve_in_module(sess, point, kernel, "kernel".to_string(), true)
        }
        _ => Err(err(
            point,
            format!(
                "while resolving probe point: unknown probe point '{}' (alternatives: begin end error timer process)",
                first.name
            ),
        )),
    }
}

/// Resolves a `process(...)` path as stap does: absolute, relative to the cwd, or (no
/// slash) searched in `$PATH`; canonicalised.
pub(crate) fn resolve_path(p: &str) -> Result<PathBuf, String> {
    let found = if p.contains('/') {
        Some(PathBuf::from(p))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(p))
                .find(|c| c.is_file())
        })
    };
    let found = found.ok_or_else(|| format!("cannot find executable '{p}' in $PATH"))?;
    std::fs::canonicalize(&found)
        .map_err(|e| format!("cannot find module '{}': {e}", found.display()))
}

fn resolve_process(
    sess: &mut Session<'_>,
    point: &ProbePoint,
) -> Result<Vec<Resolved>, Vec<Diagnostic>> {
    let c = &point.components;
    let module = match &c[0].arg {
        Some(Literal::String(s)) => resolve_path(s).map_err(|m| err(point, m))?,
        Some(Literal::Number(pid)) => {
            std::fs::canonicalize(format!("/proc/{pid}/exe")).map_err(|e| {
                err(
                    point,
                    format!("cannot find the executable of pid {pid}: {e}"),
                )
            })?
        }
        None => match &sess.opts.target_exe {
            Some(p) => std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()),
            None => {
                return Err(err(
                    point,
                    "process probe without a path needs a target: give -c CMD or -x PID",
                ))
            }
        },
    };
    let proc_pp = format!("process(\"{}\")", module.display());
    resolve_in_module(sess, point, module, proc_pp, false)
}

/// Resolves the components after `process(...)` or `kernel` against one module;
/// `prefix` is how resolved points spell the module part.
fn resolve_in_module(
    sess: &mut Session<'_>,
    point: &ProbePoint,
    module: PathBuf,
    proc_pp: String,
    kernel: bool,
) -> Result<Vec<Resolved>, Vec<Diagnostic>> {
    let c = &point.components;
    let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    match names.as_slice() {
        ["process", which @ ("begin" | "end")] => Ok(vec![Resolved::Site(Box::new(SiteSpec {
            module,
            di: None,
            kind: if *which == "begin" {
                SpecKind::ProcessBegin
            } else {
                SpecKind::ProcessEnd
            },
            addr: 0,
            func: None,
            pp: format!("{proc_pp}.{which}"),
            sdt: None,
        }))]),
        // System call stops need no debug information: the module only selects the
        // processes, and the values are registers.
        ["process", "syscall", rest @ ..] if !kernel => {
            let kind = match rest {
                [] => SpecKind::SyscallEntry,
                ["return"] => SpecKind::SyscallReturn,
                _ => {
                    return Err(err(
                        point,
                        format!(
                            "probe point mismatch at position 2 (alternatives: return): {}",
                            point_text(point)
                        ),
                    ))
                }
            };
            let sfx = if kind == SpecKind::SyscallReturn {
                ".return"
            } else {
                ""
            };
            Ok(vec![Resolved::Site(Box::new(SiteSpec {
                module,
                di: None,
                kind,
                addr: 0,
                func: None,
                pp: format!("{proc_pp}.syscall{sfx}"),
                sdt: None,
            }))])
        }
        [_, "function", rest @ ..] => {
            let pat = string_arg(&c[1])
                .ok_or_else(|| err(point, "function(...) needs a string argument"))?;
            let suffix = match rest {
                [] => "",
                ["return"] => "return",
                ["call"] => "call",
                ["inline"] => "inline",
                _ => {
                    return Err(err(
                        point,
                        format!(
                        "probe point mismatch at position 2 (alternatives: return call inline): {}",
                        point_text(point)
                    ),
                    ))
                }
            };
            let di = sess.module(&module, point.span).map_err(|d| vec![d])?;
            let mut out = Vec::new();
            if suffix != "inline" {
                for f in di.match_functions(pat) {
                    let (kind, addr, sfx) = if suffix == "return" {
                        (SpecKind::Return, f.entry_pc, ".return")
                    } else {
                        (
                            SpecKind::Entry,
                            di.probe_addr(f),
                            if suffix == "call" { ".call" } else { "" },
                        )
                    };
                    out.push(Resolved::Site(Box::new(SiteSpec {
                        module: module.clone(),
                        di: Some(di.clone()),
                        kind,
                        addr,
                        func: Some(f.clone()),
                        pp: format!("{proc_pp}.function(\"{}\"){sfx}", func_spec(f)),
                        sdt: None,
                    })));
                }
            }
            if suffix.is_empty() || suffix == "inline" {
                let sfx = if suffix == "inline" { ".inline" } else { "" };
                for f in di.match_inlines(pat) {
                    out.push(Resolved::Site(Box::new(SiteSpec {
                        module: module.clone(),
                        di: Some(di.clone()),
                        kind: SpecKind::Entry,
                        addr: di.probe_addr(f),
                        func: Some(f.clone()),
                        pp: format!("{proc_pp}.function(\"{}\"){sfx}", func_spec(f)),
                        sdt: None,
                    })));
                }
            }
            if out.is_empty() && !point.optional {
                let mut d = Diagnostic::error(
                    "semantic error",
                    format!("no match for probe point {}", point_text(point)),
                    point.span,
                );
                let close = di.close_matches(pat);
                if !close.is_empty() {
                    d = d.with_note(format!("did you mean: {}?", close.join(", ")));
                }
                return Err(vec![d]);
            }
            Ok(out)
        }
        ["process", "mark"] | ["process", "provider", "mark"] if !kernel => {
            let (provider, mark) = if names.len() == 3 {
                (string_arg(&c[1]), string_arg(&c[2]))
            } else {
                (Some("*"), string_arg(&c[1]))
            };
            let (Some(provider), Some(mark)) = (provider, mark) else {
                return Err(err(
                    point,
                    "provider(...) and mark(...) need string arguments",
                ));
            };
            // SDT probes need no DWARF: the notes are in the ELF file itself.
            let di = sess.module(&module, point.span).map_err(|d| vec![d])?;
            let mut out = Vec::new();
            for p in di.sdt_probes() {
                if !debuginfo::wildcard_match(provider, &p.provider)
                    || !debuginfo::wildcard_match(mark, &p.name)
                {
                    continue;
                }
                out.push(Resolved::Site(Box::new(SiteSpec {
                    module: module.clone(),
                    di: Some(di.clone()),
                    kind: SpecKind::Entry,
                    addr: p.pc,
                    func: di.function_at(p.pc).cloned(),
                    pp: format!(
                        "{proc_pp}.provider(\"{}\").mark(\"{}\")",
                        p.provider, p.name
                    ),
                    sdt: Some(p.clone()),
                })));
            }
            Ok(out)
        }
        [_, "statement"] => {
            let di = sess.module(&module, point.span).map_err(|d| vec![d])?;
            resolve_statement(&di, &module, &proc_pp, point)
        }
        _ => Err(err(
            point,
            format!(
                "probe point mismatch at position 1 (alternatives: {}): {}",
                if kernel {
                    "function statement"
                } else {
                    "function statement begin end syscall mark"
                },
                point_text(point)
            ),
        )),
    }
}

/// `name@file:line` for a function, as stap prints resolved function probe points.
pub(crate) fn func_spec(f: &Function) -> String {
    match &f.decl_file {
        Some(file) if f.decl_line > 0 => format!("{}@{}:{}", f.name, file, f.decl_line),
        Some(file) => format!("{}@{}", f.name, file),
        None => f.name.clone(),
    }
}

fn resolve_statement(
    di: &Arc<DebugInfo>,
    module: &Path,
    proc_pp: &str,
    point: &ProbePoint,
) -> Result<Vec<Resolved>, Vec<Diagnostic>> {
    let c = &point.components[1];
    let site = |addr: u64, f: Function, pp: String| {
        Resolved::Site(Box::new(SiteSpec {
            module: module.to_path_buf(),
            di: Some(di.clone()),
            kind: SpecKind::Entry,
            addr,
            func: Some(f),
            pp,
            sdt: None,
        }))
    };
    if let Some(addr) = number_arg(c) {
        let addr = addr as u64;
        let f = di
            .scope_at(addr)
            .cloned()
            .ok_or_else(|| err(point, format!("no function contains address {addr:#x}")))?;
        return Ok(vec![site(
            addr,
            f,
            format!("{proc_pp}.statement({addr:#x})"),
        )]);
    }
    let spec = string_arg(c).ok_or_else(|| err(point, "statement(...) needs an argument"))?;
    let (func, rest) = spec.split_once('@').unwrap_or(("*", spec));
    // LINE, or a range LO-HI (every line of it that has code), as stap accepts.
    let bad = || {
        err(
            point,
            format!("statement(\"{spec}\"): expected FUNC@FILE:LINE or FUNC@FILE:LO-HI"),
        )
    };
    let (file, lines) = rest.rsplit_once(':').ok_or_else(bad)?;
    let (lo, hi) = match lines.split_once('-') {
        Some((a, b)) => (
            a.parse::<u32>().map_err(|_| bad())?,
            b.parse::<u32>().map_err(|_| bad())?,
        ),
        None => {
            let l = lines.parse::<u32>().map_err(|_| bad())?;
            (l, l)
        }
    };
    if hi < lo || hi - lo > 10_000 {
        return Err(bad());
    }
    let line = lines;
    let mut out = Vec::new();
    for l in lo..=hi {
        for addr in di.line_addrs(file, l) {
            let Some(outer) = di.function_at(addr) else {
                continue;
            };
            if !debuginfo::wildcard_match(func, &outer.name) {
                continue;
            }
            let scope = di.scope_at(addr).cloned().unwrap_or_else(|| outer.clone());
            let path = di
                .line_at(addr)
                .map(|(p, _)| p)
                .unwrap_or_else(|| file.to_string());
            let pp = format!("{proc_pp}.statement(\"{}@{}:{}\")", outer.name, path, l);
            out.push(site(addr, scope, pp));
        }
    }
    if out.is_empty() && !point.optional {
        return Err(err(
            point,
            format!(
                "no line records for {file}:{line} in function '{func}' for probe point {}",
                point_text(point)
            ),
        ));
    }
    Ok(out)
}
