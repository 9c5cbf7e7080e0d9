//! The snaptap runtime: runs SystemTap probe handlers inside snaptap on captured records.
//!
//! Overview: [`Runtime::new`] elaborates a parsed script (types, names, formats; stap's
//! semantic errors as [`Diagnostic`]s) and compiles it into a pre-resolved tree (`ir`).
//! The driver then calls [`Runtime::run_probe`] for begin/end/error/timer handlers and
//! [`Runtime::handle`] for each [`Record`]; values the script reads from the target come
//! only from the record, through the site's [`SiteBinding`] captures. Output goes to the
//! writer given at construction, errors and warnings to stderr (or
//! [`Runtime::set_stderr`]), both in stap's wording.
//!
//! Elaboration follows stap 4.8's wording, checked against a real stap
//! (`tests/stap-golden` in snaptap): `unresolved function NAME (similar: ...)`,
//! `type mismatch (string)` then `type was first inferred here (long)`, `inconsistent
//! arity (1 vs 2)`, `unresolved type `; printf formats are parsed as stap's
//! `print_format::string_to_components` and formatted with the rules of stap's
//! `vsprintf.c` (the kernel runtime's, 64-bit); `text_str`/`string_quoted`/`%#s` follow
//! `_stp_text_str`. [`Runtime::warnings`] gives stap's optimiser warnings (never-assigned
//! variables, dead assignments, side-effect-free statements, elided probes; similar ones
//! counted in [`Runtime::similar_warnings`]); a script whose probes are all elided is
//! stap's "no probes found". [`Runtime::elaboration`] gives what `-p2` lists. Globals
//! are ordered as stap's symbol resolution meets them (the end-of-run printout of
//! unread globals follows that order, in decimal as stap 4.8 prints it). The tz_*
//! functions read `$TZ` or `/etc/localtime` once; `system()` runs `sh -c` after its
//! handler when the driver allows it. Histograms print as
//! `stat-common.c` does, with `-D HIST_WIDTH` / `-D HIST_ELISION`. Arrays support
//! foreach slices (`in a[*, k]`), aggregate value sorts (`in a @sum-`), `delete a[*, k]`
//! and `[*, k] in a`; histogram buckets are indexed (`@hist_log(x)[N]`) and iterated
//! (`foreach ([b] in @hist_log(x))`) with stap's bucket numbers. The address-of
//! operator `&` and `printf`'s `%m`/`%M` read captures the planner made at the probe.
//! Context functions of a process target (`tapfns`): `uid() gid() euid() egid() pgrp()
//! sid()`, the `ns_*` forms (snaptap's own namespaces, as stap without
//! `--target-namespaces`), `cmdline_str() cmdline_arg(n) cmdline_args(n, m, delim)`,
//! `env_var(name)`, `pexecname()`, `proc_mem_size() proc_mem_rss() proc_mem_shr()
//! proc_mem_txt() proc_mem_data() proc_mem_string()` (and their `(pid)`/`_pid` forms)
//! and `sprint_loadavg()` are read from `/proc` **when the handler runs, not at the
//! probe**: they describe the process, which rarely changes them between the two; a
//! process that exited before its handler ran gives an error saying so (its command
//! line, environment, ids, group and session: the copies last read, if any). `bytes_to_string pages_to_string signal_str mem_page_size
//! num_online_cpus probe_type module_name` follow stap's tapset definitions.
//! `user_string_utf16/utf32` and `kernel_string_utf16/utf32` decode a copy of
//! MAXSTRINGLEN code units the probe made whole (so a short string within that many
//! bytes of the end of its mapping faults, where stap would read it). `jiffies()`,
//! `HZ()`, `set_kernel_*`/`set_user_*` (snaptap never writes its target) and kernel-only
//! functions (`task_current()`, `inode_path()`...) are compile-time errors naming the
//! function and the reason.
//! Not supported: a value variable in a foreach over an aggregate array.
#![forbid(unsafe_code)]

mod compile;
mod exec;
mod format;
mod ir;
mod lint;
mod map;
mod stats;
mod tapfns;
mod tz;
mod ustack;

pub use tz::local_timezone;
pub use ustack::{StackFrame, Stacks};

use std::io::Write;

