//! The plugin backend on the real GNU Mach machine under QEMU 10 (mach/): values against
//! the workload's truth lines, exact drop accounting with a tiny ring, and a plan the
//! plugin refuses at load while QEMU runs on. Needs QEMU 10 (scripts/install-qemu10.sh)
//! and the packages of mach/README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use backend::{event_queue, Event, StopToken};
use backend_plugin::{wire, Error, PluginBackend, PluginOptions};
use capture_plan::{
    CapturePlan, DwarfReg, FieldPlan, FileAddr, Op, PlanSet, ProbeSite, Record, SiteId, SiteKind,
};

/// A plugin session whose probes can be moved: `first` installed at the start of a VM
/// booted with workload `args`, run on its own thread, records kept in order with
/// their sequence numbers.
struct Switchable {
    sw: backend_plugin::PlanSwitcher,
    vm: Vm,
    rx: backend::EventReceiver,
    stop: StopToken,
    h: std::thread::JoinHandle<(Result<backend::RunSummary, Error>, PluginBackend)>,
}

fn start_switchable(opts: PluginOptions, first: PlanSet, args: &str, queue: usize) -> Switchable {
    let mut pb = PluginBackend::new(opts, &first).unwrap();
    pb.keep_sequence(true);
    let sw = pb.switcher();
    let vm = Vm::start(args, &pb.qemu_args());
    let (tx, rx) = event_queue(queue);
    let stop = StopToken::new();
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        let r = pb.run(&first, &tx, &stop2);
        (r, pb)
    });
    Switchable {
        sw,
        vm,
        rx,
        stop,
        h,
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the machine (once per test binary) and the plugin library.
fn machine() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Err(e) = backend_plugin::check_qemu("qemu-system-x86_64") {
            panic!("{e}");
        }
        // One machine per target directory (build.sh is idempotent), not one per run.
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-mach");
        let st = Command::new(repo().join("mach/build.sh"))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("mach/build.sh");
        assert!(st.success(), "mach/build.sh failed");
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "qemu-plugin"])
            .current_dir(repo())
            .status()
            .expect("cargo build -p qemu-plugin");
        assert!(st.success(), "building the plugin failed");
        assert!(
            backend_plugin::find_plugin_library().is_some(),
            "libqemu_plugin.so not found after building it"
        );
        out
    })
}

fn kernel() -> PathBuf {
    std::fs::canonicalize(machine().join("gnumach.dbg")).unwrap()
}

fn symbol(name: &str) -> u64 {
    let data = std::fs::read(kernel()).unwrap();
    let file = object::File::parse(&*data).unwrap();
    use object::{Object, ObjectSymbol};
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("no symbol {name}"))
        .address()
}

fn field(ops: Vec<Op>, label: &str) -> FieldPlan {
    FieldPlan {
        ops,
        label: label.into(),
    }
}

/// `mach_msg_trap(msg, option, send_size, rcv_size, ...)` at its first instruction: the
/// arguments are in rdi, rsi, rdx, rcx (DWARF: msg in $rdi, option in $rsi, send_size in
/// $rdx there); the message id is the sixth 32-bit word of the user header.
fn msg_trap_site(id: u32) -> ProbeSite {
    ProbeSite {
        id: SiteId(id),
        module: kernel(),
        addr: FileAddr(symbol("mach_msg_trap")),
        kind: SiteKind::Entry,
        plan: CapturePlan {
            fields: vec![
                field(vec![Op::Reg(DwarfReg(4)), Op::EmitValue(4)], "$option"),
                field(vec![Op::Reg(DwarfReg(1)), Op::EmitValue(4)], "$send_size"),
                field(
                    vec![
                        Op::Reg(DwarfReg(5)),
                        Op::Const(20),
                        Op::Add,
                        Op::Deref(4),
                        Op::EmitValue(4),
                    ],
                    "$msg->msgh_id",
                ),
            ],
        },
        needs: Default::default(),
    }
}

/// `mach_print(const char *s)`: the console line the workload prints.
fn print_site(id: u32) -> ProbeSite {
    ProbeSite {
        id: SiteId(id),
        module: kernel(),
        addr: FileAddr(symbol("mach_print")),
        kind: SiteKind::Entry,
        plan: CapturePlan {
            fields: vec![field(
                vec![Op::Reg(DwarfReg(5)), Op::EmitString(64)],
                "user_string($s)",
            )],
        },
        needs: Default::default(),
    }
}

struct Vm {
    child: Child,
    serial: PathBuf,
}

impl Vm {
    fn start(args: &str, plugin_args: &[String]) -> Vm {
        let out = Command::new(repo().join("mach/qemu-cmd.sh"))
            .arg(machine())
            .args(["--args", args])
            .output()
            .unwrap();
        let cmd = String::from_utf8(out.stdout).unwrap();
        let quoted: Vec<String> = plugin_args.iter().map(|a| format!("'{a}'")).collect();
        let serial = machine().join(format!(
            "serial-{}.txt",
            std::process::id() as u64 * 1000 + rand_tag()
        ));
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {} {}", cmd.trim(), quoted.join(" ")))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&serial).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Vm { child, serial }
    }

    fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial)
            .unwrap_or_default()
            .replace('\r', "")
    }

    /// Waits until the console shows `pat` (panics after 60 s).
    fn wait_for(&self, pat: &str) {
        let t0 = Instant::now();
        while !self.serial().contains(pat) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the console never showed {pat:?}:\n{}",
                self.serial()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.serial);
    }
}

fn rand_tag() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn u32_field(r: &Record, i: usize) -> u32 {
    let b = r
        .field(i)
        .unwrap_or_else(|e| panic!("field {i} of {r:?}: {e:?}"));
    u32::from_le_bytes(b.try_into().unwrap())
}

/// Runs the backend in a thread until `until` says stop; returns the records, the
/// summary, the backend (for its stats) and the console text.
fn trace(
    mut pb: PluginBackend,
    plans: PlanSet,
    vm: &Vm,
    until: impl Fn(&str) -> bool,
) -> (Vec<Record>, u64, PluginBackend) {
    let (tx, rx) = event_queue(1 << 20);
    let stop = StopToken::new();
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        let r = pb.run(&plans, &tx, &stop2);
        (r, pb)
    });
    let t0 = Instant::now();
    while !until(&vm.serial()) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timeout:\n{}",
            vm.serial()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.request();
    let (r, pb) = h.join().unwrap();
    let sum = r.unwrap();
    let mut recs = Vec::new();
    while let Some(ev) = rx.try_recv() {
        if let Event::Record(r) = ev {
            recs.push(r);
        }
    }
    assert_eq!(rx.dropped(), 0, "the event queue dropped records");
    (recs, sum.hits, pb)
}

