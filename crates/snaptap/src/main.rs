//! The snaptap binary: parses the command line and runs one tracing session.
#![forbid(unsafe_code)]

mod cli;
mod driver;
mod output;
mod progress;
mod stacks;
mod tapsets;
mod vm;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let graph = cli.flamegraph.clone().zip(cli.output.clone());
    let mut code = match driver::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            1
        }
    };
    if let (0, Some((svg, folded))) = (code, graph) {
        if let Err(e) = stacks::flamegraph(&folded, &svg) {
            eprintln!("ERROR: {e:#}");
            code = 1;
        }
    }
    std::process::exit(code);
}
