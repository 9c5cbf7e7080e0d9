//! The planner: resolves a script's probe points against ELF/DWARF and turns every use
//! of target data (`$x`, `user_string($p)`, `$$parms`, `$return`) into capture plans.
//!
//! Overview: [`plan`] walks the script's `probe` items in order (the handler index is
//! the position among `Item::Probe`s), classifies each probe point (`resolve`),
//! resolves process probe points to `ProbeSite`s with `debuginfo`, then walks each
//! handler body (`capture`) and adds a `FieldPlan` plus a `Decode` for every
//! expression the runtime will need from the target. [`list_probes`] serves `-l`/`-L`
//! and [`dump`] prints a deterministic text form of the result for `-p3` and tests.
//!
//! Semantics worth knowing (each follows stap unless said otherwise):
//! - Function probes stop after the prologue in unoptimised code and at the entry pc in
//!   optimised code (see `debuginfo::DebugInfo::probe_addr`); inlined instances are
//!   sites of their own, `.call` excludes them, `.inline` keeps only them.
//! - In `.return` probes every target value except `$return` — `$p`, `$p->f`,
//!   `$a[2]`, `$p$`, `$$parms`, `@var(...)`, with all their steps — is evaluated at
//!   the function's entry, as stap's `visit_target_symbol_saved_return` saves the
//!   whole expression there; `@entry(X)` evaluates all of X at entry. What the
//!   handler itself reads happens at the return, as in stap: the memory of
//!   `user_int(...)`, `kernel_string(...)` and friends and of `@cast(...)`, and
//!   `register(...)`/`uaddr()`. Their addresses use the entry values, which the
//!   entry plan saves and the return plan reads back (`Op::EntryField`); so
//!   `user_int($outp)` shows what the function stored through `outp`. Unoptimised
//!   parameters at the entry come from the calling convention, because their DWARF
//!   frame slots are not written yet.
//! - Static addresses (`@var`, `DW_OP_addr`, `sym(%rip)` SDT operands) in
//!   relocatable modules are computed as `rip + (addr - site)`: the backend reports
//!   `Reg(RIP)` as the probed address, so entry plans need no load bias.
//! - `@defined(X)` never fails: X is captured when possible, and branches guarded by
//!   a false `@defined` are not planned (so their target uses raise no errors).
//! - Captured calls (`user_string*`, `kernel_string*`, `user_<int type>`,
//!   `register`, `u_register`, `uaddr`) are keyed by the call's expression id; their
//!   address argument must be computable at the probe from target values, numbers and
//!   `+ - * & | ^ << >>`, since nothing can be read later.
//! - `&X` on a target expression is its address (a field of the address ops); what
//!   has no address (a register, a computed or constant value, a bit field,
//!   `$$parms`, `$x$`, SDT and syscall arguments) is an error in stap's words.
//! - `printf`/`sprintf` `%m`/`%M` copy the bytes at their address argument at the
//!   probe (the precision, default 1; `%.*m` needs a literal number), keyed by the
//!   argument's expression id as a `Decode::Bytes`.
//! - `-D MAXUSTACKBYTES` sets the stack bytes a backtrace copies (whole pages).
//! - Writes to target values are errors: the design is read-only.
//! - `process(PATH).syscall` and `.syscall.return` are one site each (no address, no
//!   DWARF needed); `$syscall`, `$arg1`..`$arg6` (rdi rsi rdx r10 r8 r9) and, at the
//!   exit, `$return` are `long`s read from registers.
//! - Target expressions inside script functions (`@var`, `@cast`, captured calls on
//!   them; `$name` stays illegal there, as in stap) are planned at the sites of every
//!   probe whose handler calls the function, directly or not, under their own
//!   expression ids: the runtime runs a function with its caller's record. Probes
//!   without a target context cannot call such functions.
#![forbid(unsafe_code)]

mod capture;
mod dump;
mod dynelf;
mod printf;
mod resolve;
mod ustack;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use capture_plan::{PlanSet, SiteBinding};
use debuginfo::DebugInfo;
use script_syntax::ast::{Item, Script, Span};
use script_syntax::{Diagnostic, SourceMap};

pub use debuginfo::set_debug_dirs;
pub use dump::{dump, p2_probes};

