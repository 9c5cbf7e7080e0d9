//! One tracing session: parse → plan → elaborate → start the backend → run handlers.
//!
//! The backend runs on its own thread (ptrace requires every request to come from the
//! thread that attached); this thread runs the runtime: begin probes, then records and
//! timers as they come, then end probes. The two meet only through the bounded event
//! queue and the stop token.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::output::{JsonLines, Origin};
use crate::{progress, tapsets, vm};

use anyhow::{bail, Context, Result};
use backend::{Event, StopToken, TargetEnd};
use backend_ptrace::{Launch, Options, PtraceBackend};
use runtime::{Flow, Runtime, RuntimeOptions};
use script_syntax::{Diagnostic, Severity, SourceMap};

use crate::cli::Cli;

/// How many events the queue between backend and runtime holds before it drops.
const QUEUE_CAPACITY: usize = 1 << 16;

/// Runs the session described by `cli`; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    if let Some(path) = &cli.vm_plugin_args {
        return vm::print_plugin_args(path);
    }
    if let Some(pattern) = cli.list.clone().or_else(|| cli.list_vars.clone()) {
        return list(&cli, &pattern);
    }

    let mut sources = SourceMap::default();
    let mut rest = cli.rest.clone();
    let (name, text) = match &cli.script_text {
        Some(t) => ("<input>".to_string(), t.clone()),
        None => {
            if rest.is_empty() {
                bail!("no script given: use SCRIPT or -e 'SCRIPT TEXT' (see --help)");
            }
            let path = rest.remove(0);
            let text = if path == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("reading the script from standard input")?
            } else {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read script file '{path}'"))?
            };
            (path, text)
        }
    };
    let script_args = rest;
    if cli.pass == Some(1) {
        // Pass 1 shows the user's script alone, as stap does, with the tapsets'
        // `.stpm` macros defined (they hold no items of their own).
        let mut files: Vec<_> = tapsets::load(&mut sources, &cli.include)?
            .into_iter()
            .filter(|f| sources.file(*f).is_some_and(|s| s.name.ends_with(".stpm")))
            .collect();
        files.push(sources.add(name.clone(), text));
        let mut ids = script_syntax::IdGen::new();
        let popts = script_syntax::ParseOptions::with_args(&script_args);
        let (script, diags) = script_syntax::parse_files(&sources, &files, &mut ids, &popts);
        if report_pass(&diags, &sources, cli.no_warnings, 1) {
            return Ok(1);
        }
        print!(
            "{}",
            script_syntax::print_script_stap(&script, &sources, &name, &script_args)
        );
        return Ok(0);
    }
    // Tapsets first, then the user's script: one session, one id space.
    let mut files = tapsets::load(&mut sources, &cli.include)?;
    files.push(sources.add(name, text));
    // -E scripts follow the main one and are named as stap names them.
    for (i, extra) in cli.extra_scripts.iter().enumerate() {
        files.push(sources.add(format!("<input{}>", i + 1), extra.clone()));
    }
    let mut ids = script_syntax::IdGen::new();
    let popts = script_syntax::ParseOptions::with_args(&script_args);
    let (script, diags) = script_syntax::parse_files(&sources, &files, &mut ids, &popts);
    if report_pass(&diags, &sources, cli.no_warnings, 1) {
        return Ok(1);
    }
    // Probe aliases are expanded in place, so a handler's index stays its position
    // among the script's probes for the planner and the runtime alike.
    let (mut script, diags) = script_syntax::expand_script(&script);
    if report_pass(&diags, &sources, cli.no_warnings, 2) {
        return Ok(1);
    }
    set_globals(&mut script, &cli.set_globals)?;

    let defines = parse_defines(&cli.defines)?;
    let max_string = defines
        .iter()
        .find(|(k, _)| k == "MAXSTRINGLEN")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(runtime::DEFAULT_MAXSTRINGLEN);
    // snaptap's own: the bytes of user stack each backtrace copies at the probe.
    let max_ustack_bytes = match defines.iter().rev().find(|(k, _)| k == "MAXUSTACKBYTES") {
        Some((_, v)) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid value '{v}' for -D MAXUSTACKBYTES"))?,
        None => planner::DEFAULT_MAX_USTACK_BYTES,
    };

    let (launch, target_exe) = target_of(&cli)?;
    let opts = planner::PlanOptions {
        target_exe: target_exe.clone(),
        target_pid: cli.pid,
        max_string,
        max_ustack_bytes,
    };
    progress::start();
    let planned = planner::plan_with_kernel(&script, &sources, &opts, cli.kernel.as_deref());
    progress::finish();
    let planned = match planned {
        Ok(p) => p,
        Err(diags) => {
            report_pass(&diags, &sources, cli.no_warnings, 2);
            return Ok(1);
        }
    };
    if report_pass(&planned.warnings, &sources, cli.no_warnings, 2) {
        return Ok(1);
    }
    if planned.plans.sites.is_empty()
        && planned.begin.is_empty()
        && planned.end.is_empty()
        && planned.timers.is_empty()
        && planned.error.is_empty()
    {
        eprintln!("semantic error: no probes found");
        eprintln!("Pass 2: analysis failed.  [man error::pass2]");
        return Ok(1);
    }
    if cli.verbose > 0 {
        eprintln!(
            "Pass 2: resolved {} probe site(s) for {} handler(s).",
            planned.plans.sites.len(),
            count_probes(&script)
        );
    }
    if cli.pass == Some(2) {
        return elaborate(&cli, &script, &sources, &planned, script_args);
    }
    if cli.pass == Some(3) {
        print!("{}", planner::dump(&planned));
        return Ok(0);
    }
    planned
        .plans
        .verify()
        .map_err(|e| anyhow::anyhow!("internal error: invalid capture plan: {e}"))?;

    let out: Box<dyn Write> = match &cli.output {
        Some(p) => Box::new(std::io::LineWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot create output file '{}'", p.display()))?,
        )),
        None => Box::new(std::io::stdout()),
    };
    let (out, json) = if cli.format == "json" {
        let (j, captured) = JsonLines::new(out);
        (Box::new(captured) as Box<dyn Write>, Some(j))
    } else {
        (out, None)
    };

    let needs_target = !planned.plans.sites.is_empty();
    let target = match (launch, &cli.gdb, &cli.vm) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            bail!("-c/-x trace a local process; --gdb/--vm trace a VM: use one or the other")
        }
        (_, Some(_), Some(_)) => bail!("--gdb and --vm cannot be used together"),
        (Some(l), None, None) => {
            if needs_target || cli.command.is_some() {
                Some(Target::Process(l))
            } else {
                None
            }
        }
        (None, gdb, vm) if gdb.is_some() || vm.is_some() || cli.vm_attach.is_some() => {
            let Some(kernel) = cli.kernel.clone() else {
                bail!("--gdb and --vm need --kernel ELF: the kernel image with its DWARF");
            };
            // --vm: the in-emulator copier when this QEMU can load it, else the gdbstub.
            let plugin = match (vm, &cli.vm_attach) {
                (_, Some(ctl)) => Some(vm::attach_plugin(
                    ctl,
                    &kernel,
                    &planned.plans,
                    cli.verbose > 0,
                )?),
                (Some(cmd), None) => try_plugin(cmd, &kernel, &planned.plans, cli.verbose > 0),
                (None, None) => None,
            };
            if let Some((machine, be)) = plugin {
                Some(Target::Plugin {
                    be: Box::new(be),
                    vm: machine,
                })
            } else {
                let vm = match vm {
                    Some(cmd) => Some(vm::start(cmd, &[], true)?),
                    None => None,
                };
                let addr = match (&vm, gdb) {
                    (Some(v), _) => v.gdb_addr.clone(),
                    (None, Some(a)) => a.clone(),
                    (None, None) => unreachable!("one of --gdb/--vm is set"),
                };
                Some(Target::Gdb { addr, kernel, vm })
            }
        }
        (None, _, _) => {
            if needs_target {
                bail!("process probes need a target: give -c CMD or -x PID (snaptap traces processes through ptrace)");
            }
            None
        }
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, interrupted.clone())
            .context("installing signal handlers")?;
    }

    let stop = StopToken::new();
    let (etx, erx) = backend::event_queue(QUEUE_CAPACITY);
    let mut backend_thread = None;
    let mut go_tx = None;
    let mut target_pid = cli.pid.unwrap_or(0);
    let mut machine = None;
    if let Some(target) = target {
        let (pid_tx, pid_rx) = mpsc::channel::<Result<u32, String>>();
        let (gtx, go_rx) = mpsc::channel::<bool>();
        let plans = planned.plans.clone();
        let stop2 = stop.clone();
        let spec = match target {
            Target::Gdb { addr, kernel, vm } => {
                let paused = vm.is_some();
                machine = vm;
                BackendSpec::Gdb {
                    addr,
                    kernel,
                    verbose: cli.verbose > 0,
                    paused,
                }
            }
            Target::Process(l) => BackendSpec::Process(l),
            Target::Plugin { be, vm } => {
                machine = Some(vm);
                BackendSpec::Plugin(be)
            }
        };
        let handle = thread::Builder::new()
            .name("snaptap-backend".into())
            .spawn(move || -> Result<backend::RunSummary, String> {
                let r = match spec {
                    BackendSpec::Process(launch) => {
                        let mut be =
                            match PtraceBackend::new(launch, Options { follow_forks: true }) {
                                Ok(b) => b,
                                Err(e) => {
                                    let _ = pid_tx.send(Err(e.to_string()));
                                    return Err(e.to_string());
                                }
                            };
                        let _ = pid_tx.send(Ok(be.pid()));
                        if !go_rx.recv().unwrap_or(false) {
                            stop2.request();
                        }
                        be.run(&plans, &etx, &stop2).map_err(|e| e.to_string())
                    }
                    BackendSpec::Plugin(mut be) => {
                        let _ = pid_tx.send(Ok(0));
                        if !go_rx.recv().unwrap_or(false) {
                            stop2.request();
                        }
                        be.run(&plans, &etx, &stop2).map_err(|e| e.to_string())
                    }
                    BackendSpec::Gdb {
                        addr,
                        kernel,
                        verbose,
                        paused,
                    } => {
                        let opts = backend_gdb::GdbOptions {
                            addr,
                            connect_timeout: Duration::from_secs(10),
                            module: kernel,
                        };
                        let mut be = match backend_gdb::GdbBackend::connect(opts) {
                            Ok(b) => b,
                            Err(e) => {
                                let _ = pid_tx.send(Err(e.to_string()));
                                return Err(e.to_string());
                            }
                        };
                        // A machine we started paused is still in real mode: its
                        // kernel addresses become readable only once it runs.
                        be.defer_unreadable_sites(paused);
                        let _ = pid_tx.send(Ok(0));
                        if !go_rx.recv().unwrap_or(false) {
                            stop2.request();
                        }
                        let r = be.run(&plans, &etx, &stop2).map_err(|e| e.to_string());
                        if verbose {
                            eprintln!("gdb backend: {:?}", be.stats());
                        }
                        r
                    }
                };
                drop(etx);
                r
            })
            .context("starting the backend thread")?;
        match pid_rx.recv() {
            Ok(Ok(pid)) => target_pid = pid,
            Ok(Err(e)) => {
                let _ = handle.join();
                if let Some(m) = machine.take() {
                    m.stop();
                }
                bail!("{e}");
            }
            Err(_) => bail!("the backend thread ended before it started the target"),
        }
        backend_thread = Some(handle);
        go_tx = Some(gtx);
    } else {
        drop(etx);
    }

    let rt_opts = RuntimeOptions {
        args: script_args,
        target_pid,
        defines,
    };
    let mut rt = match Runtime::new(&script, &sources, planned.bindings.clone(), rt_opts, out) {
        Ok(rt) => rt,
        Err(diags) => {
            report_pass(&diags, &sources, cli.no_warnings, 2);
            abort_start(&cli, target_pid, go_tx, backend_thread);
            return Ok(1);
        }
    };
    // system() runs its command after the handler, as stap's staprun does.
    rt.set_system_allowed(true);
    // stap's elision warnings; -W makes them errors.
    if report(rt.warnings(), &sources, cli.no_warnings)
        || (cli.warnings_are_errors && !rt.warnings().is_empty())
    {
        abort_start(&cli, target_pid, go_tx.take(), backend_thread.take());
        return Ok(1);
    }
    let stacks = crate::stacks::SharedStacks::new(target_pid);
    rt.set_stacks(Box::new(stacks.clone()));
    let mut rt = Handlers::new(rt, json, &planned);

    // Begin probes run before the target executes its first instruction, as in stap.
    let mut exiting = false;
    for &p in &planned.begin {
        if rt.run_probe(p) == Flow::Exit {
            exiting = true;
            break;
        }
    }
    // A command that is not to run is killed while it is still held at its exec,
    // before the backend hears it may go (it would detach and let it run).
    if exiting {
        kill_unstarted(&cli, target_pid);
    }
    if let Some(g) = go_tx.take() {
        let _ = g.send(!exiting);
    }

    let start = Instant::now();
    let mut timers: Vec<(u32, Duration, Instant)> = planned
        .timers
        .iter()
        .map(|&(p, d)| (p, d, start + d))
        .collect();
    let has_backend = backend_thread.is_some();
    let mut target_ended = false;
    // -T TIME ends the session as exit() would: the end probes still run.
    let deadline = cli
        .timeout
        .map(|t| start + Duration::from_secs_f64(t.clamp(0.0, 1e9)));
    while !exiting {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let next_timer = timers.iter().map(|t| t.2).chain(deadline).min();
        let mut wait = Duration::from_millis(100);
        if let Some(t) = next_timer {
            wait = wait.min(t.saturating_duration_since(now));
        }
        if has_backend {
            match erx.recv_timeout(wait) {
                Ok(Some(ev)) => {
                    // Handle what is queued in one batch, then let the output out: stap
                    // also flushes its buffers when the trace goes quiet.
                    let mut next = Some(ev);
                    let mut batch = 0;
                    while let Some(ev) = next.take() {
                        if handle_event(ev, &mut rt, &stacks, &cli, &mut target_ended) == Flow::Exit
                        {
                            exiting = true;
                            break;
                        }
                        batch += 1;
                        if batch < 4096 {
                            next = erx.try_recv();
                        }
                    }
                    rt.flush();
                    // The queue is drained: rather than block at once (every record
                    // would then wake this thread: a futex call and a context switch
                    // per hit, on the core the target and the tracer need), let
                    // records gather for a millisecond. Output is at most 1 ms later.
                    if batch < 4096 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                Ok(None) => {}
                Err(()) => break,
            }
        } else if !target_ended {
            thread::sleep(wait);
        }
        let now = Instant::now();
        for t in timers.iter_mut() {
            if !exiting && t.2 <= now {
                t.2 += t.1;
                if t.2 <= now {
                    t.2 = now + t.1;
                }
                if rt.run_probe(t.0) == Flow::Exit {
                    exiting = true;
                }
            }
        }
    }

    stop.request();
    let mut backend_error = None;
    if let Some(h) = backend_thread {
        match h.join() {
            Ok(Ok(summary)) => {
                for f in summary.failed_sites {
                    if !cli.no_warnings {
                        eprintln!("WARNING: {f}");
                    }
                }
            }
            Ok(Err(e)) => backend_error = Some(e),
            Err(_) => backend_error = Some("the backend thread panicked".into()),
        }
    }
    if let Some(m) = machine.take() {
        m.stop();
    }
    // Records that were queued before the target ended are still handled; after exit()
    // stap runs no more handlers, and neither do we.
    if !exiting && !interrupted.load(Ordering::Relaxed) {
        while let Some(ev) = erx.try_recv() {
            if handle_event(ev, &mut rt, &stacks, &cli, &mut target_ended) == Flow::Exit {
                break;
            }
        }
    }

    // The runtime decides which of these run: end probes normally, error probes only
    // after MAXERRORS was exceeded, as in stap.
    let mut ending: Vec<u32> = planned.end.iter().chain(&planned.error).copied().collect();
    ending.dedup();
    for p in ending {
        if rt.run_probe(p) == Flow::Exit {
            break;
        }
    }
    let dropped = erx.dropped();
    // Records lost in the queue are probes whose handler never ran: stap's "skipped
    // probes", which also count towards MAXSKIPPED.
    rt.note_skipped(dropped);
    rt.finish();
    if dropped > 0 {
        eprintln!(
            "WARNING: Number of dropped records: {dropped} of {} (the handler queue was full)",
            erx.sent()
        );
    }
    if let Some(e) = backend_error {
        eprintln!("ERROR: {e}");
        return Ok(1);
    }
    let code = rt.exit_code();
    if code != 0 {
        eprintln!("Pass 5: run failed.  [man error::pass5]");
    }
    Ok(code)
}

