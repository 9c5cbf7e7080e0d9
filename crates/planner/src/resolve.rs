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
    /// `process.thread.begin`: a new thread of the module's processes started.
    ThreadBegin,
    /// `process.thread.end`: a thread (not the last one) of the module's processes ended.
    ThreadEnd,
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
    /// For `.plt` sites, the imported function's name (`$$name`).
    pub plt: Option<String>,
    /// How `-l` spells the point when it differs from `pp` (stap's `pn()`): a `.plt`
    /// site's pp is `.statement(ADDR)`, a `.library(...)` site's pp names the library
    /// as the process.
    pub listed: Option<String>,
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

/// The alias a probe point was expanded from, as the script wrote it (stap's `pn()`
/// for its sites), or `None` when the point is not an alias's: the expansion keeps
/// the written point's span, whose text then names something else than the point's
/// first component.
pub(crate) fn alias_as_written(
    point: &ProbePoint,
    sources: &script_syntax::SourceMap,
) -> Option<String> {
    let text = sources.snippet(point.span);
    // The point itself, without a trailing `?`/`!` or condition.
    let written: String = text
        .trim()
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '?' | '!'))
        .collect();
    let first = point.components.first()?;
    let head: String = written
        .chars()
        .take_while(|c| *c != '.' && *c != '(')
        .collect();
    (!written.is_empty() && head != first.name).then_some(written)
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
        [name, ..] if LINUX_TAPSETS.contains(name) => Err(err(
            point,
            format!(
                "while resolving probe point: '{name}' probes come from stap's Linux kernel tapsets, which need a Linux kernel runtime; snaptap traces processes (-c/-x: process(...) probes, process.syscall for system calls) and kernels in a VM (--vm/--gdb with --kernel: kernel.function, the Mach tapset)"
            ),
        )),
        _ => Err(err(
            point,
            format!(
                "while resolving probe point: unknown probe point '{}' (alternatives: begin end error timer process)",
                first.name
            ),
        )),
    }
}

/// Probe point families of stap's Linux kernel tapsets: named in the error for a
/// script written for a Linux kernel target.
const LINUX_TAPSETS: &[&str] = &[
    "syscall",
    "nd_syscall",
    "syscall_any",
    "kprobe",
    "module",
    "vfs",
    "nd_vfs",
    "generic",
    "scheduler",
    "signal",
    "kprocess",
    "ioblock",
    "ioblock_trace",
    "ioscheduler",
    "ioscheduler_trace",
    "tcp",
    "udp",
    "socket",
    "netdev",
    "netfilter",
    "ipmib",
    "tcpmib",
    "linuxmib",
    "nfs",
    "nfsd",
    "sunrpc",
    "rpc",
    "memory",
    "vm",
    "irq_handler",
    "softirq",
    "workqueue",
    "perf",
    "procfs",
    "tty",
    "scsi",
    "kernel_trace",
    "tracepoint",
    "netlink",
];

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
    if c.get(1).is_some_and(|x| x.name == "library") {
        return resolve_library(sess, point, &module, &proc_pp);
    }
    resolve_in_module(sess, point, module, proc_pp, false)
}

