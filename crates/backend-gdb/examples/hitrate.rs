//! Measures probe hits per second through a gdb remote stub: one entry probe on a named
//! function of an ELF (reading its first argument), for a fixed time.
//!
//! Usage: `hitrate HOST:PORT ELF FUNCTION SECONDS [--defer]`

use std::path::PathBuf;
use std::time::Duration;

use backend::{event_queue, StopToken};
use backend_gdb::{GdbBackend, GdbOptions};
use capture_plan::{
    CapturePlan, ContextNeeds, DwarfReg, FieldPlan, FileAddr, Op, PlanSet, ProbeSite, SiteId,
    SiteKind,
};
use object::{Object, ObjectSymbol};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: hitrate HOST:PORT ELF FUNCTION SECONDS [--defer]");
        std::process::exit(2);
    }
    let module = PathBuf::from(&args[2]);
    let data = std::fs::read(&module).expect("read ELF");
    let file = object::File::parse(&*data).expect("parse ELF");
    let Some(addr) = file
        .symbols()
        .find(|s| s.name() == Ok(args[3].as_str()))
        .map(|s| s.address())
    else {
        eprintln!("no symbol {}", args[3]);
        std::process::exit(1);
    };
    let secs: f64 = args[4].parse().expect("seconds");
    let mut b = match GdbBackend::connect(GdbOptions {
        addr: args[1].clone(),
        connect_timeout: Duration::from_secs(5),
        module: module.clone(),
    }) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    b.defer_unreadable_sites(args.iter().any(|a| a == "--defer"));
    let plans = PlanSet {
        sites: vec![ProbeSite {
            id: SiteId(0),
            module,
            addr: FileAddr(addr),
            kind: SiteKind::Entry,
            plan: CapturePlan {
                fields: vec![FieldPlan {
                    ops: vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)],
                    label: "arg1".into(),
                }],
            },
            needs: ContextNeeds::default(),
        }],
    };
    let (tx, rx) = event_queue(1 << 20);
    let stop = StopToken::new();
    let s2 = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(secs));
        s2.request();
    });
    let summary = b.run(&plans, &tx, &stop).expect("run");
    let st = b.stats();
    let mut n = 0u64;
    while rx.try_recv().is_some() {
        n += 1;
    }
    println!(
        "{}: {} hits ({} events) in {:.2}s = {:.0} hits/s; {} packets ({:.1}/hit); failed: {:?}",
        args[3],
        st.hits,
        n,
        st.elapsed.as_secs_f64(),
        st.hits_per_sec(),
        st.packets,
        st.packets as f64 / st.hits.max(1) as f64,
        summary.failed_sites
    );
}
