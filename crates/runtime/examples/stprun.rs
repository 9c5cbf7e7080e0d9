//! Runs a script's begin, end and error probes without a target, for trying the language.
//!
//! Run with `cargo run -p runtime --example stprun -- 'probe begin { println(1) }' [ARGS]`;
//! `-DNAME=VALUE` arguments before the script set runtime limits.

use runtime::{Flow, Runtime, RuntimeOptions};
use script_syntax::ast::{Item, ProbePoint};
use script_syntax::SourceMap;

fn kind(pt: &ProbePoint) -> &str {
    pt.components.first().map_or("", |c| c.name.as_str())
}

fn main() {
    let mut opts = RuntimeOptions::default();
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next_if(|a| a.starts_with("-D")) {
        let (n, v) = a[2..].split_once('=').unwrap_or((&a[2..], ""));
        opts.defines.push((n.to_string(), v.to_string()));
    }
    let Some(src) = args.next() else {
        eprintln!("usage: stprun [-DNAME=VALUE] SCRIPT [ARGS]");
        std::process::exit(2);
    };
    opts.args = args.collect();
    let mut sm = SourceMap::default();
    let f = sm.add("<input>", &src);
    let (script, diags) = script_syntax::parse(&sm, f, &opts.args);
    if !diags.is_empty() {
        eprint!("{}", script_syntax::render_all(&diags, &sm));
        std::process::exit(1);
    }
    let mut rt = match Runtime::new(&script, &sm, Vec::new(), opts, Box::new(std::io::stdout())) {
        Ok(rt) => rt,
        Err(d) => {
            eprint!("{}", script_syntax::render_all(&d, &sm));
            std::process::exit(1);
        }
    };
    eprint!("{}", script_syntax::render_all(rt.warnings(), &sm));
    let kinds: Vec<String> = script
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Probe(p) => Some(p.points.first().map_or("", kind).to_string()),
            _ => None,
        })
        .collect();
    for (i, k) in kinds.iter().enumerate() {
        if k == "begin" && rt.run_probe(i as u32) == Flow::Exit {
            break;
        }
    }
    for (i, k) in kinds.iter().enumerate() {
        if k == "end" || k == "error" {
            rt.run_probe(i as u32);
        }
    }
    rt.finish();
    std::process::exit(rt.exit_code());
}