use capture_plan::{Record, SiteBinding};
use script_syntax::ast::{Item, Script, Span};
use script_syntax::{Diagnostic, SourceMap};

use crate::exec::{BindRt, Cx, Limits, SelfCtx, State};
use crate::ir::{GlobalKind, ProbeKind, Program, Ty};
use crate::map::Key;

/// MAXSTRINGLEN when `-D` does not set it: the bound of every string, in the runtime
/// and in the captures the planner makes.
pub const DEFAULT_MAXSTRINGLEN: u32 = 512;

/// Session options that affect the runtime.
#[derive(Clone, Debug, Default)]
pub struct RuntimeOptions {
    /// Script arguments: `$1`/`@1` is `args[0]`.
    pub args: Vec<String>,
    /// `target()`: the pid given with `-x` or started with `-c`.
    pub target_pid: u32,
    /// `-D NAME=VALUE` settings: MAXACTION, MAXMAPENTRIES, MAXSTRINGLEN, MAXERRORS,
    /// MAXSKIPPED, MAXNESTING, MAXACTION_INTERRUPTIBLE, HIST_WIDTH, HIST_ELISION,
    /// MAXBACKTRACE (frames per user backtrace, 20 as in stap). Others
    /// are ignored.
    pub defines: Vec<(String, String)>,
}

/// What `stap -p2` prints about a script's declarations once it is elaborated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Elaboration {
    /// The lines under `# globals` (`count:long`, `names[10]:string [long]`).
    pub globals: String,
    /// The lines under `# functions`: each called script function with its types
    /// (`add:long (a:long, b:long)`), then its `  # locals` and `  NAME:TYPE` lines.
    pub functions: String,
    /// For each probe of the script, in order: its `  # locals` block (empty if none).
    pub probe_locals: Vec<String>,
}

/// What the driver should do after a handler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// `exit()` was called or too many errors happened: stop the target, run the end
    /// (or error) probes, then [`Runtime::finish`].
    Exit,
}

/// A compiled script with its session state.
pub struct Runtime {
    prog: Program,
    state: State,
    writer: Box<dyn Write>,
    /// Bindings indexed by site id (site ids are dense: indexes in the plan set).
    bindings: Vec<Option<BindRt>>,
    /// `pp()` text of each handler's probe points, in order.
    pps: Vec<Vec<String>>,
    errors: u64,
    skipped: u64,
    /// MAXERRORS was exceeded: end probes are skipped, error probes run.
    session_error: bool,
    last_flush: std::time::Instant,
    warnings: Vec<Diagnostic>,
    /// Warnings left out of `warnings` as similar to one shown.
    similar_warnings: usize,
    /// Commands started by `system()`, waited for at [`Runtime::finish`].
    children: Vec<std::process::Child>,
    /// Whether `system()` may run commands (off unless the driver allows it).
    system_allowed: bool,
    /// `system()` was refused once already (the warning is printed once).
    system_refused: bool,
}

fn define<T: std::str::FromStr>(
    opts: &RuntimeOptions,
    name: &str,
    default: T,
    diags: &mut Vec<Diagnostic>,
) -> T {
    match opts.defines.iter().rev().find(|(n, _)| n == name) {
        Some((_, v)) => {
            match compile::parse_number(v).and_then(|n| n.to_string().parse::<T>().ok()) {
                Some(x) => x,
                None => {
                    // A command-line setting has no place in the script to point at.
                    let mut d = Diagnostic::error(
                        "semantic error",
                        format!("invalid value '{v}' for -D {name}"),
                        Span::default(),
                    );
                    d.labels.clear();
                    diags.push(d);
                    default
                }
            }
        }
        None => default,
    }
}

/// `pp()` of a begin/end/error/timer point, as stap's `probe_point::print` writes it:
/// the components with their arguments, without the `?`/`!` markers and condition.
fn point_text(pt: &script_syntax::ast::ProbePoint) -> String {
    use script_syntax::ast::Literal;
    let mut o = String::new();
    for (i, c) in pt.components.iter().enumerate() {
        if i > 0 {
            o.push('.');
        }
        o.push_str(&c.name);
        match &c.arg {
            Some(Literal::Number(n)) => o.push_str(&format!("({n})")),
            Some(Literal::String(s)) => o.push_str(&format!("(\"{}\")", s.replace('"', "\\\""))),
            None => {}
        }
    }
    o
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "snaptap".to_string())
}

