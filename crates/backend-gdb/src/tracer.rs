//! The probing loop: site installation (module bias, byte check, breakpoints), hits,
//! step-over, return probes, and the cleanup that leaves no breakpoint behind.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backend::{execute, Event, EventSender, RunSummary, StopToken, TargetAccess, TargetEnd};
use capture_plan::{DwarfReg, PlanSet, Record, SiteId, SiteKind};

use crate::commands::bp::BpType;
use crate::commands::mem::MemError;
use crate::commands::query::{parse_svr4, parse_threads};
use crate::commands::regs::{RegMap, RegValues};
use crate::commands::run::{StopReply, ThreadId};
use crate::conn::Conn;
use crate::elf::Module;
use crate::session::{RunState, Session};
use crate::{Error, GdbOptions};

/// How long to wait for QEMU's unsolicited stop reply after connecting.
const INITIAL_DRAIN: Duration = Duration::from_millis(250);
/// Bytes compared between the module file and the target at each site.
const CHECK_BYTES: usize = 16;
/// Bound on return probes waiting for their return (oldest dropped first).
const MAX_PENDING_RETURNS: usize = 4096;

/// Counters of a run: what the measurement reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Records emitted.
    pub hits: u64,
    /// Stop replies received after a continue.
    pub stops: u64,
    /// Packets sent (requests and resumes).
    pub packets: u64,
    /// Time from the first continue to the end of the run.
    pub elapsed: Duration,
}

impl Stats {
    /// Hits per second over the run.
    pub fn hits_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.hits as f64 / s
        } else {
            0.0
        }
    }
}

/// How to get past a breakpoint the target stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepMode {
    /// The stub executes the instruction under a breakpoint on `s` (QEMU: its
    /// breakpoints are not written into guest memory). Checked on the first step.
    InPlace { checked: bool },
    /// Remove, step, reinsert (gdbserver writes `int3`).
    RemoveStep,
}

#[derive(Debug)]
struct Bp {
    ty: BpType,
    /// Sites installed here.
    sites: Vec<usize>,
    /// Return probes waiting for a return here.
    ret_refs: u32,
    /// Installed before its address could be read (deferred mode): the module's bytes
    /// to compare with at the first hit, and the module's name.
    verify: Option<(Vec<u8>, String)>,
}

/// The outcome of comparing a site's bytes.
enum Check {
    Match,
    /// The bytes differ (or the address is not in the module): refuse the site.
    Refuse(String),
    /// The target cannot read the address now: the reason, and the module's bytes.
    Unreadable(String, Vec<u8>),
}

#[derive(Debug)]
struct PendingReturn {
    site: usize,
    thread: ThreadId,
    ret: u64,
    sp_after: u64,
    rec: Record,
}

/// The state of one connection.
#[derive(Debug)]
pub(crate) struct Core {
    opts: GdbOptions,
    s: Option<Session>,
    pub(crate) map: RegMap,
    pub(crate) machine: bool,
    pid: Option<u64>,
    last_thread: Option<ThreadId>,
    bps: BTreeMap<u64, Bp>,
    sw_unsupported: bool,
    step: StepMode,
    pending: Vec<PendingReturn>,
    ran: bool,
    /// The target process exited: nothing to clean.
    gone: bool,
    warnings: Vec<String>,
    /// Install sites whose address cannot be read yet, verifying them at their first hit.
    pub(crate) defer_unreadable: bool,
    /// Sites refused after the run started (deferred verification failed).
    late_failures: Vec<String>,
    /// Thread names (`execname()`) by tid, from `qXfer:threads:read`.
    comms: HashMap<u64, String>,
    pub(crate) stats: Stats,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// GDB's signal numbering (the protocol's, not Linux's) for the first 31 signals: the
/// name and the Linux x86 number.
const GDB_SIGNALS: [(&str, i32); 32] = [
    ("", 0),
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGEMT", 0),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGBUS", 7),
    ("SIGSEGV", 11),
    ("SIGSYS", 31),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGURG", 23),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGCONT", 18),
    ("SIGCHLD", 17),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGIO", 29),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGLOST", 0),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
];

