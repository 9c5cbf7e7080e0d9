//! Times planning a script given on the command line (a development aid for start-up work).
fn main() {
    let text = std::env::args().nth(1).unwrap_or_default();
    let t0 = std::time::Instant::now();
    let mut sources = script_syntax::SourceMap::default();
    let f = sources.add("<input>", &text);
    let (script, diags) = script_syntax::parse(&sources, f, &[]);
    if !diags.is_empty() {
        eprintln!("{diags:?}");
        std::process::exit(1);
    }
    match planner::plan(&script, &sources, &planner::PlanOptions::default()) {
        Ok(p) => {
            for l in &p.listing {
                println!("{l}");
            }
        }
        Err(d) => eprintln!("{d:?}"),
    }
    eprintln!("planned in {:?}", t0.elapsed());
}
