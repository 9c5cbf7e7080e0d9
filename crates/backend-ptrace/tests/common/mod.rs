//! Shared helpers for the live tests: C fixtures compiled at test time, symbol lookup,
//! hand-written capture plans, and a runner that collects every event.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use backend::{event_queue, Event, RunSummary, StopToken};
use backend_ptrace::{Launch, Options, PtraceBackend};
use capture_plan::{
    CapturePlan, ContextNeeds, DwarfReg, FieldPlan, FileAddr, Op, PlanSet, ProbeSite, Record,
    SiteId, SiteKind,
};
use object::{Object, ObjectSymbol};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("snaptap-ptrace-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p.canonicalize().expect("canonical temp dir"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles `src` with gcc into `dir/name` with extra arguments; panics with gcc's
/// messages on failure.
pub fn gcc(dir: &TempDir, name: &str, src: &str, args: &[&str]) -> PathBuf {
    let c = dir.path(&format!("{name}.c"));
    std::fs::write(&c, src).expect("write source");
    let out = dir.path(name);
    let o = Command::new("gcc")
        .arg("-g")
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .args(args)
        .output()
        .expect("run gcc");
    assert!(
        o.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The link-time address of function `name` in ELF file `path`.
pub fn sym(path: &Path, name: &str) -> u64 {
    let data = std::fs::read(path).expect("read ELF");
    let f = object::File::parse(&*data).expect("parse ELF");
    f.symbols()
        .chain(f.dynamic_symbols())
        .find(|s| s.name() == Ok(name) && s.address() != 0)
        .map(|s| s.address())
        .unwrap_or_else(|| panic!("no symbol {name} in {}", path.display()))
}

/// A field copying DWARF register `r` (8 bytes).
pub fn reg(r: u16) -> FieldPlan {
    FieldPlan {
        ops: vec![Op::Reg(DwarfReg(r)), Op::EmitValue(8)],
        label: format!("reg{r}"),
    }
}

/// A field copying the string register `r` points to.
pub fn string_at_reg(r: u16, max: u32) -> FieldPlan {
    FieldPlan {
        ops: vec![Op::Reg(DwarfReg(r)), Op::EmitString(max)],
        label: format!("*reg{r}"),
    }
}

pub fn plan(fields: Vec<FieldPlan>) -> CapturePlan {
    CapturePlan { fields }
}

/// A site for `func` of `module` with `kind`.
pub fn site(id: u32, module: &Path, addr: u64, kind: SiteKind, p: CapturePlan) -> ProbeSite {
    ProbeSite {
        id: SiteId(id),
        module: module.canonicalize().expect("canonical module"),
        addr: FileAddr(addr),
        kind,
        plan: p,
        needs: ContextNeeds::default(),
    }
}

pub fn entry_site(id: u32, module: &Path, func: &str, fields: Vec<FieldPlan>) -> ProbeSite {
    site(id, module, sym(module, func), SiteKind::Entry, plan(fields))
}

/// The value of 8-byte field `i`.
pub fn val(r: &Record, i: usize) -> u64 {
    let b = r.field(i).expect("field present");
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// What one traced run produced.
pub struct Outcome {
    pub records: Vec<Record>,
    pub others: Vec<Event>,
    pub summary: RunSummary,
    pub pid: u32,
}

impl Outcome {
    pub fn site(&self, id: u32) -> Vec<&Record> {
        self.records.iter().filter(|r| r.site.0 == id).collect()
    }

    pub fn ended(&self) -> Option<&backend::TargetEnd> {
        self.others.iter().find_map(|e| match e {
            Event::TargetEnded { how, .. } => Some(how),
            _ => None,
        })
    }
}

/// Runs `launch` with `sites`; `on_record` may request the stop after the n-th record.
pub fn run_with(
    launch: Launch,
    opts: Options,
    sites: Vec<ProbeSite>,
    stop_after: Option<usize>,
) -> Outcome {
    run_cfg(launch, opts, sites, stop_after, false)
}

/// Like [`run_with`]; `single_step` forces the single-step path (no out-of-line pads).
pub fn run_cfg(
    launch: Launch,
    opts: Options,
    sites: Vec<ProbeSite>,
    stop_after: Option<usize>,
    single_step: bool,
) -> Outcome {
    run_until(
        launch,
        opts,
        sites,
        move |recs: &[Record]| stop_after.is_some_and(|n| recs.len() == n),
        single_step,
    )
}

/// Runs `launch` with `sites`, requesting the stop as soon as `stop_when` (called
/// after each record with every record so far) returns true.
pub fn run_until(
    launch: Launch,
    opts: Options,
    sites: Vec<ProbeSite>,
    mut stop_when: impl FnMut(&[Record]) -> bool + Send + 'static,
    single_step: bool,
) -> Outcome {
    let mut be = PtraceBackend::new(launch, opts).expect("start backend");
    be.force_single_step(single_step);
    let pid = be.pid();
    let (tx, rx) = event_queue(1 << 16);
    let stop = StopToken::new();
    let stop2 = stop.clone();
    let drain = std::thread::spawn(move || {
        let mut records = Vec::new();
        let mut others = Vec::new();
        let mut stopped = false;
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(Some(Event::Record(r))) => {
                    records.push(r);
                    if !stopped && stop_when(&records) {
                        stopped = true;
                        stop2.request();
                    }
                }
                Ok(Some(e)) => others.push(e),
                Ok(None) => {}
                Err(()) => break,
            }
        }
        assert_eq!(rx.dropped(), 0, "records dropped");
        (records, others)
    });
    let plans = PlanSet { sites };
    let summary = be.run(&plans, &tx, &stop).expect("run");
    drop(tx);
    drop(be);
    let (records, others) = drain.join().expect("drain thread");
    Outcome {
        records,
        others,
        summary,
        pid,
    }
}

pub fn spawn(argv: &[&str]) -> Launch {
    Launch::Spawn {
        argv: argv.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Waits for our child `pid` to end; returns its raw status.
pub fn wait_child(pid: u32) -> i32 {
    let mut st = 0;
    loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => {
                st = c << 8;
                break;
            }
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => {
                st = s as i32;
                break;
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    st
}