/// `process(EXE).library(LIB).REST`: REST resolved in every library EXE loads that
/// LIB names (see `dynelf::library_matches`), as `process(LIBPATH).REST` is; `pp()`
/// names the library as the process (as stap's does) and `-l` keeps the
/// `.library(LIBPATH)` form.
fn resolve_library(
    sess: &mut Session<'_>,
    point: &ProbePoint,
    exe: &Path,
    proc_pp: &str,
) -> Result<Vec<Resolved>, Vec<Diagnostic>> {
    let c = &point.components;
    let pat = match &c[1].arg {
        None => "*",
        Some(Literal::String(s)) => s.as_str(),
        Some(Literal::Number(_)) => {
            return Err(err(point, "library(...) needs a string argument"));
        }
    };
    if !matches!(
        c.get(2).map(|x| x.name.as_str()),
        Some("function" | "statement" | "plt" | "mark" | "provider")
    ) {
        return Err(err(
            point,
            format!(
                "probe point mismatch at position 2 (alternatives: function statement plt mark provider): {}",
                point_text(point)
            ),
        ));
    }
    let libs = crate::dynelf::loaded_libraries(exe).map_err(|m| err(point, m))?;
    let mut inner = point.clone();
    inner.components.remove(1);
    // Each library is tried on its own: a pattern matching several libraries needs
    // a match in one of them only.
    inner.optional = true;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for lib in libs
        .iter()
        .filter(|l| crate::dynelf::library_matches(pat, l))
    {
        let lib_pp = format!("process(\"{}\")", lib.display());
        let listed_prefix = format!("{proc_pp}.library(\"{}\")", lib.display());
        match resolve_in_module(sess, &inner, lib.clone(), lib_pp.clone(), false) {
            Ok(rs) => {
                for mut r in rs {
                    if let Resolved::Site(s) = &mut r {
                        let shown = s.listed.as_deref().unwrap_or(&s.pp);
                        let tail = shown.strip_prefix(&lib_pp).unwrap_or(shown);
                        s.listed = Some(format!("{listed_prefix}{tail}"));
                    }
                    out.push(r);
                }
            }
            Err(mut d) => errors.append(&mut d),
        }
    }
    if out.is_empty() && !errors.is_empty() && !point.optional {
        return Err(errors);
    }
    Ok(out)
}

/// How `thread.*` probe points spell their process part, as stap spells its
/// utrace-style points: as written, `process`, `process(PID)`, or the resolved path.
/// (stap spells `process.begin`, `.end` and `.syscall` so too; snaptap still names
/// the resolved path there.)
fn utrace_prefix(point: &ProbePoint, proc_pp: &str) -> String {
    match point.components.first().and_then(|c| c.arg.as_ref()) {
        None => "process".to_string(),
        Some(Literal::Number(n)) => format!("process({n})"),
        Some(Literal::String(_)) => proc_pp.to_string(),
    }
}