/// What snaptap traces.
enum Target {
    /// A kernel in a QEMU machine we started with the capture-plan plugin loaded.
    Plugin {
        /// The host side of the plugin, plans already handed over.
        be: Box<backend_plugin::PluginBackend>,
        /// The machine, stopped at the end.
        vm: vm::Machine,
    },
    /// A local process through ptrace.
    Process(Launch),
    /// A kernel (or gdbserver process) through the GDB remote protocol.
    Gdb {
        /// `host:port` of the stub.
        addr: String,
        /// The kernel ELF with DWARF.
        kernel: PathBuf,
        /// The VM snaptap started (`--vm`), stopped at the end.
        vm: Option<vm::Machine>,
    },
}

/// What the backend thread builds (the part of [`Target`] that moves to it).
enum BackendSpec {
    Process(Launch),
    Plugin(Box<backend_plugin::PluginBackend>),
    Gdb {
        addr: String,
        kernel: PathBuf,
        verbose: bool,
        paused: bool,
    },
}

/// Handles one backend event on the driver thread.
fn handle_event(
    ev: Event,
    rt: &mut Handlers,
    stacks: &crate::stacks::SharedStacks,
    cli: &Cli,
    target_ended: &mut bool,
) -> Flow {
    match ev {
        Event::Record(rec) => rt.handle(&rec),
        Event::TargetEnded { pid, how } => {
            *target_ended = true;
            if let TargetEnd::Signaled { name, core, .. } = how {
                eprintln!(
                    "WARNING: target process {pid} was killed by {name}{}",
                    if core { " (core dumped)" } else { "" }
                );
            }
            Flow::Continue
        }
        // Mappings are what user stacks unwind and symbolise with.
        Event::ModuleMapped { pid, path, bias } => {
            stacks.module_mapped(pid, path, bias);
            Flow::Continue
        }
        Event::Warning(w) => {
            if !cli.no_warnings {
                eprintln!("WARNING: {w}");
            }
            Flow::Continue
        }
    }
}