/// A progress callback (see [`set_progress`]).
pub type Progress = debuginfo::Progress;

/// Sets (or clears) the callback that hears, as short messages, about the slow steps
/// of planning: reading and indexing each module's debug information (large DWARF,
/// such as python3.11d's or libc's, takes a noticeable fraction of a second). The
/// driver may show them on a terminal. It is session-wide rather than a
/// [`PlanOptions`] field so that existing `PlanOptions { .. }` literals stay valid.
pub fn set_progress(p: Option<Progress>) {
    debuginfo::set_progress(p);
}

/// What the planner needs to know about the session.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The target executable: `-c`'s first word resolved via `PATH`, or `-x PID`'s
    /// `/proc/PID/exe`. Used by `process.function(...)` without a path.
    pub target_exe: Option<PathBuf>,
    /// The `-x` pid, if any.
    pub target_pid: Option<u32>,
    /// MAXSTRINGLEN: the bound of every string copy.
    pub max_string: u32,
    /// `-D MAXUSTACKBYTES` (snaptap's own setting): how much user stack each
    /// `ubacktrace()` and friends copy at the probe, rounded up to whole pages from
    /// the page holding rsp, between 1 and [`MAX_USTACK_PAGES`] pages. The unwinder
    /// walks only what was copied: more bytes reach deeper frames, at a higher cost
    /// per hit.
    pub max_ustack_bytes: u32,
}

/// Default of [`PlanOptions::max_ustack_bytes`]: 4 pages (perf's `--call-graph dwarf`
/// copies 8 KiB by default).
pub const DEFAULT_MAX_USTACK_BYTES: u32 = 4 * 4096;

/// Most pages of user stack one backtrace copies (1 MiB).
pub const MAX_USTACK_PAGES: u32 = 256;

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            target_exe: None,
            target_pid: None,
            max_string: 128,
            max_ustack_bytes: DEFAULT_MAX_USTACK_BYTES,
        }
    }
}

/// The result of planning a script.
#[derive(Clone, Debug, Default)]
pub struct Planned {
    /// Every probe site with its capture plan.
    pub plans: PlanSet,
    /// One binding per site (same order as `plans.sites`).
    pub bindings: Vec<SiteBinding>,
    /// Handlers of `begin` probes, in script order.
    pub begin: Vec<u32>,
    /// Handlers of `end` probes.
    pub end: Vec<u32>,
    /// Handlers of `error` probes.
    pub error: Vec<u32>,
    /// Handlers of timer probes with their period.
    pub timers: Vec<(u32, Duration)>,
    /// Warnings (the plan is usable).
    pub warnings: Vec<Diagnostic>,
    /// One line per resolved probe point, stap's spelling (`-p2`).
    pub listing: Vec<String>,
}

/// Shared per-session state: opened debug info by canonical path.
pub(crate) struct Session<'a> {
    pub opts: &'a PlanOptions,
    modules: HashMap<PathBuf, Arc<DebugInfo>>,
    warnings: Vec<Diagnostic>,
    /// The kernel ELF that `kernel.*` probe points resolve against, if any.
    pub kernel: Option<PathBuf>,
    /// Names of the script's functions.
    pub user_functions: std::collections::HashSet<String>,
    /// The bodies of the script's functions, by name: a site plans the target
    /// expressions (`@var`, `@cast`, `kernel_string(...)`) of every function its
    /// handler calls, directly or not, since the runtime evaluates them with the
    /// calling record.
    pub functions: HashMap<String, script_syntax::ast::Block>,
    /// Context that any script function asks for (`execname()` in a helper): sites
    /// whose handler calls a script function collect it too.
    pub function_needs: capture_plan::ContextNeeds,
}

