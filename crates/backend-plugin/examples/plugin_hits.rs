//! Measures the plugin backend on a QEMU command: probes kernel functions with a
//! three-register capture, runs for a while and prints hits, delivered, dropped and
//! hits per second. Used by bench/plugin_hits.sh.
//!
//! Usage: plugin_hits KERNEL_ELF SECONDS 'QEMU CMD' FUNC[,FUNC...] [--idle SECS] [--ready FILE]
//! With `--idle`, the plugin stays loaded but disarmed for that long first; `--ready`
//! names a file created once the probes are armed (and removed when they are disarmed).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend::{event_queue, Event, StopToken};
use backend_plugin::{PluginBackend, PluginOptions};
use capture_plan::{
    CapturePlan, DwarfReg, FieldPlan, FileAddr, Op, PlanSet, ProbeSite, SiteId, SiteKind,
};

fn symbol(elf: &std::path::Path, name: &str) -> Option<u64> {
    let out = Command::new("nm").arg(elf).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.len() == 3 && w[2] == name).then(|| u64::from_str_radix(w[0], 16).ok())?
    })
}

fn field(reg: u16, label: &str) -> FieldPlan {
    FieldPlan {
        ops: vec![Op::Reg(DwarfReg(reg)), Op::EmitValue(4)],
        label: label.into(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        return Err(
            "usage: plugin_hits KERNEL SECONDS 'QEMU CMD' FUNC[,FUNC] [--idle S] [--ready F]"
                .into(),
        );
    }
    let kernel = std::fs::canonicalize(&a[1])?;
    let secs: f64 = a[2].parse()?;
    let mut idle = 0.0f64;
    let mut ready: Option<PathBuf> = None;
    let mut i = 5;
    while i + 1 < a.len() {
        match a[i].as_str() {
            "--idle" => idle = a[i + 1].parse()?,
            "--ready" => ready = Some(PathBuf::from(&a[i + 1])),
            _ => {}
        }
        i += 2;
    }
    let mut plans = PlanSet::default();
    for (n, f) in a[4].split(',').enumerate() {
        let addr = symbol(&kernel, f).ok_or(format!("no symbol {f}"))?;
        plans.sites.push(ProbeSite {
            id: SiteId(n as u32),
            module: kernel.clone(),
            addr: FileAddr(addr),
            kind: SiteKind::Entry,
            plan: CapturePlan {
                fields: vec![
                    field(4, "$option"),
                    field(1, "$send_size"),
                    field(2, "$rcv_size"),
                ],
            },
            needs: Default::default(),
        });
    }
    let mut pb = PluginBackend::new(PluginOptions::new(&kernel), &plans)?;
    let cmd = format!(
        "{} {}",
        a[3],
        pb.qemu_args()
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::null())
        .spawn()?;
    pb.wait_loaded(&StopToken::new())?;
    std::thread::sleep(Duration::from_secs_f64(idle));
    let (tx, rx) = event_queue(1 << 16);
    let stop = StopToken::new();
    let stop2 = stop.clone();
    let counter = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut per_site = std::collections::BTreeMap::<u32, u64>::new();
        while let Ok(ev) = rx.recv_timeout(Duration::from_millis(100)) {
            let idle = ev.is_none();
            if let Some(Event::Record(r)) = ev {
                n += 1;
                *per_site.entry(r.site.0).or_default() += 1;
            }
            if stop2.is_requested() && idle {
                break;
            }
        }
        (n, per_site, rx.dropped())
    });
    let t0 = Instant::now();
    let stop3 = stop.clone();
    let ready2 = ready.clone();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(r) = &ready2 {
            let _ = std::fs::write(r, "");
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop3.request();
    });
    let sum = pb.run(&plans, &tx, &stop)?;
    let el = t0.elapsed().as_secs_f64();
    if let Some(r) = &ready {
        let _ = std::fs::remove_file(r);
    }
    drop(tx);
    let _ = timer.join();
    let (n, per_site, qdrop) = counter.join().map_err(|_| "counter thread")?;
    let st = pb.stats();
    println!(
        "hits {} delivered {} dropped {} queue_dropped {} received {} seconds {:.3} hits_per_s {:.0} per_site {:?}",
        sum.hits, st.delivered, st.dropped, qdrop, n, el, sum.hits as f64 / el, per_site
    );
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
