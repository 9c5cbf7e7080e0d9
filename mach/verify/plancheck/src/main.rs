//! plancheck SCRIPT KERNEL_ELF [dump | --run HOST:PORT]: parse, expand aliases and plan
//! SCRIPT against KERNEL_ELF with snaptap's own crates; prints the resolved probe
//! points (with `dump`, the capture plans, like `snaptap -p3`). With `--run`, connects
//! snaptap's gdb backend to the gdbstub at HOST:PORT and runs the script's handlers on
//! the records until `exit()` or PLANCHECK_SECONDS (default 60) pass, writing the script's output to stdout: a
//! minimal kernel session for testing the tapset before the driver has one.
//! Exit 1 on any error.
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use backend::{Event, StopToken};
use runtime::{Flow, Runtime, RuntimeOptions};
use script_syntax::{Diagnostic, Severity, SourceMap};

fn report(ds: &[Diagnostic], sources: &SourceMap) -> bool {
    let mut failed = false;
    for d in ds {
        eprint!("{}", script_syntax::render(d, sources));
        failed |= d.severity == Severity::Error;
    }
    failed
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: plancheck SCRIPT KERNEL_ELF [dump | --run HOST:PORT]");
        return ExitCode::from(2);
    }
    let text = match std::fs::read_to_string(&args[1]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("plancheck: {}: {e}", args[1]);
            return ExitCode::from(2);
        }
    };
    let kernel = Path::new(&args[2]);
    let mut sources = SourceMap::default();
    let file = sources.add(args[1].clone(), text);
    let (script, diags) = script_syntax::parse(&sources, file, &[]);
    let mut failed = report(&diags, &sources);
    let (script, diags) = script_syntax::expand_script(&script);
    failed |= report(&diags, &sources);
    let opts = planner::PlanOptions::default();
    let planned = match planner::plan_with_kernel(&script, &sources, &opts, Some(kernel)) {
        Ok(p) => p,
        Err(ds) => {
            report(&ds, &sources);
            return ExitCode::from(1);
        }
    };
    failed |= report(&planned.warnings, &sources);
    if failed {
        return ExitCode::from(1);
    }
    match args.get(3).map(String::as_str) {
        Some("--run") => match args.get(4) {
            Some(addr) => run(&script, &sources, &planned, kernel, addr),
            None => {
                eprintln!("plancheck: --run needs HOST:PORT");
                ExitCode::from(2)
            }
        },
        other => {
            for l in &planned.listing {
                println!("{l}");
            }
            if other == Some("dump") {
                print!("{}", planner::dump(&planned));
            }
            ExitCode::SUCCESS
        }
    }
}

/// The kernel session: the backend on its own thread, handlers on this one.
fn run(
    script: &script_syntax::ast::Script,
    sources: &SourceMap,
    planned: &planner::Planned,
    kernel: &Path,
    addr: &str,
) -> ExitCode {
    let gopts = backend_gdb::GdbOptions {
        addr: addr.to_string(),
        connect_timeout: Duration::from_secs(10),
        module: kernel.to_path_buf(),
    };
    let mut be = match backend_gdb::GdbBackend::connect(gopts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("plancheck: {e}");
            return ExitCode::from(1);
        }
    };
    let rt_opts = RuntimeOptions {
        args: Vec::new(),
        target_pid: 0,
        defines: Vec::new(),
    };
    let out: Box<dyn std::io::Write> = Box::new(std::io::stdout());
    let mut rt = match Runtime::new(script, sources, planned.bindings.clone(), rt_opts, out) {
        Ok(rt) => rt,
        Err(ds) => {
            report(&ds, sources);
            return ExitCode::from(1);
        }
    };
    let mut exiting = false;
    for &p in &planned.begin {
        if rt.run_probe(p) == Flow::Exit {
            exiting = true;
        }
    }
    let stop = StopToken::new();
    let (etx, erx) = backend::event_queue(1 << 16);
    let plans = planned.plans.clone();
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let r = be.run(&plans, &etx, &stop2).map_err(|e| e.to_string());
        drop(etx);
        (r, be.stats())
    });
    // PLANCHECK_SECONDS bounds the session (default 60 s).
    let limit = std::env::var("PLANCHECK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(limit);
    while !exiting {
        if std::time::Instant::now() >= deadline {
            eprintln!("plancheck: {limit} s passed, stopping");
            break;
        }
        match erx.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(Event::Record(rec))) => {
                if rt.handle(&rec) == Flow::Exit {
                    exiting = true;
                }
                rt.flush();
            }
            Ok(Some(Event::Warning(w))) => eprintln!("WARNING: {w}"),
            Ok(Some(Event::TargetEnded { .. })) => break,
            #[allow(unreachable_patterns)]
            Ok(Some(_)) => {}
            Ok(None) => {}
            Err(()) => break,
        }
    }
    stop.request();
    let (result, stats) = match handle.join() {
        Ok(x) => x,
        Err(_) => {
            eprintln!("plancheck: the backend thread panicked");
            return ExitCode::from(1);
        }
    };
    for &p in planned.end.iter() {
        if rt.run_probe(p) == Flow::Exit {
            break;
        }
    }
    rt.finish();
    eprintln!("plancheck: backend stats: {stats:?}");
    match result {
        Ok(summary) => {
            for f in summary.failed_sites {
                eprintln!("WARNING: {f}");
            }
            if erx.dropped() > 0 {
                eprintln!("WARNING: {} records dropped", erx.dropped());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::from(1)
        }
    }
}