impl<'a> Session<'a> {
    pub(crate) fn new(opts: &'a PlanOptions) -> Session<'a> {
        Session {
            opts,
            modules: HashMap::new(),
            warnings: Vec::new(),
            kernel: None,
            user_functions: Default::default(),
            functions: HashMap::new(),
            function_needs: Default::default(),
        }
    }

    /// Opens (once) the debug info of a module.
    pub(crate) fn module(&mut self, path: &Path, span: Span) -> Result<Arc<DebugInfo>, Diagnostic> {
        if let Some(d) = self.modules.get(path) {
            return Ok(d.clone());
        }
        // Without DWARF (stripped binaries, system libraries) functions still resolve
        // from the symbol table, as entry probes without target variables.
        let di = DebugInfo::open_shared(path)
            .map_err(|e| Diagnostic::error("semantic error", e.to_string(), span))?;
        if !di.has_debug_info() {
            self.warnings.push(Diagnostic::warning(
                "warning",
                format!(
                    "{}; using its symbol table (no target variables, no .statement probes)",
                    di.missing_debug_info().map_or_else(
                        || format!("no debug information found in {}", path.display()),
                        str::to_string
                    )
                ),
                span,
            ));
        }
        debuginfo::progress(&format!("resolving probes in {}", path.display()));
        self.modules.insert(path.to_path_buf(), di.clone());
        Ok(di)
    }
}

/// Resolves every probe of `script` and plans its captures.
///
/// Errors are returned all together (one per problem found); warnings go into
/// [`Planned::warnings`].
pub fn plan(
    script: &Script,
    sources: &SourceMap,
    opts: &PlanOptions,
) -> Result<Planned, Vec<Diagnostic>> {
    plan_with_kernel(script, sources, opts, None)
}

/// Like [`plan`], with `kernel.function(...)`/`kernel.statement(...)` probe points
/// resolved against the kernel ELF `kernel` (for the VM backends). Kernel sites have
/// that file as their module and its link-time addresses.
pub fn plan_with_kernel(
    script: &Script,
    sources: &SourceMap,
    opts: &PlanOptions,
    kernel: Option<&Path>,
) -> Result<Planned, Vec<Diagnostic>> {
    let mut session = Session::new(opts);
    session.kernel = kernel.map(canonical);
    for item in &script.items {
        if let Item::Function(f) = item {
            session.user_functions.insert(f.name.clone());
            if let script_syntax::ast::FunctionBody::Script(b) = &f.body {
                session.functions.insert(f.name.clone(), b.clone());
                script_syntax::visit::walk_block(b, &mut |e| {
                    if let script_syntax::ast::ExprKind::Call { name, .. } = &e.kind {
                        capture::note_context_call(name, &mut session.function_needs);
                    }
                    script_syntax::visit::Walk::Descend
                });
            }
        }
    }
    let mut out = Planned::default();
    let mut errors = Vec::new();
    let mut handler = 0u32;
    for item in &script.items {
        let Item::Probe(decl) = item else {
            continue;
        };
        let idx = handler;
        handler += 1;
        for point in &decl.points {
            let resolved = match resolve::resolve_point(&mut session, point) {
                Ok(r) => r,
                Err(mut d) => {
                    errors.append(&mut d);
                    continue;
                }
            };
            let any = !resolved.is_empty();
            if resolved
                .iter()
                .any(|r| !matches!(r, resolve::Resolved::Site(_)))
            {
                errors.extend(capture::check_no_context(
                    &decl.body,
                    point.condition.as_ref(),
                ));
                errors.extend(capture::check_functions_no_context(
                    &decl.body,
                    point.condition.as_ref(),
                    &session.functions,
                ));
            }
            for r in resolved {
                if !matches!(r, resolve::Resolved::Site(_)) {
                    let line = resolve::simple_pp(point, &r);
                    if !out.listing.contains(&line) {
                        out.listing.push(line);
                    }
                }
                match r {
                    resolve::Resolved::Begin => out.begin.push(idx),
                    resolve::Resolved::End => out.end.push(idx),
                    resolve::Resolved::Error => out.error.push(idx),
                    resolve::Resolved::Timer(d) => out.timers.push((idx, d)),
                    resolve::Resolved::Site(site) => {
                        let first = out.bindings.len();
                        match capture::plan_site(&session, &site, point, &decl.body, idx, &mut out)
                        {
                            Ok(()) => {
                                // stap's pn(): an alias as the script wrote it.
                                if let Some(name) = resolve::alias_as_written(point, sources) {
                                    for b in &mut out.bindings[first..] {
                                        b.pn = name.clone();
                                    }
                                }
                            }
                            Err(mut d) => errors.append(&mut d),
                        }
                    }
                }
            }
            if any && point.sufficient {
                break;
            }
        }
    }
    if let Some(bad) = check_no_targets(script) {
        errors.extend(bad);
    }
    out.warnings.append(&mut session.warnings);
    if errors.is_empty() {
        Ok(out)
    } else {
        // An error without a location continues the one before it (stap's `no
        // match` after `while resolving probe point`), and so does an `unresolved
        // type` (after `unable to find local`): they move together.
        let mut groups: Vec<Vec<Diagnostic>> = Vec::new();
        for d in errors {
            match groups.last_mut() {
                Some(g) if d.labels.is_empty() || d.message == "unresolved type " => g.push(d),
                _ => groups.push(vec![d]),
            }
        }
        groups.sort_by(|a, b| {
            let key = |d: &Diagnostic| d.labels.first().map(|l| (l.span.file, l.span.start));
            key(&a[0])
                .cmp(&key(&b[0]))
                .then_with(|| a[0].message.cmp(&b[0].message))
        });
        // A function called from several sites reports each of its errors once.
        groups.dedup_by(|a, b| {
            a.len() == b.len()
                && a.iter().zip(b.iter()).all(|(x, y)| {
                    x.message == y.message
                        && x.labels.first().map(|l| l.span) == y.labels.first().map(|l| l.span)
                })
        });
        let mut errors: Vec<Diagnostic> = groups.into_iter().flatten().collect();
        // Warnings explain many errors (no debug info, so no match): stap prints them
        // first, then the errors.
        let mut all = std::mem::take(&mut out.warnings);
        all.append(&mut errors);
        Err(all)
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Target expressions in places that have no probe context (functions) are errors.
fn check_no_targets(script: &Script) -> Option<Vec<Diagnostic>> {
    let mut errs = Vec::new();
    for item in &script.items {
        if let Item::Function(f) = item {
            if let script_syntax::ast::FunctionBody::Script(b) = &f.body {
                script_syntax::visit::walk_block(b, &mut |e| {
                    if let script_syntax::ast::ExprKind::Target(t) = &e.kind {
                        errs.push(Diagnostic::error(
                            "semantic error",
                            format!(
                                "target variable '${}' can only be used in a probe handler",
                                t.name
                            ),
                            e.span,
                        ));
                    }
                    script_syntax::visit::Walk::Descend
                });
            }
        }
    }
    if errs.is_empty() {
        None
    } else {
        Some(errs)
    }
}

/// `-l PROBE` / `-L PROBE`: the resolved probe points of every probe in `script` (which
/// normally holds one `probe PROBE {}`), in stap's spelling; with `with_vars`, each
/// line is followed by the variables visible there as ` $name:type`.
pub fn list_probes(
    script: &Script,
    sources: &SourceMap,
    opts: &PlanOptions,
    with_vars: bool,
) -> Result<Vec<String>, Vec<Diagnostic>> {
    list_probes_with_kernel(script, sources, opts, with_vars, None)
}

/// Like [`list_probes`], with `kernel.*` points resolved against `kernel`.
pub fn list_probes_with_kernel(
    script: &Script,
    sources: &SourceMap,
    opts: &PlanOptions,
    with_vars: bool,
    kernel: Option<&Path>,
) -> Result<Vec<String>, Vec<Diagnostic>> {
    // Spans are enough for diagnostics; the sources are not needed to plan.
    let _ = sources;
    let mut session = Session::new(opts);
    session.kernel = kernel.map(canonical);
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for item in &script.items {
        let Item::Probe(decl) = item else {
            continue;
        };
        for point in &decl.points {
            match resolve::resolve_point(&mut session, point) {
                Ok(rs) => {
                    for r in rs {
                        let line = match &r {
                            resolve::Resolved::Site(s) => {
                                let mut l = s.listed.clone().unwrap_or_else(|| s.pp.clone());
                                if with_vars {
                                    l.push_str(&capture::var_listing(s));
                                }
                                l
                            }
                            other => resolve::simple_pp(point, other),
                        };
                        if !lines.contains(&line) {
                            lines.push(line);
                        }
                    }
                }
                Err(mut d) => errors.append(&mut d),
            }
        }
    }
    // stap prints the matches sorted.
    lines.sort();
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}