#[test]
fn mach_msg_trap_values_match_the_workloads_truth_lines() {
    let plans = PlanSet {
        sites: vec![msg_trap_site(0)],
    };
    let pb = PluginBackend::new(PluginOptions::new(kernel()), &plans).unwrap();
    let vm = Vm::start("rounds=3 idle=1", &pb.qemu_args());
    let (recs, hits, pb) = trace(pb, plans, &vm, |s| s.contains("truth done"));
    // The idle receive comes right after the last line; give it time to happen.
    let st = pb.stats();
    let serial = vm.serial();
    let lines: Vec<&str> = serial.lines().filter(|l| l.starts_with("truth ")).collect();
    assert!(lines.iter().any(|l| l.starts_with("truth done")));
    assert_eq!(st.dropped, 0);
    assert_eq!(hits, st.delivered);
    assert_eq!(hits, recs.len() as u64);
    for r in &recs {
        assert_eq!((r.pid, r.tid, r.cpu), (0, 1, 0));
        assert_eq!(r.ip, symbol("mach_msg_trap"));
        assert!(r.time_ns > 1_700_000_000_000_000_000);
    }
    let kv = |l: &str, k: &str| -> u32 {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_start_matches("0x").parse::<u32>().unwrap())
            .unwrap()
    };
    // Messages: each truth line's id appears in exactly one record, with its values.
    let mut expect: Vec<(u32, u32, u32)> = Vec::new(); // (id, option, send_size)
    let mut rpc: BTreeMap<u32, usize> = BTreeMap::new();
    let rpc_ids = [
        ("truth port_allocate ", 3204),
        ("truth vm_allocate ", 2021),
        ("truth stack_allocate ", 2021),
        ("truth vm_deallocate ", 2023),
        ("truth stack_deallocate ", 2023),
        ("truth thread_create ", 2061),
        ("truth thread_set_state ", 2018),
        ("truth thread_resume ", 2063),
        ("truth thread_port_destroy ", 3205),
        ("truth port_destroy ", 3205),
        ("truth port_deallocate ", 3206),
        // The child's thread_terminate(self), one per thread_msg line.
        ("truth thread_msg ", 2016),
        // The bench port, allocated before "truth done".
        ("truth done ", 3204),
    ];
    for l in &lines {
        if l.starts_with("truth msg ") {
            expect.push((kv(l, "id"), 3, kv(l, "send_size")));
        }
        if l.starts_with("truth thread_msg ") {
            expect.push((kv(l, "id"), 1, kv(l, "send_size")));
        }
        for (p, id) in rpc_ids {
            if l.starts_with(p) {
                *rpc.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(expect.len(), 3 * 7, "{serial}");
    // Receive-only calls (no MACH_SEND_MSG = 1 in the option) pass a buffer whose
    // header is not input (it holds an older message): the main thread's receive of each
    // thread_msg (MACH_RCV_MSG|MACH_RCV_TIMEOUT = 0x102), and at most the final idle
    // receive (MACH_RCV_MSG = 2).
    let (rcv_only, recs): (Vec<Record>, Vec<Record>) =
        recs.into_iter().partition(|r| u32_field(r, 0) & 1 == 0);
    for r in &rcv_only {
        assert!(matches!(u32_field(r, 0), 2 | 0x102), "{r:?}");
        assert_eq!(u32_field(r, 1), 0, "receive-only with a send size: {r:?}");
    }
    let thread_msgs = lines
        .iter()
        .filter(|l| l.starts_with("truth thread_msg "))
        .count();
    assert!(
        rcv_only.len() == thread_msgs || rcv_only.len() == thread_msgs + 1,
        "{} receive-only calls for {thread_msgs} thread messages",
        rcv_only.len()
    );
    for (id, option, size) in &expect {
        let found: Vec<&Record> = recs.iter().filter(|r| u32_field(r, 2) == *id).collect();
        assert_eq!(found.len(), 1, "message id {id}: {found:?}");
        assert_eq!(
            (u32_field(found[0], 0), u32_field(found[0], 1)),
            (*option, *size),
            "message id {id}"
        );
    }
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    for r in &recs {
        let id = u32_field(r, 2);
        if rpc.contains_key(&id) {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen, rpc, "RPC counts (records vs truth lines)");
    // Nothing else.
    let others: Vec<&Record> = recs
        .iter()
        .filter(|r| {
            let id = u32_field(r, 2);
            !rpc.contains_key(&id) && !expect.iter().any(|e| e.0 == id)
        })
        .collect();
    assert!(
        others.is_empty(),
        "unexplained mach_msg_trap calls: {others:?}"
    );
}

#[test]
fn a_tiny_ring_drops_records_and_counts_them_exactly() {
    let plans = PlanSet {
        sites: vec![msg_trap_site(0), print_site(1)],
    };
    let mut opts = PluginOptions::new(kernel());
    opts.ring_bytes = 4096;
    let mut pb = PluginBackend::new(opts, &plans).unwrap();
    pb.keep_sequence(true);
    const REPORT: u64 = 5000;
    let vm = Vm::start(&format!("rounds=0 report={REPORT}"), &pb.qemu_args());
    let (recs, hits, pb) = trace(pb, plans, &vm, |s| s.matches("bench count=").count() >= 40);
    let st = pb.stats();
    let seq = pb.sequence().to_vec();
    assert_eq!(seq.len(), recs.len());
    assert!(st.dropped > 1000, "the ring never filled: {st:?}");
    assert_eq!(hits, st.delivered + st.dropped, "{st:?}");
    assert_eq!(st.delivered, recs.len() as u64);
    // Drops are exactly the missing sequence numbers (single vCPU: one ring).
    assert!(seq.iter().all(|(ring, _, gen)| *ring == 0 && *gen == 1));
    let last = seq.last().unwrap().1;
    let missing = last - seq.len() as u64 + (hits - last);
    assert_eq!(missing, st.dropped);
    assert!(seq.windows(2).all(|w| w[0].1 < w[1].1));
    let seq: Vec<(u32, u64)> = seq.iter().map(|&(r, s, _)| (r, s)).collect();
    // Between two delivered "bench count=C" lines, the plugin counted exactly the
    // workload's iterations (one mach_msg_trap each) and the print itself.
    let mut prints = Vec::new();
    for (r, (_, s)) in recs.iter().zip(&seq) {
        if r.site == SiteId(1) {
            let text = String::from_utf8_lossy(r.field(0).unwrap()).into_owned();
            if let Some(c) = text.strip_prefix("bench count=") {
                prints.push((c.trim().parse::<u64>().unwrap(), *s));
            }
        } else {
            if u32_field(r, 2) == 999 {
                assert_eq!(u32_field(r, 0), 3, "{r:?}");
                assert_eq!(u32_field(r, 1), 32, "{r:?}");
            } else {
                assert!(*s < 10, "a non-bench message in the bench loop: {r:?}");
            }
        }
    }
    let mut windows_with_drops = 0;
    for w in prints.windows(2) {
        let ((c1, s1), (c2, s2)) = (w[0], w[1]);
        // Every iteration is one mach_msg_trap; every REPORT-th also one mach_print.
        assert_eq!(
            s2 - s1,
            c2 - c1 + (c2 - c1) / REPORT,
            "hits between bench count={c1} and {c2}"
        );
        let delivered_between = seq.iter().filter(|(_, s)| *s > s1 && *s <= s2).count() as u64;
        if delivered_between < s2 - s1 {
            windows_with_drops += 1;
        }
    }
    // The ring is so small that the prints themselves may be dropped: how many survive,
    // and whether drops fall between two of them, depends on how fast the host drains
    // it. The accounting above is exact either way, and so is every window checked.
    eprintln!(
        "{} bench prints delivered, {windows_with_drops} windows with drops",
        prints.len()
    );
}

#[test]
fn a_plan_the_plugin_cannot_execute_is_rejected_at_load_and_qemu_runs_on() {
    let plans = PlanSet {
        sites: vec![msg_trap_site(0)],
    };
    // An op code the plugin does not know, written past the host's own checks.
    let mut enc = wire::encode_plans(&plans);
    let first_op = 4 + 4 + 4 + 8 + 1 + 1 + 8 + 4 + 2 + "$option".len() + 4;
    assert_eq!(enc[first_op], wire::OP_REG);
    enc[first_op] = 0xee;
    let mut bad_deref = plans.clone();
    bad_deref.sites[0].plan.fields[2].ops[3] = Op::Deref(3);
    assert!(PluginBackend::new(PluginOptions::new(kernel()), &bad_deref).is_err());
    for (enc, want) in [
        (enc, "unknown op code 0xee"),
        (wire::encode_plans(&bad_deref), "bad deref size"),
    ] {
        let pb = PluginBackend::with_encoded_plans(PluginOptions::new(kernel()), enc).unwrap();
        let mut vm = Vm::start("rounds=1 idle=1", &pb.qemu_args());
        let err = pb.wait_loaded(&StopToken::new()).unwrap_err();
        match &err {
            Error::Rejected(m) => assert!(m.contains(want), "{m}"),
            e => panic!("expected a rejection, got {e}"),
        }
        assert!(err.to_string().contains("rejected"), "{err}");
        // QEMU did not crash: the guest runs its workload to the end.
        vm.wait_for("truth done");
        assert!(vm.child.try_wait().unwrap().is_none(), "QEMU exited");
        let (st, msg) = pb.plugin_status();
        assert_eq!(st, wire::STATUS_REJECTED, "{msg}");
    }
}

/// Runs the workload (one round) with mach_msg_trap probed, capturing cr3 too, and the
/// given cr3 filter; returns the cr3 of every record and the hit count.
fn cr3_run(filter: Option<u64>) -> (Vec<u64>, u64) {
    let mut site = msg_trap_site(0);
    site.plan.fields.push(field(
        vec![Op::Reg(DwarfReg(wire::CR3_REG)), Op::EmitValue(8)],
        "cr3",
    ));
    let plans = PlanSet { sites: vec![site] };
    let mut opts = PluginOptions::new(kernel());
    opts.cr3 = filter;
    let pb = PluginBackend::new(opts, &plans).unwrap();
    let vm = Vm::start("rounds=1 idle=1", &pb.qemu_args());
    let (recs, hits, pb) = trace(pb, plans, &vm, |s| s.contains("truth done"));
    assert!(
        pb.stats().instrumented > 0,
        "the probe was never translated"
    );
    let cr3 = recs
        .iter()
        .map(|r| u64::from_le_bytes(r.field(3).unwrap().try_into().unwrap()))
        .collect();
    (cr3, hits)
}

#[test]
fn the_cr3_filter_keeps_exactly_the_hits_in_that_address_space() {
    let (all, hits) = cr3_run(None);
    assert!(hits > 20);
    // The workload is one task: one address space makes every mach_msg_trap call.
    let c = all[0];
    assert!(c != 0 && c % 4096 == 0, "cr3 {c:#x}");
    assert!(all.iter().all(|&x| x == c), "{all:x?}");
    // The same boot again, filtered on that root: the same calls, all in it (give or take
    // the final idle receive, which may come after the stop).
    let (kept, khits) = cr3_run(Some(c));
    assert!(
        khits.abs_diff(hits) <= 1,
        "{khits} filtered hits, {hits} unfiltered"
    );
    assert!(kept.iter().all(|&x| x == c));
    // A root no address space has: nothing.
    let (none, nhits) = cr3_run(Some(0x1000));
    assert_eq!((none.len(), nhits), (0, 0));
}

/// Ends QEMU with `signal` once the workload is done and checks that `run` returns by
/// itself, with the records, a warning and `TargetEnded`.
fn run_ends_when_qemu_goes(signal: &str, watch_pid: bool) {
    let plans = PlanSet {
        sites: vec![msg_trap_site(0)],
    };
    let mut pb = PluginBackend::new(PluginOptions::new(kernel()), &plans).unwrap();
    let vm = Vm::start("rounds=1 idle=1", &pb.qemu_args());
    if watch_pid {
        pb.set_qemu_pid(vm.child.id());
    }
    let (tx, rx) = event_queue(1 << 16);
    let h = std::thread::spawn(move || {
        let r = pb.run(&plans, &tx, &StopToken::new());
        (r, pb)
    });
    vm.wait_for("truth done");
    let st = Command::new("kill")
        .args([signal, &vm.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    while !h.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "run did not return after kill {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (r, pb) = h.join().unwrap();
    let sum = r.unwrap();
    let evs: Vec<Event> = std::iter::from_fn(|| rx.try_recv()).collect();
    let records = evs.iter().filter(|e| matches!(e, Event::Record(_))).count() as u64;
    assert!(records > 10 && records == sum.hits && pb.stats().dropped == 0);
    assert!(
        matches!(evs.last(), Some(Event::TargetEnded { pid: 0, .. })),
        "{:?}",
        evs.last()
    );
}

#[test]
fn run_returns_when_qemu_exits_through_the_plugins_exit_hook() {
    run_ends_when_qemu_goes("-TERM", false);
}

#[test]
fn run_returns_when_a_watched_qemu_is_killed() {
    run_ends_when_qemu_goes("-KILL", true);
}

#[test]
fn return_probe_on_copyinmsg_pairs_entry_and_return_values() {
    let reg = |r: u16, l: &str| field(vec![Op::Reg(DwarfReg(r)), Op::EmitValue(8)], l);
    let site = ProbeSite {
        id: SiteId(0),
        module: kernel(),
        addr: FileAddr(symbol("copyinmsg")),
        kind: SiteKind::Return {
            return_plan: CapturePlan {
                fields: vec![reg(0, "$return")],
            },
        },
        plan: CapturePlan {
            fields: vec![reg(1, "@entry($size)"), reg(5, "@entry($from)")],
        },
        needs: Default::default(),
    };
    let plans = PlanSet { sites: vec![site] };
    let pb = PluginBackend::new(PluginOptions::new(kernel()), &plans).unwrap();
    let vm = Vm::start("rounds=3 idle=1", &pb.qemu_args());
    let (recs, hits, pb) = trace(pb, plans, &vm, |s| s.contains("truth done"));
    let st = pb.stats();
    let f64 = |r: &Record, i: usize| u64::from_le_bytes(r.field(i).unwrap().try_into().unwrap());
    let serial = vm.serial();
    let lines: Vec<&str> = serial.lines().filter(|l| l.starts_with("truth ")).collect();
    // Every sending mach_msg_trap copies its message in once: the messages, the thread
    // messages, and the RPCs (each printed, plus the child's thread_terminate per thread
    // message and the bench port's allocation in "truth done").
    let sends = lines
        .iter()
        .filter(|l| {
            [
                "truth msg ",
                "truth thread_msg ",
                "truth port_allocate ",
                "truth vm_allocate ",
                "truth stack_allocate ",
                "truth vm_deallocate ",
                "truth stack_deallocate ",
                "truth thread_create ",
                "truth thread_set_state ",
                "truth thread_resume ",
                "truth thread_port_destroy ",
                "truth port_destroy ",
                "truth port_deallocate ",
                "truth done ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .count()
        + lines
            .iter()
            .filter(|l| l.starts_with("truth thread_msg "))
            .count();
    assert_eq!(sends, 60, "{serial}");
    assert_eq!((hits, st.delivered, st.dropped), (60, 60, 0), "{st:?}");
    assert_eq!(recs.len(), 60);
    let entry = symbol("copyinmsg");
    for r in &recs {
        assert_eq!(f64(r, 2), 0, "copyinmsg failed: {r:?}");
        assert!(r.ip != entry && r.ip > 0x4100_0000, "{r:?}");
    }
    // The workload's message buffer: its sizes are exactly the truth lines' send sizes.
    let buf = recs
        .iter()
        .find(|r| f64(r, 0) == 1024)
        .map(|r| f64(r, 1))
        .unwrap();
    let mut got: Vec<u64> = recs
        .iter()
        .filter(|r| f64(r, 1) == buf)
        .map(|r| f64(r, 0))
        .collect();
    let mut want: Vec<u64> = lines
        .iter()
        .filter(|l| l.starts_with("truth msg "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("send_size="))
        })
        .map(|v| v.parse().unwrap())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn return_probe_through_an_indirect_call_is_instrumented_by_retranslation() {
    // ipc_kobject_server calls the MIG stub through a pointer (`call *%rax`): its return
    // address cannot be found at translation, the first entry makes the plugin
    // re-translate.
    let site = ProbeSite {
        id: SiteId(0),
        module: kernel(),
        addr: FileAddr(symbol("_Xvm_allocate")),
        kind: SiteKind::Return {
            return_plan: CapturePlan {
                fields: vec![field(vec![Op::Reg(DwarfReg(7)), Op::EmitValue(8)], "rsp")],
            },
        },
        plan: CapturePlan {
            fields: vec![field(
                vec![Op::Reg(DwarfReg(7)), Op::EmitValue(8)],
                "@entry(rsp)",
            )],
        },
        needs: Default::default(),
    };
    let plans = PlanSet { sites: vec![site] };
    let pb = PluginBackend::new(PluginOptions::new(kernel()), &plans).unwrap();
    let vm = Vm::start("rounds=3 idle=1", &pb.qemu_args());
    let (recs, hits, pb) = trace(pb, plans, &vm, |s| s.contains("truth done"));
    let serial = vm.serial();
    let n = serial
        .lines()
        .filter(|l| l.starts_with("truth vm_allocate ") || l.starts_with("truth stack_allocate "))
        .count();
    assert_eq!(n, 6);
    assert_eq!((recs.len() as u64, hits, pb.stats().dropped), (6, 6, 0));
    let f64 = |r: &Record, i: usize| u64::from_le_bytes(r.field(i).unwrap().try_into().unwrap());
    for r in &recs {
        // The stub returned to its caller, with the entry's return address popped.
        assert_eq!(f64(r, 1), f64(r, 0) + 8, "{r:?}");
        assert!(r.ip > symbol("ipc_kobject_server") && r.ip < symbol("ipc_kobject_server") + 0x400);
    }
}

/// The text of a `user_string` field, without the trailing newline.
fn text_field(r: &Record, i: usize) -> String {
    String::from_utf8_lossy(r.field(i).unwrap())
        .trim_end_matches('\n')
        .to_string()
}

/// (id, send_size) of every `truth msg` line on the console.
fn truth_msgs(serial: &str) -> Vec<(u32, u32)> {
    serial
        .lines()
        .filter_map(|l| l.strip_prefix("truth msg "))
        .map(|rest| {
            let f = |k: &str| -> u32 {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| v.parse().ok())
                    .unwrap()
            };
            (f("id="), f("send_size="))
        })
        .collect()
}

#[test]
fn probes_move_while_the_guest_runs_and_a_refused_switch_keeps_the_old_set() {
    // Generation 1: mach_print only. The workload prints two lines, then sleeps 1.5 s
    // ("truth wait"): the probes move then, before its rounds start.
    let first = PlanSet {
        sites: vec![print_site(0)],
    };
    let Switchable {
        sw,
        vm,
        rx,
        stop,
        h,
    } = start_switchable(
        PluginOptions::new(kernel()),
        first,
        "rounds=2 idle=1 wait=1500",
        1 << 20,
    );
    vm.wait_for("truth wait ms=1500");
    assert_eq!(sw.active_generation(), 1);
    // A set the plugin cannot execute (an op code it does not know, past the host's
    // checks) is refused with its reason; the first set stays active.
    let second = PlanSet {
        sites: vec![msg_trap_site(1)],
    };
    let mut bad = wire::encode_plans(&second);
    let first_op = 4 + 4 + 4 + 8 + 1 + 1 + 8 + 4 + 2 + "$option".len() + 4;
    assert_eq!(bad[first_op], wire::OP_REG);
    bad[first_op] = 0xee;
    match sw.switch_encoded(&bad, &[1]) {
        Err(Error::Rejected(m)) => assert!(m.contains("unknown op code 0xee"), "{m}"),
        r => panic!("expected a rejection, got {r:?}"),
    }
    assert_eq!(sw.active_generation(), 1);
    // The real move: mach_msg_trap instead of mach_print.
    let t0 = Instant::now();
    let gen = sw.switch(&second, &[]).unwrap();
    eprintln!("switch took {:?}", t0.elapsed());
    assert_eq!((gen, sw.active_generation()), (3, 3));
    assert!(
        !vm.serial().contains("truth round=0"),
        "the switch came too late to test anything:\n{}",
        vm.serial()
    );
    vm.wait_for("truth done");
    std::thread::sleep(Duration::from_millis(100));
    stop.request();
    let (r, pb) = h.join().unwrap();
    let hits = r.unwrap().hits;
    let st = pb.stats();
    let recs: Vec<Record> = std::iter::from_fn(|| rx.try_recv())
        .filter_map(|e| match e {
            Event::Record(r) => Some(r),
            _ => None,
        })
        .collect();
    let seq = pb.sequence().to_vec();
    assert_eq!(seq.len(), recs.len());
    assert_eq!((st.dropped, st.stale), (0, 0), "{st:?}");
    assert_eq!(hits, recs.len() as u64);
    let serial = vm.serial();
    // Generation 1 saw exactly the prints before the switch: the empty first line, the
    // start line (cut at 64 bytes) and the wait line; none of the rounds' lines.
    let prints: Vec<String> = recs
        .iter()
        .zip(&seq)
        .filter(|(r, _)| r.site == SiteId(0))
        .map(|(r, (_, _, g))| {
            assert_eq!(*g, 1, "{r:?}");
            text_field(r, 0)
        })
        .collect();
    assert_eq!(prints.len(), 3, "{prints:?}");
    assert_eq!(prints[0], "");
    assert!(
        serial
            .lines()
            .any(|l| l.starts_with("truth start") && l.starts_with(&prints[1])),
        "{prints:?}"
    );
    assert_eq!(prints[2], "truth wait ms=1500");
    // Generation 3 saw every message of the rounds with the workload's values.
    let msgs: Vec<(u32, u32)> = recs
        .iter()
        .zip(&seq)
        .filter(|(r, _)| r.site == SiteId(1))
        .map(|(r, (_, _, g))| {
            assert_eq!(*g, 3, "{r:?}");
            (u32_field(r, 2), u32_field(r, 1))
        })
        .filter(|(id, _)| (1000..1100).contains(id))
        .collect();
    let want = truth_msgs(&serial);
    assert_eq!(want.len(), 12, "{serial}");
    assert_eq!(msgs, want);
    assert!(recs
        .iter()
        .all(|r| r.site == SiteId(0) || r.site == SiteId(1)));
}

/// A site on the workload's own `mach_msg_trap` stub (a user-space address, i386 cdecl:
/// `msg` at esp+4, `send_size` at esp+12).
fn user_msg_trap_site(id: u32) -> ProbeSite {
    let wl = std::fs::read(machine().join("workload")).unwrap();
    let file = object::File::parse(&*wl).unwrap();
    use object::{Object, ObjectSymbol};
    let addr = file
        .symbols()
        .find(|s| s.name() == Ok("mach_msg_trap"))
        .unwrap()
        .address();
    let stack = |off: u64| {
        vec![
            Op::Reg(DwarfReg::RSP),
            Op::Const(off),
            Op::Add,
            Op::Deref(4),
        ]
    };
    let mut id_ops = stack(4);
    id_ops.extend([Op::Const(20), Op::Add, Op::Deref(4), Op::EmitValue(4)]);
    let mut size_ops = stack(12);
    size_ops.push(Op::EmitValue(4));
    ProbeSite {
        id: SiteId(id),
        module: kernel(),
        addr: FileAddr(addr),
        kind: SiteKind::Entry,
        plan: CapturePlan {
            fields: vec![
                field(id_ops, "msg->msgh_id"),
                field(size_ops, "send_size"),
                field(
                    vec![Op::Reg(DwarfReg(wire::CR3_REG)), Op::EmitValue(8)],
                    "cr3",
                ),
            ],
        },
        needs: Default::default(),
    }
}

/// A kernel site capturing `cr3` only.
fn cr3_site(id: u32, func: &str) -> ProbeSite {
    ProbeSite {
        id: SiteId(id),
        module: kernel(),
        addr: FileAddr(symbol(func)),
        kind: SiteKind::Entry,
        plan: CapturePlan {
            fields: vec![field(
                vec![Op::Reg(DwarfReg(wire::CR3_REG)), Op::EmitValue(8)],
                "cr3",
            )],
        },
        needs: Default::default(),
    }
}

#[test]
fn per_site_cr3_filters_make_user_space_probes_and_keep_only_their_address_space() {
    // The workload's address space, from a first boot (the same on every boot).
    let (all, _) = cr3_run(None);
    let task = all[0];
    const FUNC: &str = "thread_invoke";
    let plans = PlanSet {
        sites: vec![
            user_msg_trap_site(0),
            user_msg_trap_site(1),
            cr3_site(2, FUNC),
            cr3_site(3, FUNC),
        ],
    };
    let mut opts = PluginOptions::new(kernel());
    opts.site_cr3 = vec![(SiteId(0), task), (SiteId(1), 0x1000), (SiteId(3), task)];
    let pb = PluginBackend::new(opts, &plans).unwrap();
    let vm = Vm::start("rounds=1 idle=1", &pb.qemu_args());
    let (recs, hits, pb) = trace(pb, plans, &vm, |s| s.contains("truth done"));
    assert_eq!(pb.stats().dropped, 0);
    assert_eq!(hits, recs.len() as u64);
    let of = |id: u32| -> Vec<&Record> { recs.iter().filter(|r| r.site == SiteId(id)).collect() };
    let cr3 = |r: &Record, i: usize| u64::from_le_bytes(r.field(i).unwrap().try_into().unwrap());
    // The user-space probe, in the workload's address space: its messages, its values.
    let user: Vec<(u32, u32)> = of(0)
        .iter()
        .inspect(|r| assert_eq!(cr3(r, 2), task))
        .map(|r| (u32_field(r, 0), u32_field(r, 1)))
        .filter(|(id, _)| (1000..1100).contains(id))
        .collect();
    let want = truth_msgs(&vm.serial());
    assert_eq!(want.len(), 6);
    assert_eq!(user, want);
    // The same probe filtered on an address space nobody has: nothing.
    assert!(of(1).is_empty(), "{:?}", of(1));
    // In the kernel: the filtered site saw exactly the unfiltered one's hits in the
    // workload's address space (one hit gives both records the same time).
    let everywhere = of(2);
    let spaces: std::collections::BTreeSet<u64> = everywhere.iter().map(|r| cr3(r, 0)).collect();
    assert!(
        spaces.len() >= 2 && spaces.contains(&task),
        "{FUNC} ran in address spaces {spaces:x?}"
    );
    let want_times: Vec<u64> = everywhere
        .iter()
        .filter(|r| cr3(r, 0) == task)
        .map(|r| r.time_ns)
        .collect();
    let filtered = of(3);
    assert!(filtered.iter().all(|r| cr3(r, 0) == task));
    let got_times: Vec<u64> = filtered.iter().map(|r| r.time_ns).collect();
    assert!(!got_times.is_empty());
    assert_eq!(got_times, want_times);
}

#[test]
fn a_switch_in_the_busy_bench_loop_loses_and_misattributes_no_hit() {
    // Generation 1: mach_msg_trap (site 0) and mach_print (site 2); generation 2: the
    // same functions as sites 1 and 3. The workload's loop prints `bench count=C`
    // every REPORT round trips; the ring's sequence numbers count every hit, so
    // between two prints exactly (C2 - C1) traps and (C2 - C1) / REPORT prints were
    // seen, whichever generation saw them.
    const REPORT: u64 = 20000;
    let first = PlanSet {
        sites: vec![msg_trap_site(0), print_site(2)],
    };
    let second = PlanSet {
        sites: vec![msg_trap_site(1), print_site(3)],
    };
    // A ring large enough for the whole run: an unoptimised test build of the consumer
    // may fall behind the bench loop, and drops are not what this test is about.
    let mut opts = PluginOptions::new(kernel());
    opts.ring_bytes = 64 << 20;
    let Switchable {
        sw,
        vm,
        rx,
        stop,
        h,
    } = start_switchable(opts, first, &format!("rounds=0 report={REPORT}"), 1 << 22);
    let t0 = Instant::now();
    while vm.serial().matches("bench count=").count() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "{}", vm.serial());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sw.switch(&second, &[]).unwrap(), 2);
    let before = vm.serial().matches("bench count=").count();
    while vm.serial().matches("bench count=").count() < before + 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "{}", vm.serial());
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.request();
    let (r, pb) = h.join().unwrap();
    let hits = r.unwrap().hits;
    let st = pb.stats();
    let recs: Vec<Record> = std::iter::from_fn(|| rx.try_recv())
        .filter_map(|e| match e {
            Event::Record(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rx.dropped(), 0);
    let seq = pb.sequence().to_vec();
    assert_eq!(
        (seq.len(), st.dropped, st.stale),
        (recs.len(), 0, 0),
        "{st:?}"
    );
    assert_eq!(hits, recs.len() as u64);
    assert!(seq.windows(2).all(|w| w[0].1 < w[1].1 && w[0].2 <= w[1].2));
    let mut prints = Vec::new();
    let mut per_gen = [0u64; 3];
    for (r, &(_, s, g)) in recs.iter().zip(&seq) {
        per_gen[g as usize] += 1;
        let want_sites: &[u32] = if g == 1 { &[0, 2] } else { &[1, 3] };
        assert!(want_sites.contains(&r.site.0), "gen {g}: {r:?}");
        if r.site.0 >= 2 {
            let text = text_field(r, 0);
            if let Some(c) = text.strip_prefix("bench count=") {
                prints.push((c.parse::<u64>().unwrap(), s, g));
            }
        } else if u32_field(r, 2) == 999 {
            assert_eq!((u32_field(r, 0), u32_field(r, 1)), (3, 32), "{r:?}");
        } else {
            assert!(s < 10, "a non-bench message in the bench loop: {r:?}");
        }
    }
    assert!(per_gen[1] > 1000 && per_gen[2] > 1000, "{per_gen:?}");
    let mut across = 0;
    for w in prints.windows(2) {
        let ((c1, s1, g1), (c2, s2, g2)) = (w[0], w[1]);
        assert_eq!(
            s2 - s1,
            c2 - c1 + (c2 - c1) / REPORT,
            "hits between bench count={c1} (gen {g1}) and {c2} (gen {g2})"
        );
        if g1 != g2 {
            across += 1;
        }
    }
    assert_eq!(across, 1, "{prints:?}");
}

#[test]
fn a_return_probe_moved_in_while_the_guest_runs_pairs_entry_and_return() {
    // Generation 1 has no return site; generation 2 brings copyinmsg.return, whose
    // return addresses the re-translation must find afresh.
    let first = PlanSet {
        sites: vec![print_site(0)],
    };
    let reg = |r: u16, l: &str| field(vec![Op::Reg(DwarfReg(r)), Op::EmitValue(8)], l);
    let second = PlanSet {
        sites: vec![ProbeSite {
            id: SiteId(1),
            module: kernel(),
            addr: FileAddr(symbol("copyinmsg")),
            kind: SiteKind::Return {
                return_plan: CapturePlan {
                    fields: vec![reg(0, "$return")],
                },
            },
            plan: CapturePlan {
                fields: vec![reg(1, "@entry($size)")],
            },
            needs: Default::default(),
        }],
    };
    let Switchable {
        sw,
        vm,
        rx,
        stop,
        h,
    } = start_switchable(
        PluginOptions::new(kernel()),
        first,
        "rounds=1 idle=1 wait=1500",
        1 << 20,
    );
    vm.wait_for("truth wait ms=1500");
    assert_eq!(sw.switch(&second, &[]).unwrap(), 2);
    vm.wait_for("truth done");
    std::thread::sleep(Duration::from_millis(100));
    stop.request();
    let (r, pb) = h.join().unwrap();
    let hits = r.unwrap().hits;
    let st = pb.stats();
    let recs: Vec<Record> = std::iter::from_fn(|| rx.try_recv())
        .filter_map(|e| match e {
            Event::Record(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!((hits, st.dropped), (recs.len() as u64, 0), "{st:?}");
    let f64 = |r: &Record, i: usize| u64::from_le_bytes(r.field(i).unwrap().try_into().unwrap());
    let returns: Vec<&Record> = recs.iter().filter(|r| r.site == SiteId(1)).collect();
    assert!(returns.iter().all(|r| f64(r, 1) == 0), "{returns:?}");
    let mut sizes: Vec<u64> = returns.iter().map(|r| f64(r, 0)).collect();
    sizes.sort();
    for (_, size) in truth_msgs(&vm.serial()) {
        let k = sizes
            .iter()
            .position(|&s| s == u64::from(size))
            .unwrap_or_else(|| panic!("no copyinmsg of {size} bytes: {sizes:?}"));
        sizes.remove(k);
    }
    assert!(pb.sequence().iter().all(|&(_, _, g)| g == 1 || g == 2));
}