/// Kills a `-c` child that never got to run (the session ended in its begin probes).
/// The session ends before the target may run (a semantic error, a warning under
/// -W): the command of `-c`, still held at its exec, is killed first, then the backend
/// is told not to start and is waited for. An attached `-x` process is only detached.
fn abort_start(
    cli: &Cli,
    pid: u32,
    go: Option<mpsc::Sender<bool>>,
    backend: Option<thread::JoinHandle<Result<backend::RunSummary, String>>>,
) {
    kill_unstarted(cli, pid);
    if let Some(g) = go {
        let _ = g.send(false);
    }
    if let Some(h) = backend {
        let _ = h.join();
    }
}

fn kill_unstarted(cli: &Cli, pid: u32) {
    if cli.command.is_some() && pid != 0 {
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
}

fn count_probes(script: &script_syntax::ast::Script) -> usize {
    script
        .items
        .iter()
        .filter(|i| matches!(i, script_syntax::ast::Item::Probe(_)))
        .count()
}

/// `-p2`: elaborates the script as the run would (the runtime's semantic checks
/// included) and prints stap's listing: `# globals`, `# functions`, `# probes`.
fn elaborate(
    cli: &Cli,
    script: &script_syntax::ast::Script,
    sources: &SourceMap,
    planned: &planner::Planned,
    args: Vec<String>,
) -> Result<i32> {
    let opts = RuntimeOptions {
        args,
        target_pid: cli.pid.unwrap_or(0),
        defines: parse_defines(&cli.defines)?,
    };
    let rt = match Runtime::new(
        script,
        sources,
        planned.bindings.clone(),
        opts,
        Box::new(std::io::sink()),
    ) {
        Ok(rt) => rt,
        Err(diags) => {
            report_pass(&diags, sources, cli.no_warnings, 2);
            return Ok(1);
        }
    };
    if report(rt.warnings(), sources, cli.no_warnings)
        || (cli.warnings_are_errors && !rt.warnings().is_empty())
    {
        return Ok(1);
    }
    let e = rt.elaboration();
    let mut s = String::new();
    if !e.globals.is_empty() {
        s += "# globals\n";
        s += &e.globals;
    }
    if !e.functions.is_empty() {
        s += "# functions\n";
        s += &e.functions;
    }
    s += "# probes\n";
    s += &planner::p2_probes(planned, script, &e.probe_locals);
    print!("{s}");
    Ok(0)
}

/// Prints the diagnostics of pass `pass`; when one is an error, closes the failed
/// pass as stap does (`N parse errors.`, `Pass N: ... failed.`, similar messages
/// counted). Returns true if any is an error.
fn report_pass(diags: &[Diagnostic], sources: &SourceMap, no_warnings: bool, pass: u8) -> bool {
    if !diags.iter().any(|d| d.severity == Severity::Error) {
        return report(diags, sources, no_warnings);
    }
    let shown: Vec<Diagnostic> = diags
        .iter()
        .filter(|d| !no_warnings || d.severity == Severity::Error)
        .cloned()
        .collect();
    eprint!("{}", script_syntax::render_failure(&shown, sources, pass));
    true
}

/// Prints diagnostics; returns true if any is an error.
fn report(diags: &[Diagnostic], sources: &SourceMap, no_warnings: bool) -> bool {
    let mut err = false;
    for d in diags {
        if d.severity == Severity::Error {
            err = true;
        } else if no_warnings {
            continue;
        }
        eprint!("{}", script_syntax::render(d, sources));
    }
    err
}

/// `-G VAR=VAL`: the global's initial value becomes VAL, read as its declared
/// initialiser's kind (a number or a string); a global declared without one takes
/// VAL as a number when it reads as one, else as a string.
fn set_globals(script: &mut script_syntax::ast::Script, sets: &[String]) -> Result<()> {
    use script_syntax::ast::{Item, Literal};
    for set in sets {
        let Some((var, val)) = set.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("invalid -G option '{set}': expected VAR=VALUE");
        };
        let decl = script.items.iter_mut().find_map(|i| match i {
            Item::Global(g) if g.name == var => Some(g),
            _ => None,
        });
        let Some(decl) = decl else {
            bail!("-G {set}: the script declares no global variable '{var}'");
        };
        if decl.size.is_some() {
            bail!("-G {set}: '{var}' is an array; -G sets scalar globals only");
        }
        let number = script_syntax::parse_int(val);
        decl.init = Some(match (&decl.init, number) {
            (Some(Literal::String(_)), _) => Literal::String(val.to_string()),
            (Some(Literal::Number(_)), None) => {
                bail!("-G {set}: '{var}' is a number and '{val}' is not one")
            }
            (_, Some(n)) => Literal::Number(n),
            (None, None) => Literal::String(val.to_string()),
        });
    }
    Ok(())
}