impl Runtime {
    /// Gives the unwinder and symboliser the user-stack functions use
    /// (`ubacktrace()`, `usymname()`...). Without one, backtraces hold only the
    /// probed address and addresses stay unsymbolised, as stap prints them without
    /// unwind data.
    pub fn set_stacks(&mut self, stacks: Box<dyn Stacks>) {
        self.state.stacks = Some(stacks);
    }

    /// The declarations `stap -p2` lists for this script.
    pub fn elaboration(&self) -> &Elaboration {
        &self.prog.elab
    }

    /// Sets what `tz_gmtoff()` (seconds west of UTC) and `tz_name()` return; by default
    /// the zone of `$TZ` or `/etc/localtime` at startup, as staprun passes it.
    pub fn set_timezone(&mut self, seconds_west: i64, name: &str) {
        self.state.tz = (seconds_west, name.to_string());
    }

    /// Lets `system()` run its commands. Off by default: a library user (a test, the
    /// fuzzer running begin probes of arbitrary scripts) must not run shell commands by
    /// accident; snaptap's driver turns it on, as stap always runs them.
    pub fn set_system_allowed(&mut self, allowed: bool) {
        self.system_allowed = allowed;
    }

    /// Starts the commands `system()` queued in the handler that just ran: in the
    /// background, after the handler's output, with snaptap's standard streams (as
    /// staprun runs them, so `-o FILE` does not capture their output).
    fn start_commands(&mut self) {
        if self.state.system_cmds.is_empty() {
            return;
        }
        self.flush();
        if !self.system_allowed {
            self.state.system_cmds.clear();
            if !self.system_refused {
                self.system_refused = true;
                let _ = writeln!(
                    self.state.err,
                    "WARNING: system() is disabled in this session: its commands are not run"
                );
            }
            return;
        }
        for cmd in std::mem::take(&mut self.state.system_cmds) {
            match std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .stdin(std::process::Stdio::null())
                .spawn()
            {
                Ok(child) => self.children.push(child),
                Err(e) => {
                    let _ = writeln!(self.state.err, "WARNING: system({cmd:?}) failed: {e}");
                }
            }
        }
        // Reap the ones that are done, so a long session leaves no zombies.
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }

    /// Elaborates and compiles `script`. `bindings` describe every record site (the
    /// handler to run and how captured expressions decode); `out` receives the script's
    /// output.
    pub fn new(
        script: &Script,
        sources: &SourceMap,
        bindings: Vec<SiteBinding>,
        opts: RuntimeOptions,
        out: Box<dyn Write>,
    ) -> Result<Runtime, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let maxaction: i64 = define(&opts, "MAXACTION", 1000, &mut diags);
        let limits = Limits {
            maxaction,
            maxaction_interruptible: define(
                &opts,
                "MAXACTION_INTERRUPTIBLE",
                maxaction.saturating_mul(10),
                &mut diags,
            ),
            maxmapentries: define(&opts, "MAXMAPENTRIES", 2048usize, &mut diags).max(1),
            maxstringlen: define(
                &opts,
                "MAXSTRINGLEN",
                DEFAULT_MAXSTRINGLEN as usize,
                &mut diags,
            )
            .max(2),
            maxerrors: define(&opts, "MAXERRORS", 0u64, &mut diags),
            // Each nested call costs native stack here; beyond a thousand levels a deep
            // recursion would overflow it instead of failing with stap's error.
            maxnesting: define(&opts, "MAXNESTING", 10usize, &mut diags).clamp(1, 1000),
            maxskipped: define(&opts, "MAXSKIPPED", 100u64, &mut diags),
            maxbacktrace: define(&opts, "MAXBACKTRACE", 20usize, &mut diags).clamp(1, 1000),
            // A bar wider than the print buffer is meaningless; stap would overflow it.
            hist: stats::HistLayout {
                width: define(&opts, "HIST_WIDTH", 50i64, &mut diags).clamp(1, 4096),
                elision: define(&opts, "HIST_ELISION", 2i64, &mut diags).clamp(-1, 1 << 20),
            },
        };
        if !diags.is_empty() {
            return Err(diags);
        }
        let c = compile::Compiler::new(
            script,
            sources,
            &bindings,
            &opts.args,
            compile::CompileLimits {
                maxmapentries: limits.maxmapentries,
            },
        );
        let (warnings, all_elided, similar_warnings) = lint::lint(script, sources);
        // stap resolves symbols, then optimises (eliding probes), then resolves types:
        // type errors in a script whose probes are all elided never show.
        let is_type_error = |d: &Diagnostic| {
            d.message.starts_with("unresolved type")
                || d.message.starts_with("type mismatch")
                || d.message.starts_with("type was first inferred")
        };
        let prog = match c.compile() {
            Ok(p) => Some(p),
            Err(errs) if all_elided && errs.iter().all(is_type_error) => None,
            Err(errs) => {
                // stap prints its elaboration warnings before the errors that stop it.
                let mut all = warnings.clone();
                all.extend(errs);
                return Err(all);
            }
        };
        let prog = match prog {
            Some(p) if !all_elided => p,
            _ => {
                // Every probe was optimised away: stap stops here.
                let mut all = warnings;
                all.push(Diagnostic {
                    severity: script_syntax::Severity::Error,
                    kind: "semantic error".into(),
                    message: "no probes found".into(),
                    labels: Vec::new(),
                    notes: Vec::new(),
                });
                return Err(all);
            }
        };
        let mut pps = Vec::new();
        for item in &script.items {
            if let Item::Probe(p) = item {
                pps.push(p.points.iter().map(point_text).collect());
            }
        }
        let nsites = bindings
            .iter()
            .map(|b| b.site.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let mut bmap: Vec<Option<BindRt>> = Vec::new();
        bmap.resize_with(nsites.min(1 << 20), || None);
        for b in bindings {
            let caps = prog
                .capture_ids
                .iter()
                .map(|id| b.captures.get(id).cloned())
                .collect();
            if let Some(slot) = bmap.get_mut(b.site.0 as usize) {
                *slot = Some(BindRt {
                    probe: b.probe,
                    pn: if b.pn.is_empty() { b.pp.clone() } else { b.pn },
                    pp: b.pp,
                    function: b.function,
                    caps,
                });
            }
        }
        let me = SelfCtx {
            pid: std::process::id(),
            ppid: std::os::unix::process::parent_id(),
            comm: own_comm(),
            target: opts.target_pid,
        };
        let state = State::new(&prog, limits, me, Box::new(std::io::stderr()));
        Ok(Runtime {
            prog,
            state,
            writer: out,
            bindings: bmap,
            pps,
            errors: 0,
            skipped: 0,
            children: Vec::new(),
            system_allowed: false,
            system_refused: false,
            session_error: false,
            last_flush: std::time::Instant::now(),
            warnings,
            similar_warnings,
        })
    }

    /// stap's elaboration warnings for the script (unused functions and variables,
    /// never-assigned variables, dead assignments, side-effect-free statements), in
    /// stap's order, for the driver to render unless `-w` was given.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// How many warnings stap would suppress as similar to one in [`Runtime::warnings`]:
    /// stap ends the session with `Number of similar warning messages suppressed: N.`
    /// and `Rerun with -v to see them.` when it is not 0.
    pub fn similar_warnings(&self) -> usize {
        self.similar_warnings
    }

    /// Sends errors and warnings to `w` instead of stderr (tests, or a log file).
    pub fn set_stderr(&mut self, w: Box<dyn Write>) {
        self.state.err = w;
    }

