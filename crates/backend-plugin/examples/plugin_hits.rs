//! Benchmark driver for bench/plugin_hits.sh: boots a QEMU command (with or without the
//! plugin), and measures the workload's own iteration rate (from its `bench count=C`
//! console lines) with the probes disarmed ("idle") and armed ("traced"), the probe hits
//! per second while traced (three 4-byte register fields per hit), and then runs a
//! shell command against the same VM (gdb dprintf) and times it.
//!
//! With the plugin, after the armed-but-idle phase, three traced phases alternate with
//! three phases without any probe (empty plan set); medians are printed, and the median
//! ratio of each traced phase to the no-probe phase before it.
//!
//! Usage: plugin_hits KERNEL 'QEMU CMD' FUNC SECS [--no-plugin] [--after 'SHELL CMD']
//! Prints one line of `key=value` pairs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend::{event_queue, Event, StopToken};
use backend_plugin::{PluginBackend, PluginOptions};
use capture_plan::{
    CapturePlan, DwarfReg, FieldPlan, FileAddr, Op, PlanSet, ProbeSite, SiteId, SiteKind,
};

fn symbol(elf: &Path, name: &str) -> Option<u64> {
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

/// The QEMU child, killed on every exit path.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The latest `bench count=C` on the console.
fn last_count(serial: &Path) -> u64 {
    let s = std::fs::read(serial).unwrap_or_default();
    let s = String::from_utf8_lossy(&s);
    s.rsplit("bench count=")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .filter(|_| s.contains("bench count="))
        .unwrap_or(0)
}

/// Waits for the next console count change, returning (count, when it was seen).
fn next_count(serial: &Path) -> (u64, Instant) {
    let c0 = last_count(serial);
    let t0 = Instant::now();
    loop {
        let c = last_count(serial);
        if c != c0 || t0.elapsed() > Duration::from_secs(30) {
            return (c, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Traced and no-probe phases per run.
const REPS: usize = 3;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The workload's iterations per second over about `secs`.
fn rate(serial: &Path, secs: f64) -> f64 {
    let (c0, t0) = next_count(serial);
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (c1, t1) = next_count(serial);
    (c1.saturating_sub(c0)) as f64 / (t1 - t0).as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        return Err(
            "usage: plugin_hits KERNEL 'QEMU CMD' FUNC SECS [--no-plugin] [--after CMD]".into(),
        );
    }
    let kernel = std::fs::canonicalize(&a[1])?;
    let secs: f64 = a[4].parse()?;
    let no_plugin = a.iter().any(|x| x == "--no-plugin");
    let after = a
        .iter()
        .position(|x| x == "--after")
        .and_then(|i| a.get(i + 1).cloned());
    let addr = symbol(&kernel, &a[3]).ok_or(format!("no symbol {}", a[3]))?;
    let plans = PlanSet {
        sites: vec![ProbeSite {
            id: SiteId(0),
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
        }],
    };
    let mut opts = PluginOptions::new(&kernel);
    opts.armed_at_load = false;
    opts.ring_bytes = 64 << 20;
    let mut pb = PluginBackend::new(opts, &plans)?;
    let serial = PathBuf::from(format!(
        "/tmp/plugin-hits-serial-{}.txt",
        std::process::id()
    ));
    let extra = if no_plugin {
        String::new()
    } else {
        pb.qemu_args()
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} {extra}", a[2]))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&serial)?)
        .spawn()?;
    let _child = KillOnDrop(child);
    if !no_plugin {
        pb.wait_loaded(&StopToken::new())?;
    }
    // Warm up: the loop runs and the console counts.
    next_count(&serial);
    let idle = rate(&serial, secs);
    let mut out = format!("func={} idle_iter_per_s={idle:.0}", a[3]);
    if !no_plugin {
        let (tx, rx) = event_queue(1 << 16);
        let stop = StopToken::new();
        let stop2 = stop.clone();
        // Like snaptap's driver: take what is queued in one batch, then let records
        // gather for a millisecond instead of waking up for every one.
        let counter = std::thread::spawn(move || {
            let mut n = 0u64;
            while let Ok(ev) = rx.recv_timeout(Duration::from_millis(100)) {
                let mut next = ev;
                while let Some(ev) = next.take() {
                    if let Event::Record(_) = ev {
                        n += 1;
                    }
                    next = rx.try_recv();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (n, rx.dropped())
        });
        // Traced phases alternate with phases in which the plugin has no probes at all
        // (an empty plan set, switched in and out while the VM runs): the ratio of each
        // traced phase to the phase just before it is immune to the host's load drifting
        // between a separate untraced boot and this one.
        let sw = pb.switcher();
        let empty = PlanSet::default();
        let pb2 = &mut pb;
        let plans2 = plans.clone();
        let (noprobe, traced, traced_s) = std::thread::scope(|s| {
            let h = s.spawn(move || pb2.run(&plans2, &tx, &stop2));
            let (mut noprobe, mut traced, mut traced_s) = (Vec::new(), Vec::new(), 0.0);
            for _ in 0..REPS {
                sw.switch(&empty, &[]).map_err(|e| e.to_string())?;
                noprobe.push(rate(&serial, secs));
                sw.switch(&plans, &[]).map_err(|e| e.to_string())?;
                let t0 = Instant::now();
                traced.push(rate(&serial, secs));
                traced_s += t0.elapsed().as_secs_f64();
            }
            sw.switch(&empty, &[]).map_err(|e| e.to_string())?;
            stop.request();
            h.join()
                .map_err(|_| "run thread".to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((noprobe, traced, traced_s))
        })?;
        let (n, qdrop) = counter.join().map_err(|_| "counter thread")?;
        let st = pb.stats();
        let ratios: Vec<f64> = traced.iter().zip(&noprobe).map(|(t, u)| t / u).collect();
        out += &format!(
            " noprobe_iter_per_s={:.0} traced_iter_per_s={:.0} traced_vs_noprobe={:.3} hits={} delivered={} ring_dropped={} queue_dropped={qdrop} received={n} traced_s={traced_s:.3} hits_per_s={:.0}",
            median(&noprobe),
            median(&traced),
            median(&ratios),
            st.hits,
            st.delivered,
            st.dropped,
            st.hits as f64 / traced_s
        );
    }
    if let Some(cmd) = after {
        let t0 = Instant::now();
        let st = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        out += &format!(
            " after_s={:.3} after_ok={}",
            t0.elapsed().as_secs_f64(),
            st.success()
        );
    }
    println!("{out}");
    let _ = std::fs::remove_file(&serial);
    Ok(())
}
