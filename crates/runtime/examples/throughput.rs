//! Handler throughput benchmark: feeds synthetic records to a counting handler
//! (`c[tid()]++`) and a histogram handler (`h <<< $len`) and prints records/s.
//!
//! Run with `cargo run --release -p runtime --example throughput [N]`.

use std::collections::BTreeMap;
use std::time::Instant;

use capture_plan::{Decode, FieldStatus, Record, SiteBinding, SiteId};
use runtime::{Runtime, RuntimeOptions};
use script_syntax::ast::{ExprKind, Item};
use script_syntax::SourceMap;

fn bench(name: &str, src: &str, n: usize) {
    let mut sm = SourceMap::default();
    let f = sm.add("<bench>", src);
    let (script, diags) = script_syntax::parse(&sm, f, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    // Capture every `$len` from field 0 as an 8-byte unsigned integer.
    let mut captures = BTreeMap::new();
    for item in &script.items {
        if let Item::Probe(p) = item {
            let mut stack: Vec<&script_syntax::ast::Stmt> = p.body.stmts.iter().collect();
            while let Some(s) = stack.pop() {
                if let script_syntax::ast::StmtKind::Expr(e) = &s.kind {
                    if let ExprKind::Assign { value, .. } = &e.kind {
                        if matches!(value.kind, ExprKind::Target(_)) {
                            captures.insert(
                                value.id.0,
                                Decode::Int {
                                    field: 0,
                                    size: 8,
                                    signed: false,
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    let binding = SiteBinding {
        site: SiteId(0),
        probe: 0,
        pp: "process(\"/bin/true\").function(\"main\")".into(),
        function: "main".into(),
        captures,
        ..SiteBinding::default()
    };
    let mut rt = Runtime::new(
        &script,
        &sm,
        vec![binding],
        RuntimeOptions::default(),
        Box::new(std::io::sink()),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let recs: Vec<Record> = (0..1024u64)
        .map(|i| {
            let mut r = Record::new(SiteId(0), 1000, 1000 + (i % 16) as u32, i, 0x401000);
            r.fields.push(FieldStatus::Ok { offset: 0, len: 8 });
            r.data.extend_from_slice(&(i * 37 % 5000).to_le_bytes());
            r
        })
        .collect();
    let t = Instant::now();
    for i in 0..n {
        rt.handle(&recs[i % recs.len()]);
    }
    let dt = t.elapsed().as_secs_f64();
    rt.finish();
    println!(
        "{name:<12} {n} records in {dt:.3} s: {:.2} M records/s",
        n as f64 / dt / 1e6
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    bench(
        "count",
        "global c probe process(\"/bin/true\").function(\"main\") { c[tid()]++ } probe end { foreach (t in c) x += c[t] }",
        n,
    );
    bench(
        "histogram",
        "global h probe process(\"/bin/true\").function(\"main\") { h <<< $len } probe end { print(@hist_log(h)) }",
        n,
    );
}