    /// Runs a begin, end, error or timer handler (index among the script's probes).
    /// After MAXERRORS was exceeded, `end` handlers are skipped; `error` handlers run
    /// only then, as in stap. Timer handlers do not run after `exit()`. End and error
    /// handlers always return [`Flow::Continue`]: the session is ending anyway and every
    /// end handler must get its turn.
    pub fn run_probe(&mut self, probe: u32) -> Flow {
        let Some(h) = self.prog.handlers.get(probe as usize) else {
            return self.flow();
        };
        let has = |k: ProbeKind| h.kinds.contains(&k);
        let only_ending = h
            .kinds
            .iter()
            .all(|k| matches!(k, ProbeKind::End | ProbeKind::Error));
        let any_ending = has(ProbeKind::End) || has(ProbeKind::Error);
        let was_stopping = self.state.exit_requested || self.session_error;
        let skip = if self.state.aborted {
            true
        } else if self.session_error {
            !has(ProbeKind::Error)
        } else if self.state.exit_requested {
            !has(ProbeKind::End)
        } else {
            h.kinds.iter().all(|k| *k == ProbeKind::Error)
        };
        if !skip {
            // `probe begin, end` reports the point of the phase it runs in.
            let point = h
                .kinds
                .iter()
                .position(|k| {
                    if self.session_error {
                        *k == ProbeKind::Error
                    } else if self.state.exit_requested {
                        *k == ProbeKind::End
                    } else {
                        !matches!(k, ProbeKind::End | ProbeKind::Error)
                    }
                })
                .unwrap_or(0);
            let pp = self
                .pps
                .get(probe as usize)
                .and_then(|v| v.get(point))
                .map_or("", |s| s.as_str());
            let cx = Cx {
                rec: None,
                bind: None,
                pp,
            };
            let err = self.state.run_handler(&self.prog, h, &cx);
            if let Some(e) = err {
                self.report(e);
            }
        }
        self.flush();
        self.start_commands();
        // A pure end/error handler never stops the driver's end loop; a mixed one
        // (`probe begin, end`) reports only an exit it caused itself.
        if only_ending || (was_stopping && any_ending) {
            Flow::Continue
        } else {
            self.flow()
        }
    }

    /// Runs the handler bound to `rec.site` with the record as context.
    #[inline]
    pub fn handle(&mut self, rec: &Record) -> Flow {
        if self.state.exit_requested || self.session_error {
            return Flow::Exit;
        }
        let Some(Some(b)) = self.bindings.get(rec.site.0 as usize) else {
            return Flow::Continue;
        };
        let Some(h) = self.prog.handlers.get(b.probe as usize) else {
            return Flow::Continue;
        };
        let cx = Cx {
            rec: Some(rec),
            bind: Some(b),
            pp: self
                .pps
                .get(b.probe as usize)
                .and_then(|v| v.first())
                .map_or("", |s| s.as_str()),
        };
        if let Some(e) = self.state.run_handler(&self.prog, h, &cx) {
            self.report(e);
        }
        self.start_commands();
        if !self.state.out.is_empty() {
            // Keep traces live without a write per record: flush when the buffer is big
            // or output has waited long enough.
            let now = std::time::Instant::now();
            if self.state.out.len() >= 1 << 16
                || now.duration_since(self.last_flush).as_millis() >= 100
            {
                self.flush();
            }
        }
        self.flow()
    }

    fn flow(&self) -> Flow {
        if self.state.exit_requested || self.session_error || self.state.aborted {
            Flow::Exit
        } else {
            Flow::Continue
        }
    }

    fn report(&mut self, e: exec::RtErr) {
        self.flush();
        let near = self
            .prog
            .toks
            .get(e.tok as usize)
            .map_or("", |s| s.as_str());
        let _ = if near.is_empty() {
            writeln!(self.state.err, "ERROR: {}", e.msg)
        } else {
            writeln!(self.state.err, "ERROR: {} near {}", e.msg, near)
        };
        let _ = self.state.err.flush();
        self.errors += 1;
        if self.errors > self.state.limits.maxerrors {
            self.session_error = true;
        }
    }

    /// Writes buffered script output to the output writer. Handlers flush by size and
    /// age on their own; a driver may call this when its queue is idle.
    pub fn flush(&mut self) {
        self.last_flush = std::time::Instant::now();
        if !self.state.out.is_empty() {
            let _ = self.writer.write_all(&self.state.out);
            self.state.out.clear();
        }
        let _ = self.writer.flush();
    }

    /// Call once after the end probes: prints globals that were written but never read
    /// (as stap's synthetic end probes do), the error summary, and flushes.
    pub fn finish(&mut self) {
        if !self.session_error && !self.state.aborted {
            let text = self.unread_globals();
            self.state.out.extend_from_slice(text.as_bytes());
        }
        self.flush();
        // Commands from system() finish before the session reports its end.
        for mut c in std::mem::take(&mut self.children) {
            let _ = c.wait();
        }
        if self.errors > 0 || self.skipped > 0 {
            let _ = writeln!(
                self.state.err,
                "WARNING: Number of errors: {}, skipped probes: {}",
                self.errors, self.skipped
            );
            let _ = self.state.err.flush();
        }
    }