fn parse_defines(defs: &[String]) -> Result<Vec<(String, String)>> {
    defs.iter()
        .map(|d| match d.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid -D option '{d}': expected NAME=VALUE"),
        })
        .collect()
}

/// The launch mode and the executable path probes without a path refer to.
fn target_of(cli: &Cli) -> Result<(Option<Launch>, Option<PathBuf>)> {
    if cli.command.is_some() && cli.pid.is_some() {
        bail!("-c and -x cannot be used together");
    }
    if let Some(cmd) = &cli.command {
        let argv =
            shell_words::split(cmd).with_context(|| format!("cannot split command '{cmd}'"))?;
        if argv.is_empty() {
            bail!("-c needs a command");
        }
        let Some(exe) = resolve_in_path(&argv[0]) else {
            bail!("cannot execute '{}': No such file or directory", argv[0]);
        };
        return Ok((Some(Launch::Spawn { argv }), Some(exe)));
    }
    if let Some(pid) = cli.pid {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no such process: {pid}");
        }
        return Ok((Some(Launch::Attach { pid }), exe));
    }
    Ok((None, None))
}

/// Resolves a command name as execvp would: a name with a slash is a path; otherwise
/// the first executable file in $PATH.
fn resolve_in_path(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return std::fs::canonicalize(cmd).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

/// `-l PROBE` / `-L PROBE`: list matching probe points (with variables for -L).
fn list(cli: &Cli, pattern: &str) -> Result<i32> {
    let mut sources = SourceMap::default();
    let text = format!("probe {pattern} {{}}");
    let file = sources.add("<input>", text);
    let (script, diags) = script_syntax::parse(&sources, file, &[]);
    if report(&diags, &sources, cli.no_warnings) {
        return Ok(1);
    }
    let (_, target_exe) = target_of(cli)?;
    let opts = planner::PlanOptions {
        target_exe,
        target_pid: cli.pid,
        max_string: 128,
        ..Default::default()
    };
    match planner::list_probes_with_kernel(
        &script,
        &sources,
        &opts,
        cli.list_vars.is_some(),
        cli.kernel.as_deref(),
    ) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            Ok(0)
        }
        Err(diags) => {
            report(&diags, &sources, cli.no_warnings);
            Ok(1)
        }
    }
}