/// `process(PATH).plt(PATTERN)` and `.plt(PATTERN).return`: one site at the PLT entry
/// of each matching imported function, no DWARF needed. As in stap, `pp()` is the
/// entry's `.statement(ADDR)` and `-l` shows `.plt("NAME")`; `$$name` is the name.
fn resolve_plt(
    point: &ProbePoint,
    module: &Path,
    proc_pp: &str,
    di: Option<Arc<DebugInfo>>,
) -> Result<Vec<Resolved>, Vec<Diagnostic>> {
    let c = &point.components;
    let pat = match &c[1].arg {
        None => "*",
        Some(Literal::String(s)) => s.as_str(),
        Some(Literal::Number(_)) => return Err(err(point, "plt(...) needs a string argument")),
    };
    let ret = match c.get(2).map(|x| x.name.as_str()) {
        None => false,
        Some("return") if c.len() == 3 => true,
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
    let mut entries: Vec<crate::dynelf::PltEntry> = crate::dynelf::plt_entries(module)
        .map_err(|m| err(point, m))?
        .into_iter()
        .filter(|e| debuginfo::wildcard_match(pat, &e.name))
        .collect();
    // stap lists them by name.
    entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
    let sfx = if ret { ".return" } else { "" };
    Ok(entries
        .into_iter()
        .map(|e| {
            Resolved::Site(Box::new(SiteSpec {
                module: module.to_path_buf(),
                di: di.clone(),
                kind: if ret {
                    SpecKind::Return
                } else {
                    SpecKind::Entry
                },
                addr: e.addr,
                func: None,
                pp: format!("{proc_pp}.statement({:#x}){sfx}", e.addr),
                sdt: None,
                listed: Some(format!("{proc_pp}.plt(\"{}\"){sfx}", e.name)),
                plt: Some(e.name),
            }))
        })
        .collect())
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
        ["process", "thread", which @ ("begin" | "end")] if !kernel => {
            if sess.kernel.is_some() {
                // The VM backends see no thread creation or exit of a process.
                return Err(err(
                    point,
                    format!(
                        "probe point {} is not available on a --gdb/--vm target: thread begin and end are reported only for processes traced with -c or -x",
                        point_text(point)
                    ),
                ));
            }
            Ok(vec![Resolved::Site(Box::new(SiteSpec {
                module,
                di: None,
                kind: if *which == "begin" {
                    SpecKind::ThreadBegin
                } else {
                    SpecKind::ThreadEnd
                },
                addr: 0,
                func: None,
                pp: format!("{}.thread.{which}", utrace_prefix(point, &proc_pp)),
                sdt: None,
                plt: None,
                listed: None,
            }))])
        }
        ["process", "thread", ..] if !kernel => Err(err(
            point,
            format!(
                "probe point mismatch at position 2 (alternatives: begin end): {}",
                point_text(point)
            ),
        )),
        ["process", "plt", ..] if !kernel => {
            // The dynamic symbols are enough: no debug information is opened.
            resolve_plt(point, &module, &proc_pp, None)
        }
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
            plt: None,
            listed: None,
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
                plt: None,
                listed: None,
            }))])
        }
        [_, "function", rest @ ..] => {
            let pat = string_arg(&c[1])
                .ok_or_else(|| err(point, "function(...) needs a string argument"))?;
            let (suffix, exported) = match rest {
                [] => ("", false),
                ["return"] => ("return", false),
                ["call"] => ("call", false),
                ["inline"] => ("inline", false),
                ["exported"] => ("", true),
                ["exported", "return"] => ("return", true),
                [x, ..] if x.starts_with("callee") => {
                    return Err(err(
                        point,
                        format!(
                            "probe point {} is not available: snaptap has no .callee/.callees probes (they need DWARF call-site records and caller checks)",
                            point_text(point)
                        ),
                    ))
                }
                _ => {
                    return Err(err(
                        point,
                        format!(
                        "probe point mismatch at position 2 (alternatives: return call inline exported): {}",
                        point_text(point)
                    ),
                    ))
                }
            };
            let di = sess.module(&module, point.span).map_err(|d| vec![d])?;
            let mut out = Vec::new();
            // `.exported`: only functions the module's symbol table exports.
            let exports = if exported {
                Some(crate::dynelf::exported_addrs(&module).map_err(|m| err(point, m))?)
            } else {
                None
            };
            let is_exported = |f: &Function| {
                exports
                    .as_ref()
                    .is_none_or(|x| x.contains(&f.low_pc) || x.contains(&f.entry_pc))
            };
            let exp_sfx = if exported { ".exported" } else { "" };
            if suffix != "inline" {
                // The DWARF functions, then those known only from the symbol table
                // (`_start`, `frame_dummy`, assembly), as stap adds them.
                let mut funcs: Vec<Function> = if di.has_debug_info() {
                    di.match_functions(pat).into_iter().cloned().collect()
                } else {
                    Vec::new()
                };
                if funcs.is_empty() || pat.contains(['*', '?']) {
                    funcs.extend(di.match_symbol_functions(pat));
                }
                for f in funcs.iter().filter(|f| is_exported(f)) {
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
                        pp: format!("{proc_pp}.function(\"{}\"){exp_sfx}{sfx}", func_spec(f)),
                        sdt: None,
                        plt: None,
                        listed: None,
                    })));
                }
            }
            if (suffix.is_empty() || suffix == "inline") && !exported {
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
                        plt: None,
                        listed: None,
                    })));
                }
            }
            if out.is_empty() && !point.optional {
                return Err(no_match(point, &di.similar_functions(pat)));
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
                    plt: None,
                    listed: None,
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
                    "function statement begin end syscall mark plt thread library"
                },
                point_text(point)
            ),
        )),
    }
}

/// stap's two errors for a function probe point that matches nothing: `while
/// resolving probe point` at the point, then `no match` without a location, with the
/// similar functions it found.
pub(crate) fn no_match(point: &ProbePoint, similar: &[String]) -> Vec<Diagnostic> {
    let mut second = Diagnostic::error(
        "semantic error",
        if similar.is_empty() {
            "no match".to_string()
        } else {
            format!("no match (similar functions: {})", similar.join(", "))
        },
        point.span,
    );
    second.labels.clear();
    vec![
        Diagnostic::error("semantic error", "while resolving probe point", point.span),
        second,
    ]
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
            plt: None,
            listed: None,
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
    // `FILE:*`: every line of the file that has code, as stap expands it.
    let every: Option<Vec<u32>> = (lines == "*").then(|| di.file_lines(file));
    let (lo, hi) = match lines.split_once('-') {
        _ if every.is_some() => (1, 1),
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
    for l in every.unwrap_or_else(|| (lo..=hi).collect()) {
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