    fn unread_globals(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let st = &self.state;
        for g in self.prog.globals.iter().filter(|g| g.autoprint) {
            match &g.kind {
                GlobalKind::Scalar(Ty::Long, s) => {
                    // stap 4.8 synthesises `printf("n=%d\n", n)` (see `stap -p2 --vp 02`).
                    let _ = writeln!(o, "{}={}", g.name, st.glong[*s as usize]);
                }
                GlobalKind::Scalar(Ty::Str, s) => {
                    let _ = writeln!(
                        o,
                        "{}=\"{}\"",
                        g.name,
                        format::escape(&st.gstr[*s as usize])
                    );
                }
                GlobalKind::Scalar(Ty::Stats, s) => {
                    let x = &st.gstat[*s as usize];
                    if x.count == 0 {
                        let _ = writeln!(o, "{} @count=0x0", g.name);
                    } else {
                        let _ = writeln!(
                            o,
                            "{} @count={} @min={} @max={} @sum={} @avg={}",
                            g.name,
                            x.count,
                            x.min,
                            x.max,
                            x.sum,
                            x.avg()
                        );
                    }
                }
                GlobalKind::Array(a) => {
                    let fmt_key = |k: &Key| -> String {
                        let n = self.prog.arrays[*a as usize].keys.len();
                        let parts: Vec<String> = (0..n)
                            .map(|i| match k.part(i) {
                                map::KeyPart::L(v) => v.to_string(),
                                map::KeyPart::S(s) => format!("\"{}\"", format::escape(&s)),
                            })
                            .collect();
                        parts.join(",")
                    };
                    match &st.arrays[*a as usize] {
                        exec::ArrayData::L(t) => {
                            let mut v = t.ordered();
                            v.sort_by(|x, y| y.1.cmp(x.1));
                            for (k, val) in v {
                                let _ = writeln!(o, "{}[{}]={}", g.name, fmt_key(k), val);
                            }
                        }
                        exec::ArrayData::S(t) => {
                            let mut v = t.ordered();
                            v.sort_by(|x, y| y.1.as_bytes().cmp(x.1.as_bytes()));
                            for (k, val) in v {
                                let _ = writeln!(
                                    o,
                                    "{}[{}]=\"{}\"",
                                    g.name,
                                    fmt_key(k),
                                    format::escape(val)
                                );
                            }
                        }
                        exec::ArrayData::St(t) => {
                            let mut v = t.ordered();
                            v.sort_by_key(|y| std::cmp::Reverse(y.1.count));
                            for (k, x) in v {
                                let _ = writeln!(
                                    o,
                                    "{}[{}] @count={} @min={} @max={} @sum={} @avg={}",
                                    g.name,
                                    fmt_key(k),
                                    x.count,
                                    x.min,
                                    x.max,
                                    x.sum,
                                    x.avg()
                                );
                            }
                        }
                    }
                }
            }
        }
        o
    }

    /// Counts records that never reached a handler (lost in the queue, or dropped by a
    /// backend) as stap's "skipped probes" in the final warning. Past `MAXSKIPPED`
    /// (default 100) the session stops with stap's error, as stap does: the next
    /// [`Runtime::handle`] returns [`Flow::Exit`], end probes are skipped and error
    /// probes run.
    pub fn note_skipped(&mut self, n: u64) {
        let before = self.skipped;
        self.skipped = self.skipped.saturating_add(n);
        let max = self.state.limits.maxskipped;
        if before <= max && self.skipped > max {
            self.flush();
            let _ = writeln!(
                self.state.err,
                "ERROR: Skipped too many probes, check MAXSKIPPED or try again with stap -t for more details."
            );
            let _ = self.state.err.flush();
            self.session_error = true;
        }
    }

    /// Runtime errors reported so far.
    pub fn error_count(&self) -> u64 {
        self.errors
    }

    /// The process exit code stap would give: 1 after errors (or too many skipped
    /// probes), else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.errors > 0 || self.session_error)
    }

    /// Number of probe handlers (the valid `run_probe` indexes).
    pub fn probe_count(&self) -> usize {
        self.prog.handlers.len()
    }
}

#[cfg(test)]
mod tests;