/// The runtime plus, with `--format json`, the conversion of its output to JSON lines.
struct Handlers {
    rt: Runtime,
    json: Option<JsonLines>,
    /// `pp()` of each site, for JSON output.
    site_pp: Vec<String>,
    /// What each begin/end/error/timer handler is, for JSON output.
    probe_kind: std::collections::HashMap<u32, &'static str>,
}

impl Handlers {
    fn new(rt: Runtime, json: Option<JsonLines>, planned: &planner::Planned) -> Handlers {
        let mut site_pp = vec![String::new(); planned.plans.sites.len()];
        for b in &planned.bindings {
            if let Some(p) = site_pp.get_mut(b.site.0 as usize) {
                *p = b.pp.clone();
            }
        }
        let mut probe_kind = std::collections::HashMap::new();
        for &p in &planned.begin {
            probe_kind.insert(p, "begin");
        }
        for &p in &planned.end {
            probe_kind.insert(p, "end");
        }
        for &p in &planned.error {
            probe_kind.insert(p, "error");
        }
        for &(p, _) in &planned.timers {
            probe_kind.insert(p, "timer");
        }
        Handlers {
            rt,
            json,
            site_pp,
            probe_kind,
        }
    }

    fn handle(&mut self, rec: &capture_plan::Record) -> Flow {
        let flow = self.rt.handle(rec);
        if let Some(j) = self.json.as_mut() {
            self.rt.flush();
            let probe = self
                .site_pp
                .get(rec.site.0 as usize)
                .map_or("", |s| s.as_str());
            j.emit(&Origin {
                probe,
                pid: rec.pid,
                tid: rec.tid,
                time_ns: rec.time_ns,
            });
        }
        flow
    }

