//! plancheck SCRIPT KERNEL_ELF [dump]: parse, expand aliases and plan SCRIPT against
//! KERNEL_ELF with snaptap's own crates; prints the resolved probe points (and with
//! `dump`, the capture plans, like `snaptap -p3`). Exit 1 on any error.
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: plancheck SCRIPT KERNEL_ELF [dump]");
        return ExitCode::from(2);
    }
    let text = match std::fs::read_to_string(&args[1]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("plancheck: {}: {e}", args[1]);
            return ExitCode::from(2);
        }
    };
    let mut sources = script_syntax::SourceMap::default();
    let file = sources.add(args[1].clone(), text);
    let mut failed = false;
    let mut report = |ds: &[script_syntax::Diagnostic], sources: &script_syntax::SourceMap| {
        for d in ds {
            eprint!("{}", script_syntax::render(d, sources));
            failed |= d.severity == script_syntax::Severity::Error;
        }
    };
    let (script, diags) = script_syntax::parse(&sources, file, &[]);
    report(&diags, &sources);
    let (script, diags) = script_syntax::expand_script(&script);
    report(&diags, &sources);
    let opts = planner::PlanOptions::default();
    match planner::plan_with_kernel(&script, &sources, &opts, Some(Path::new(&args[2]))) {
        Ok(p) => {
            report(&p.warnings, &sources);
            for l in &p.listing {
                println!("{l}");
            }
            if args.get(3).map(String::as_str) == Some("dump") {
                print!("{}", planner::dump(&p));
            }
        }
        Err(ds) => report(&ds, &sources),
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