/// The Linux number and name of a signal in GDB's numbering.
pub(crate) fn gdb_signal(sig: u8) -> (i32, String) {
    match GDB_SIGNALS.get(usize::from(sig)) {
        Some((name, linux)) if !name.is_empty() && *linux != 0 => (*linux, name.to_string()),
        _ => (i32::from(sig), format!("signal {sig}")),
    }
}

/// The target as [`backend::execute`] sees it: registers read once, memory through `m`.
struct Access<'a> {
    s: &'a mut Session,
    regs: &'a RegValues,
    fatal: Option<Error>,
    /// Ranges already read during this stop: a plan often dereferences the same pointer
    /// for several fields, and the target cannot change while stopped. Only bytes
    /// actually asked for are ever read (no read-ahead: it could touch device memory).
    cache: Vec<(u64, Vec<u8>)>,
}

impl TargetAccess for Access<'_> {
    fn reg(&mut self, reg: DwarfReg) -> Option<u64> {
        self.regs.get(reg.0)
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        if self.fatal.is_some() {
            return Err(addr);
        }
        let len = buf.len() as u64;
        for (a, bytes) in &self.cache {
            let (Some(end), Some(have)) =
                (addr.checked_add(len), a.checked_add(bytes.len() as u64))
            else {
                continue;
            };
            if addr >= *a && end <= have {
                let o = (addr - a) as usize;
                buf.copy_from_slice(&bytes[o..o + buf.len()]);
                return Ok(());
            }
        }
        match self.s.read_memory(addr, buf) {
            Ok(()) => {
                if self.cache.len() < 64 && buf.len() <= 4096 && addr.checked_add(len).is_some() {
                    self.cache.push((addr, buf.to_vec()));
                }
                Ok(())
            }
            Err(MemError::Fault(a)) => Err(a),
            Err(MemError::Fatal(e)) => {
                self.fatal = Some(e);
                Err(addr)
            }
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl Core {
    pub(crate) fn connect(opts: GdbOptions) -> Result<Core, Error> {
        let conn = Conn::connect(&opts.addr, opts.connect_timeout).map_err(Error::Connect)?;
        let mut s = Session::new(conn, opts.connect_timeout.max(Duration::from_secs(2)));
        let initial = s.drain(INITIAL_DRAIN)?;
        s.negotiate()?;
        s.probe_vcont()?;
        let mut last_thread = None;
        let now = s.request(b"?")?;
        for st in [initial, crate::commands::run::parse_stop(&now)]
            .into_iter()
            .flatten()
        {
            if let StopReply::Signal {
                thread: Some(t), ..
            } = st
            {
                last_thread = Some(t);
            }
        }
        let mut warnings = Vec::new();
        let map = if s.features.xfer_features {
            match s.read_xfer("features", "target.xml")? {
                Some(top) => {
                    let top = String::from_utf8_lossy(&top).into_owned();
                    let mut fetch = |href: &str| -> Option<String> {
                        s.read_xfer("features", href)
                            .ok()
                            .flatten()
                            .map(|d| String::from_utf8_lossy(&d).into_owned())
                    };
                    match RegMap::from_target_xml(&top, &mut fetch) {
                        Ok(m) => m,
                        // A description without registers (gdbserver when the client
                        // does not ask for x86 ones) means the default layout.
                        Err(_) if !top.contains("<reg") && !top.contains("include") => {
                            RegMap::fixed_x86_64()
                        }
                        Err(e) if e.starts_with("unsupported architecture") => {
                            return Err(Error::Protocol(format!(
                                "{e}: only x86_64 and i386 targets are supported"
                            )));
                        }
                        Err(e) => {
                            warnings.push(format!(
                                "unusable target description ({e}); assuming the x86_64 register layout"
                            ));
                            RegMap::fixed_x86_64()
                        }
                    }
                }
                None => RegMap::fixed_x86_64(),
            }
        } else {
            RegMap::fixed_x86_64()
        };
        let machine = !s.features.xfer_auxv;
        Ok(Core {
            opts,
            map,
            machine,
            pid: last_thread.and_then(|t| t.pid),
            last_thread,
            bps: BTreeMap::new(),
            sw_unsupported: false,
            step: if machine {
                StepMode::InPlace { checked: false }
            } else {
                StepMode::RemoveStep
            },
            pending: Vec::new(),
            ran: false,
            gone: false,
            warnings,
            defer_unreadable: false,
            late_failures: Vec::new(),
            comms: HashMap::new(),
            stats: Stats::default(),
            s: Some(s),
        })
    }

    fn sess(&mut self) -> Result<&mut Session, Error> {
        self.s.as_mut().ok_or(Error::Disconnected)
    }

    pub(crate) fn run(
        &mut self,
        plans: &PlanSet,
        tx: &EventSender,
        stop: &StopToken,
    ) -> Result<RunSummary, Error> {
        if self.ran {
            return Err(Error::AlreadyRan);
        }
        self.ran = true;
        plans.verify()?;
        // No waker is registered: the loop polls the socket every POLL (20 ms) and checks
        // the token, sending the interrupt itself (one writer, so 0x03 can never land
        // inside a packet being written).
        for w in std::mem::take(&mut self.warnings) {
            tx.control(Event::Warning(w));
        }
        let mut summary = RunSummary::default();
        let module = Module::load(&self.opts.module).map_err(Error::Module);
        let result = match module {
            Ok(m) => self.run_inner(plans, tx, stop, &m, &mut summary),
            Err(e) => Err(e),
        };
        summary.hits = self.stats.hits;
        summary.failed_sites.append(&mut self.late_failures);
        let cleaned = self.cleanup();
        match result {
            Ok(()) => {
                cleaned?;
                Ok(summary)
            }
            Err(Error::Disconnected) => {
                tx.control(Event::Warning(format!(
                    "the gdbstub at {} closed the connection (the VM or gdbserver is gone)",
                    self.opts.addr
                )));
                tx.control(Event::TargetEnded {
                    pid: self.pid.unwrap_or(0) as u32,
                    how: TargetEnd::Exited(0),
                });
                Ok(summary)
            }
            Err(e) => Err(e),
        }
    }

    fn bias(&mut self, module: &Module) -> Result<u64, String> {
        if !module.relocatable {
            return Ok(0);
        }
        let s = self.s.as_mut().ok_or("not connected")?;
        let fail = |e: Error| e.to_string();
        if let Some(off) = s.text_offset().map_err(fail)? {
            return Ok(off);
        }
        if s.features.xfer_svr4 {
            if let Some(xml) = s.read_xfer("libraries-svr4", "").map_err(fail)? {
                let xml = String::from_utf8_lossy(&xml);
                for (name, l_addr) in parse_svr4(&xml) {
                    if !name.is_empty() && same_file(Path::new(&name), &module.path) {
                        return Ok(l_addr);
                    }
                }
            }
        }
        let is_main = if s.features.xfer_exec_file {
            let annex = self.pid.map(|p| format!("{p:x}")).unwrap_or_default();
            match s.read_xfer("exec-file", &annex).map_err(fail)? {
                Some(f) => same_file(Path::new(&*String::from_utf8_lossy(&f)), &module.path),
                None => false,
            }
        } else {
            false
        };
        if is_main && s.features.xfer_auxv {
            let word = self.map.arch.ptr_size();
            if let Some(at_entry) = s.auxv_entry(9, word).map_err(fail)? {
                return Ok(at_entry.wrapping_sub(module.entry));
            }
        }
        Err(format!(
            "cannot tell where {} is loaded: the stub reports no qOffsets, no matching \
             libraries-svr4 entry and no auxiliary vector for it",
            module.path.display()
        ))
    }

    fn install(
        &mut self,
        plans: &PlanSet,
        module: &Module,
        summary: &mut RunSummary,
    ) -> Result<(), Error> {
        let what = if self.machine { "kernel" } else { "process" };
        let mut bias: Option<Result<u64, String>> = None;
        let mut checked: BTreeMap<u64, Check> = BTreeMap::new();
        for (i, site) in plans.sites.iter().enumerate() {
            let label = format!(
                "site {} ({:#x} in {})",
                i,
                site.addr.0,
                site.module.display()
            );
            match site.kind {
                SiteKind::ProcessBegin
                | SiteKind::ProcessEnd
                | SiteKind::SyscallEntry
                | SiteKind::SyscallReturn
                | SiteKind::Semaphore => {
                    summary.failed_sites.push(format!(
                        "site {i}: process begin/end, syscall and USDT semaphore sites do not apply to a gdb remote target"
                    ));
                    continue;
                }
                SiteKind::ThreadBegin | SiteKind::ThreadEnd => {
                    summary.failed_sites.push(format!(
                        "site {i}: process.thread.begin/end probes need the ptrace backend: a gdb remote target reports no thread creation or exit"
                    ));
                    continue;
                }
                SiteKind::Entry | SiteKind::Return { .. } => {}
            }
            if !same_file(&site.module, &module.path) {
                summary.failed_sites.push(format!(
                    "{label}: not in {}, the module of the gdb target",
                    module.path.display()
                ));
                continue;
            }
            let b = match bias.get_or_insert_with(|| self.bias(module)) {
                Ok(b) => *b,
                Err(e) => {
                    summary.failed_sites.push(format!("{label}: {e}"));
                    continue;
                }
            };
            let addr = site.addr.0.wrapping_add(b);
            if let std::collections::btree_map::Entry::Vacant(v) = checked.entry(addr) {
                v.insert(self.check_bytes(module, site.addr.0, addr, what)?);
            }
            let mut verify = None;
            match checked.get(&addr) {
                Some(Check::Refuse(e)) => {
                    summary.failed_sites.push(format!("{label}: {e}"));
                    continue;
                }
                Some(Check::Unreadable(e, want)) => {
                    if !self.defer_unreadable {
                        summary.failed_sites.push(format!("{label}: {e}"));
                        continue;
                    }
                    verify = Some((want.clone(), module.name()));
                }
                _ => {}
            }
            if let Some(bp) = self.bps.get_mut(&addr) {
                bp.sites.push(i);
                continue;
            }
            let mut swu = self.sw_unsupported;
            let r = self.sess()?.insert_bp(addr, &mut swu)?;
            self.sw_unsupported = swu;
            match r {
                Ok(ty) => {
                    self.bps.insert(
                        addr,
                        Bp {
                            ty,
                            sites: vec![i],
                            ret_refs: 0,
                            verify,
                        },
                    );
                }
                Err(e) => summary.failed_sites.push(format!("{label}: {e}")),
            }
        }
        Ok(())
    }

    /// Compares the target's bytes at `addr` with the module file's at `file_addr`.
    /// `Err` is a connection failure.
    fn check_bytes(
        &mut self,
        module: &Module,
        file_addr: u64,
        addr: u64,
        what: &str,
    ) -> Result<Check, Error> {
        let Some(want) = module.bytes_at(file_addr, CHECK_BYTES) else {
            return Ok(Check::Refuse(format!(
                "{file_addr:#x} is not in a loaded segment of {}",
                module.name()
            )));
        };
        let mut got = vec![0u8; want.len()];
        match self.sess()?.read_memory(addr, &mut got) {
            Ok(()) => {}
            Err(MemError::Fault(a)) => {
                return Ok(Check::Unreadable(
                    format!("cannot read the {what}'s memory at {a:#x} (not mapped now?)"),
                    want.to_vec(),
                ))
            }
            Err(MemError::Fatal(e)) => return Err(e),
        }
        Ok(match mismatch(what, &module.name(), addr, &got, want) {
            Some(m) => Check::Refuse(m),
            None => Check::Match,
        })
    }

    /// At the first hit of a breakpoint installed unverified: compare now. `Ok(false)`
    /// when the site was refused (its breakpoint is gone).
    fn verify_late(&mut self, pc: u64) -> Result<bool, Error> {
        let Some((want, name)) = self.bps.get(&pc).and_then(|b| b.verify.clone()) else {
            return Ok(true);
        };
        let what = if self.machine { "kernel" } else { "process" };
        let mut got = vec![0u8; want.len()];
        let problem = match self.sess()?.read_memory(pc, &mut got) {
            Ok(()) => mismatch(what, &name, pc, &got, &want),
            Err(MemError::Fault(a)) => Some(format!(
                "cannot read the {what}'s memory at {a:#x} even when executing there"
            )),
            Err(MemError::Fatal(e)) => return Err(e),
        };
        match problem {
            None => {
                if let Some(b) = self.bps.get_mut(&pc) {
                    b.verify = None;
                }
                Ok(true)
            }
            Some(p) => {
                if let Some(b) = self.bps.remove(&pc) {
                    self.sess()?.remove_bp(pc, b.ty)?;
                    for i in b.sites {
                        self.late_failures.push(format!("site {i}: {p}"));
                    }
                }
                Ok(false)
            }
        }
    }

    fn run_inner(
        &mut self,
        plans: &PlanSet,
        tx: &EventSender,
        stop: &StopToken,
        module: &Module,
        summary: &mut RunSummary,
    ) -> Result<(), Error> {
        self.install(plans, module, summary)?;
        let start = Instant::now();
        let mut signal: Option<(u8, Option<ThreadId>)> = None;
        let result = loop {
            if stop.is_requested() {
                break Ok(());
            }
            let s = self.sess()?;
            match signal.take() {
                Some((sig, t)) => s.cont_with_signal(sig, t)?,
                None => s.cont()?,
            }
            let st = match self.sess()?.wait_stop(stop, None) {
                Ok(st) => st,
                Err(e) => break Err(e),
            };
            self.stats.stops += 1;
            match st {
                StopReply::Exited { code, pid } => {
                    self.gone = true;
                    tx.control(Event::TargetEnded {
                        pid: pid.or(self.pid).unwrap_or(0) as u32,
                        how: TargetEnd::Exited(i32::from(code)),
                    });
                    break Ok(());
                }
                StopReply::Killed { signal, pid } => {
                    self.gone = true;
                    tx.control(Event::TargetEnded {
                        pid: pid.or(self.pid).unwrap_or(0) as u32,
                        how: {
                            let (signal, name) = gdb_signal(signal);
                            TargetEnd::Signaled {
                                signal,
                                name,
                                core: false,
                            }
                        },
                    });
                    break Ok(());
                }
                StopReply::NoResumed => {
                    self.gone = true;
                    tx.control(Event::TargetEnded {
                        pid: self.pid.unwrap_or(0) as u32,
                        how: TargetEnd::Exited(0),
                    });
                    break Ok(());
                }
                StopReply::Signal {
                    signal: sig,
                    thread,
                    core,
                    ..
                } => {
                    let thread = thread
                        .or(self.last_thread)
                        .unwrap_or(ThreadId { pid: None, tid: 1 });
                    self.last_thread = Some(thread);
                    if let Some(p) = thread.pid {
                        self.pid = Some(p);
                    }
                    let hit = match self.on_stop(plans, thread, sig, core, tx, stop) {
                        Ok(h) => h,
                        Err(e) => break Err(e),
                    };
                    // A process's own signal (not our breakpoint trap, not our
                    // interrupt) goes back to it on the next resume.
                    let ours = hit || self.machine || sig == 5 || (sig == 2 && stop.is_requested());
                    if !ours {
                        signal = Some((sig, Some(thread)));
                    }
                }
            }
        };
        self.stats.elapsed = start.elapsed();
        if let Some(s) = &self.s {
            self.stats.packets = s.round_trips;
        }
        result
    }

    /// Handles a stop of `thread`: hits at its pc, then the step over the breakpoint.
    /// `Ok(false)` when the stop was not at one of our breakpoints.
    fn on_stop(
        &mut self,
        plans: &PlanSet,
        thread: ThreadId,
        sig: u8,
        core: Option<u32>,
        tx: &EventSender,
        stop: &StopToken,
    ) -> Result<bool, Error> {
        let map = self.map.clone();
        let regs = self.sess()?.read_regs(&map)?;
        let Some(pc) = regs.get(map.arch.pc()) else {
            return Err(Error::Protocol("the stub did not report the pc".into()));
        };
        if !self.bps.contains_key(&pc) {
            if self.machine && sig == 5 && !stop.is_requested() {
                // On a machine nothing but a breakpoint stops a continued target with
                // SIGTRAP: one we did not insert was left by an earlier client that
                // died without detaching (QEMU keeps them). Continuing would stop here
                // again forever, so remove it.
                let s = self.sess()?;
                for p in [format!("z0,{pc:x},1"), format!("z1,{pc:x},1")] {
                    s.request(p.as_bytes())?;
                }
                tx.control(Event::Warning(format!(
                    "removed a breakpoint at {pc:#x} left by an earlier debugger session"
                )));
                return Ok(true);
            }
            return Ok(false);
        }
        if !self.verify_late(pc)? {
            if let Some(m) = self.late_failures.last() {
                tx.control(Event::Warning(m.clone()));
            }
            return Ok(true);
        }
        self.returns_at(plans, pc, thread, &regs, tx)?;
        let sites = self
            .bps
            .get(&pc)
            .map(|b| b.sites.clone())
            .unwrap_or_default();
        for i in sites {
            let Some(site) = plans.sites.get(i) else {
                continue;
            };
            let mut rec = self.new_record(i, thread, pc);
            if let (false, Some(c)) = (self.machine, core) {
                rec.cpu = c;
            }
            if site.needs.comm && !self.machine {
                rec.comm = self.comm(thread)?;
            }
            self.capture(&site.plan, &regs, &mut rec)?;
            match &site.kind {
                SiteKind::Return { .. } => self.entry_of_return(i, thread, &regs, rec, tx)?,
                _ => {
                    self.stats.hits += 1;
                    tx.record(rec);
                }
            }
        }
        if stop.is_requested() {
            // Cleanup removes the breakpoint and detaches; the instruction runs then.
            return Ok(true);
        }
        if let Some(ty) = self.bps.get(&pc).map(|b| b.ty) {
            self.step_over(thread, pc, ty, stop)?;
        }
        Ok(true)
    }

    /// The name of a process thread (its `comm`), from the stub's thread list.
    fn comm(&mut self, thread: ThreadId) -> Result<String, Error> {
        if let Some(c) = self.comms.get(&thread.tid) {
            return Ok(c.clone());
        }
        let s = self.sess()?;
        if !s.features.xfer_threads {
            return Ok(String::new());
        }
        if let Some(xml) = s.read_xfer("threads", "")? {
            for (id, name) in parse_threads(&String::from_utf8_lossy(&xml)) {
                self.comms.insert(id.tid, name);
            }
        }
        // Remember a miss too, so a stub without names costs one request per thread.
        Ok(self.comms.entry(thread.tid).or_default().clone())
    }

    fn new_record(&self, site: usize, thread: ThreadId, pc: u64) -> Record {
        let tid = thread.tid.min(u64::from(u32::MAX)) as u32;
        if self.machine {
            let mut r = Record::new(SiteId(site as u32), 0, tid, now_ns(), pc);
            r.cpu = tid.saturating_sub(1);
            r
        } else {
            let pid = thread.pid.or(self.pid).unwrap_or(0) as u32;
            Record::new(SiteId(site as u32), pid, tid, now_ns(), pc)
        }
    }

    fn capture(
        &mut self,
        plan: &capture_plan::CapturePlan,
        regs: &RegValues,
        rec: &mut Record,
    ) -> Result<(), Error> {
        let s = self.s.as_mut().ok_or(Error::Disconnected)?;
        let mut acc = Access {
            s,
            regs,
            fatal: None,
            cache: Vec::new(),
        };
        execute(plan, &mut acc, rec);
        match acc.fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// At the entry of a return probe: remember the frame and break at the return
    /// address.
    fn entry_of_return(
        &mut self,
        site: usize,
        thread: ThreadId,
        regs: &RegValues,
        rec: Record,
        tx: &EventSender,
    ) -> Result<(), Error> {
        let arch = self.map.arch;
        let Some(sp) = regs.get(arch.sp()) else {
            return Ok(());
        };
        let w = arch.ptr_size();
        let mut b = [0u8; 8];
        match self.sess()?.read_memory(sp, &mut b[..w]) {
            Ok(()) => {}
            Err(MemError::Fault(a)) => {
                tx.control(Event::Warning(format!(
                    "site {site}: cannot read the return address at {a:#x}; return not probed"
                )));
                return Ok(());
            }
            Err(MemError::Fatal(e)) => return Err(e),
        }
        let ret = u64::from_le_bytes(b);
        if let Some(bp) = self.bps.get_mut(&ret) {
            bp.ret_refs += 1;
        } else {
            let mut swu = self.sw_unsupported;
            match self.sess()?.insert_bp(ret, &mut swu)? {
                Ok(ty) => {
                    self.bps.insert(
                        ret,
                        Bp {
                            ty,
                            sites: Vec::new(),
                            ret_refs: 1,
                            verify: None,
                        },
                    );
                }
                Err(e) => {
                    tx.control(Event::Warning(format!(
                        "site {site}: return not probed: {e}"
                    )));
                    return Ok(());
                }
            }
        }
        if self.pending.len() >= MAX_PENDING_RETURNS {
            let old = self.pending.remove(0);
            self.release(old.ret)?;
        }
        self.pending.push(PendingReturn {
            site,
            thread,
            ret,
            sp_after: sp.wrapping_add(w as u64),
            rec,
        });
        Ok(())
    }

    /// Completes the return probes whose frame returns to `pc` now.
    fn returns_at(
        &mut self,
        plans: &PlanSet,
        pc: u64,
        thread: ThreadId,
        regs: &RegValues,
        tx: &EventSender,
    ) -> Result<(), Error> {
        let Some(sp) = regs.get(self.map.arch.sp()) else {
            return Ok(());
        };
        let machine = self.machine;
        // Kernel threads migrate between vCPUs but keep their stack, so on a machine
        // the stack pointer alone identifies the frame; in a process the thread too.
        let same_thread = |p: &PendingReturn| machine || p.thread.tid == thread.tid;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if p.ret != pc || !same_thread(p) {
                i += 1;
                continue;
            }
            if p.sp_after == sp {
                let mut p = self.pending.remove(i);
                if let Some(SiteKind::Return { return_plan }) =
                    plans.sites.get(p.site).map(|s| &s.kind)
                {
                    p.rec.ip = pc;
                    p.rec.time_ns = now_ns();
                    self.capture(return_plan, regs, &mut p.rec)?;
                    self.stats.hits += 1;
                    tx.record(p.rec);
                }
                self.release(pc)?;
            } else if !machine && p.sp_after < sp {
                // The frame is gone without returning here (longjmp, exception).
                self.pending.remove(i);
                self.release(pc)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Drops one return reference at `addr`, removing the breakpoint when unused.
    fn release(&mut self, addr: u64) -> Result<(), Error> {
        let remove = match self.bps.get_mut(&addr) {
            Some(bp) => {
                bp.ret_refs = bp.ret_refs.saturating_sub(1);
                bp.ret_refs == 0 && bp.sites.is_empty()
            }
            None => false,
        };
        if remove {
            if let Some(bp) = self.bps.remove(&addr) {
                self.sess()?.remove_bp(addr, bp.ty)?;
            }
        }
        Ok(())
    }

    /// Executes the instruction under the breakpoint at `pc` in `thread`.
    fn step_over(
        &mut self,
        thread: ThreadId,
        pc: u64,
        ty: BpType,
        stop: &StopToken,
    ) -> Result<(), Error> {
        let step_wait = Some(self.sess()?.timeout);
        let never = StopToken::new();
        if let StepMode::InPlace { checked } = self.step {
            // Even a stub that executes the instruction under a breakpoint on `s`
            // sometimes reports the step without having executed it (QEMU under load:
            // the translation block exits before the instruction). Resuming then
            // would stop at the same breakpoint again and report one call twice, so
            // the pc is checked after every step, and the step repeated.
            for _ in 0..3 {
                let s = self.sess()?;
                s.step(Some(thread))?;
                let st = s.wait_stop(&never, step_wait)?;
                self.after_step(&st)?;
                let map = self.map.clone();
                let now = self.sess()?.read_regs(&map)?.get(map.arch.pc());
                if now != Some(pc) {
                    self.step = StepMode::InPlace { checked: true };
                    return Ok(());
                }
                if !checked {
                    break;
                }
            }
            if !checked {
                // The stub re-reports the breakpoint instead of executing the instruction.
                self.step = StepMode::RemoveStep;
            }
        }
        let _ = stop;
        let s = self.sess()?;
        s.remove_bp(pc, ty)?;
        s.step(Some(thread))?;
        let st = s.wait_stop(&never, step_wait)?;
        let mut swu = self.sw_unsupported;
        if let Ok(Err(e)) = self.sess()?.insert_bp(pc, &mut swu) {
            self.bps.remove(&pc);
            return Err(Error::Protocol(format!(
                "cannot reinsert a breakpoint: {e}"
            )));
        }
        self.sw_unsupported = swu;
        self.after_step(&st)
    }

    fn after_step(&mut self, st: &StopReply) -> Result<(), Error> {
        match st {
            StopReply::Signal { .. } => Ok(()),
            _ => {
                self.gone = true;
                Err(Error::Protocol(format!(
                    "the target ended while stepping over a breakpoint ({st:?})"
                )))
            }
        }
    }

    /// Stops the target if it runs, removes every breakpoint, detaches and closes.
    fn cleanup(&mut self) -> Result<(), Error> {
        let Some(mut s) = self.s.take() else {
            return Ok(());
        };
        self.pending.clear();
        if self.gone {
            s.conn.shutdown();
            self.bps.clear();
            return Ok(());
        }
        let mut first_err = None;
        if s.state == RunState::Running {
            let t = StopToken::new();
            t.request();
            let w = Some(s.timeout);
            if let Err(e) = s.wait_stop(&t, w) {
                first_err = Some(e);
            }
        }
        if first_err.is_none() {
            for (addr, bp) in std::mem::take(&mut self.bps) {
                if let Err(e) = s.remove_bp(addr, bp.ty) {
                    // A stub that stopped answering will not answer the next one
                    // either: do not wait a timeout per breakpoint.
                    let dead = matches!(e, Error::Timeout(_) | Error::Disconnected);
                    first_err.get_or_insert(e);
                    if dead {
                        break;
                    }
                }
            }
            if !matches!(first_err, Some(Error::Timeout(_) | Error::Disconnected)) {
                if let Err(e) = s.detach(self.pid) {
                    first_err.get_or_insert(e);
                }
            }
        }
        s.conn.shutdown();
        match first_err {
            None | Some(Error::Disconnected) => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

/// The refusal message when `got` (the target's bytes at `addr`) differs from `want`.
fn mismatch(what: &str, name: &str, addr: u64, got: &[u8], want: &[u8]) -> Option<String> {
    (got != want).then(|| {
        format!(
            "{what} does not match {name}: bytes at {addr:#x} differ (target {}, file {})",
            crate::packet::to_hex(got),
            crate::packet::to_hex(want)
        )
    })
}