    fn run_probe(&mut self, p: u32) -> Flow {
        let flow = self.rt.run_probe(p);
        if let Some(j) = self.json.as_mut() {
            self.rt.flush();
            let probe = self.probe_kind.get(&p).copied().unwrap_or("");
            j.emit(&Origin {
                probe,
                pid: 0,
                tid: 0,
                time_ns: now_ns(),
            });
        }
        flow
    }

    fn flush(&mut self) {
        self.rt.flush();
    }

    fn finish(&mut self) {
        self.rt.finish();
        if let Some(j) = self.json.as_mut() {
            j.finish(&Origin {
                probe: "end",
                pid: 0,
                tid: 0,
                time_ns: now_ns(),
            });
        }
    }

    fn note_skipped(&mut self, n: u64) {
        self.rt.note_skipped(n);
    }

    fn exit_code(&self) -> i32 {
        self.rt.exit_code()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Starts `cmd` with snaptap's QEMU TCG plugin executing the capture plans, when this
/// QEMU supports plugins (version 10 or later, TCG) and the plugin accepts every plan;
/// otherwise returns `None` (and says why with `-v`) so the caller uses the gdbstub.
fn try_plugin(
    cmd: &str,
    kernel: &std::path::Path,
    plans: &capture_plan::PlanSet,
    verbose: bool,
) -> Option<(vm::Machine, backend_plugin::PluginBackend)> {
    let why = |m: String| {
        if verbose {
            eprintln!("snaptap: using the gdbstub, not the QEMU plugin: {m}");
        }
    };
    if std::env::var("SNAPTAP_VM_BACKEND").is_ok_and(|v| v == "gdb") {
        why("SNAPTAP_VM_BACKEND=gdb".into());
        return None;
    }
    if let Err(e) = backend_plugin::check_qemu(cmd) {
        why(e);
        return None;
    }
    if backend_plugin::find_plugin_library().is_none() {
        why("the plugin library (libqemu_plugin.so) was not found next to snaptap; build it with cargo build -p qemu-plugin".into());
        return None;
    }
    let mut be = match backend_plugin::PluginBackend::new(vm::plugin_options(kernel), plans) {
        Ok(b) => b,
        Err(e) => {
            why(e.to_string());
            return None;
        }
    };
    // Sites the plugin cannot serve would be lost: then the gdbstub serves them all.
    if !be.failed_sites().is_empty() {
        why(be.failed_sites().join("; "));
        return None;
    }
    let machine = match vm::start(cmd, &be.qemu_args(), false) {
        Ok(m) => m,
        Err(e) => {
            why(format!("{e:#}"));
            return None;
        }
    };
    be.set_qemu_pid(machine.pid());
    if let Err(e) = be.wait_loaded(&StopToken::new()) {
        why(e.to_string());
        machine.stop();
        return None;
    }
    if verbose {
        eprintln!("snaptap: capture plans run inside QEMU (TCG plugin), no VM stop per hit");
    }
    Some((machine, be))
}
