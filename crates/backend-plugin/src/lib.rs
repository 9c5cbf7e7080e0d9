//! snaptap's side of the in-emulator copier: hands capture plans to the QEMU TCG plugin
//! (`crates/qemu-plugin`) through a shared-memory file and turns the records it writes
//! into [`backend::Event`]s.
//!
//! Overview: [`PluginBackend::new`] verifies the plan set, keeps the entry and return
//! sites of the kernel module, and writes them into `/dev/shm/snaptap-PID-N` (layout in [`wire`]).
//! [`PluginBackend::qemu_args`] gives the `-plugin` arguments to add to the QEMU command,
//! which the caller starts. [`PluginBackend::run`] waits for the plugin to accept (or
//! reject, with its message) the plans, arms the probes, and polls the per-vCPU rings,
//! emitting one `Event::Record` per record (pid 0, tid = vCPU + 1, cpu = vCPU) until the
//! stop token is set or QEMU exits; it then disarms (the plugin checks the `armed` word;
//! no guest state is ever written), drains the rings and checks that every armed hit was
//! either delivered or counted as dropped.
//!
//! Moving probes while the guest runs: [`PluginBackend::switcher`] gives a handle whose
//! [`PlanSwitcher::switch`] hands the plugin a new plan set (a new generation; see
//! [`wire`]) and waits until it is active or refused. Records say which generation made
//! them, and only records of a generation this backend installed, naming a site of that
//! generation, are delivered.
//!
//! Attaching: [`PluginBackend::attach`] opens the control file of a VM started with the
//! plugin idle (`-plugin libqemu_plugin.so,control=PATH`, see [`plugin_args_for`]),
//! installs its plans as a new generation; at the end `run` disarms and installs an
//! empty set, so the VM runs on untraced and a later session can attach again.
//!
//! Kernel sites only: the module is the kernel ELF, whose link-time addresses are guest
//! virtual addresses. No `unsafe` here: the host reads and writes the shared file with
//! `pread`/`pwrite`, which are coherent with the plugin's mapping of the same tmpfs pages.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend::{Event, EventSender, RunSummary, StopToken};
use capture_plan::{FieldPlan, PlanSet, Record, SiteId, SiteKind};

pub mod wire;

#[cfg(test)]
mod tests;

use wire::{Layout, SharedMem};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plan set failed verification, or no site can run in the plugin.
    #[error("invalid capture plan: {0}")]
    Plan(String),
    /// The shared-memory file could not be created or used.
    #[error("plugin shared memory: {0}")]
    Shm(String),
    /// The plugin library was not found.
    #[error("the QEMU plugin library (libqemu_plugin.so) was not found; build it with `cargo build -p qemu-plugin` or set SNAPTAP_QEMU_PLUGIN")]
    NoLibrary,
    /// QEMU did not load the plugin in time (no plugin support, or QEMU failed to start).
    #[error("QEMU did not load the snaptap plugin within {0:?} (QEMU 10 with TCG plugin support is needed)")]
    NotLoaded(Duration),
    /// The plugin refused the plans; its message says why.
    #[error("the QEMU plugin rejected the plans: {0}")]
    Rejected(String),
    /// QEMU exited before the plugin armed the probes.
    #[error("QEMU exited before the probes were armed")]
    Exited,
    /// The rings' contents were inconsistent (a bug or a foreign writer).
    #[error("plugin ring: {0}")]
    Ring(String),
    /// `run` was called twice, or with plans other than those given to `new`.
    #[error("{0}")]
    Usage(String),
    /// The plugin did not take a new plan set in time.
    #[error("the QEMU plugin did not take the new plans within {0:?} (is the guest running, under TCG? Under KVM the plugin never runs)")]
    SwitchTimeout(Duration),
    /// Another snaptap session is attached to this VM.
    #[error("snaptap (pid {0}) is already attached to this VM")]
    Busy(u64),
}

/// How to set the plugin up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginOptions {
    /// The kernel ELF (link-time addresses are guest virtual addresses); sites of any
    /// other module are reported as failed.
    pub module: PathBuf,
    /// The plugin library; `None` finds it with [`find_plugin_library`].
    pub library: Option<PathBuf>,
    /// Number of per-vCPU rings (vCPUs with a higher index count every hit as dropped).
    pub rings: u32,
    /// Bytes per ring.
    pub ring_bytes: u64,
    /// Record only hits in the address space with this `cr3` value.
    pub cr3: Option<u64>,
    /// How long `run` waits for QEMU to load the plugin.
    pub load_timeout: Duration,
    /// Arm the probes from the moment QEMU loads the plugin (records wait in the rings
    /// until `run` reads them), so a VM started with the plugin is traced from its first
    /// instruction; otherwise `run` arms them. Ignored by [`PluginBackend::attach`].
    pub armed_at_load: bool,
    /// Per-site address-space filters: a site listed here records only hits whose `cr3`
    /// equals the value (user-space probes in one guest task).
    pub site_cr3: Vec<(SiteId, u64)>,
    /// How long a plan switch (and attaching, and detaching) waits for the plugin.
    pub switch_timeout: Duration,
    /// A field whose bytes (a NUL-terminated string) name the current task: appended to
    /// the entry plan of every site whose handlers call `execname()`, and delivered as
    /// the record's `comm` instead of as a field. `None`: `execname()` is empty.
    pub comm: Option<FieldPlan>,
}

impl PluginOptions {
    /// Defaults: 8 rings of 4 MiB, no cr3 filter, 20 s load timeout, armed at load.
    pub fn new(module: impl Into<PathBuf>) -> PluginOptions {
        PluginOptions {
            module: module.into(),
            library: None,
            rings: 8,
            ring_bytes: 4 << 20,
            cr3: None,
            load_timeout: Duration::from_secs(20),
            armed_at_load: true,
            site_cr3: Vec::new(),
            switch_timeout: Duration::from_secs(10),
            comm: None,
        }
    }
}

/// Counters of a run, summed over the rings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Armed probe hits the plugin saw.
    pub hits: u64,
    /// Records read from the rings and offered to the event queue.
    pub delivered: u64,
    /// Records the plugin dropped because a ring was full (or the vCPU had no ring).
    pub dropped: u64,
    /// Probe instructions the plugin instrumented (one per translation).
    pub instrumented: u64,
    /// Per ring: (hits, delivered, dropped).
    pub per_ring: Vec<wire::RingCounters>,
    /// Records of a generation (or naming a site) this backend did not install: left
    /// over from an earlier session on the same VM; read and discarded, never delivered.
    pub stale: u64,
}

/// The shared file through `pread`/`pwrite`.
struct FileMem {
    file: File,
    len: usize,
}

impl SharedMem for FileMem {
    fn len(&self) -> usize {
        self.len
    }
    fn load(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        if off + 8 > self.len || self.file.read_exact_at(&mut b, off as u64).is_err() {
            return 0;
        }
        u64::from_le_bytes(b)
    }
    fn store(&self, off: usize, v: u64) {
        if off + 8 <= self.len {
            let _ = self.file.write_all_at(&v.to_le_bytes(), off as u64);
        }
    }
    fn write(&self, off: usize, bytes: &[u8]) {
        if off + bytes.len() <= self.len {
            let _ = self.file.write_all_at(bytes, off as u64);
        }
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        if off + buf.len() > self.len || self.file.read_exact_at(buf, off as u64).is_err() {
            buf.fill(0);
        }
    }
}

/// What the backend and its [`PlanSwitcher`]s share.
struct Shared {
    mem: FileMem,
    layout: Layout,
    /// Per generation installed (or being installed) by this backend: its sites.
    gens: Mutex<HashMap<u32, Sites>>,
    /// See [`PluginOptions::comm`].
    comm: Option<FieldPlan>,
    /// One switch at a time.
    switching: Mutex<()>,
    /// How long a switch waits for the plugin.
    timeout: Duration,
    /// QEMU's pid, if known (a switch stops waiting when it is gone).
    qemu_pid: Mutex<Option<u32>>,
}

impl Shared {
    fn qemu_gone(&self) -> bool {
        if wire::status(&self.mem).0 == wire::STATUS_EXITED {
            return true;
        }
        let pid = self.qemu_pid.lock().ok().and_then(|p| *p);
        match pid {
            // A zombie ("Z" after the command name) is gone too.
            Some(pid) => match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(st) => st
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')),
                Err(_) => true,
            },
            None => false,
        }
    }

    /// Publishes `enc` (site ids `ids`) as the next generation and waits until the
    /// plugin accepted it (its number) or refused it (its message).
    fn switch(&self, enc: &[u8], ids: Sites) -> Result<u64, Error> {
        let _one = self.switching.lock().unwrap_or_else(|e| e.into_inner());
        let t0 = Instant::now();
        let wait = |what: &dyn Fn() -> bool| -> Result<(), Error> {
            while !what() {
                if self.qemu_gone() {
                    return Err(Error::Exited);
                }
                if t0.elapsed() > self.timeout {
                    return Err(Error::SwitchTimeout(self.timeout));
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            Ok(())
        };
        // The plan area is the plugin's until it acknowledged the previous generation.
        wait(&|| self.mem.load(wire::H_PLAN_ACK) == self.mem.load(wire::H_PLAN_GEN))?;
        let gen = self.mem.load(wire::H_PLAN_GEN) + 1;
        if gen > u64::from(u32::MAX) {
            return Err(Error::Shm("plan generations exhausted".into()));
        }
        if let Ok(mut g) = self.gens.lock() {
            g.insert(gen as u32, ids);
        }
        wire::write_plans(&self.mem, &self.layout, enc, gen).map_err(Error::Plan)?;
        wait(&|| self.mem.load(wire::H_PLAN_ACK) == gen)?;
        if self.mem.load(wire::H_PLAN_RESULT) != wire::PLAN_ACCEPTED {
            if let Ok(mut g) = self.gens.lock() {
                g.remove(&(gen as u32));
            }
            return Err(Error::Rejected(wire::status(&self.mem).1));
        }
        Ok(gen)
    }

    /// If a record of generation `gen` for `site` was made by a plan set of ours: where
    /// its `comm` field is, if it has one.
    fn lookup(&self, gen: u32, site: u32) -> Option<Option<usize>> {
        self.gens
            .lock()
            .ok()
            .and_then(|g| g.get(&gen).and_then(|ids| ids.get(&site).copied()))
    }
}

/// Keeps the sites of `plans` the plugin can serve (entry and return sites of `module`)
/// and the reasons the others cannot be.
fn plugin_sites(plans: &PlanSet, module: &Path) -> (PlanSet, Vec<String>) {
    let mut keep = PlanSet::default();
    let mut failed = Vec::new();
    for s in &plans.sites {
        if !same_file(&s.module, module) {
            failed.push(format!(
                "site {}: {} is not the kernel {} (the plugin probes kernel sites only)",
                s.id.0,
                s.module.display(),
                module.display()
            ));
        } else if !matches!(s.kind, SiteKind::Entry | SiteKind::Return { .. }) {
            failed.push(format!(
                "site {}: {:?} probes are not supported by the QEMU plugin yet",
                s.id.0, s.kind
            ));
        } else {
            keep.sites.push(s.clone());
        }
    }
    (keep, failed)
}

/// The sites of one generation: id -> index of its appended `comm` field, if any.
type Sites = HashMap<u32, Option<usize>>;

/// Appends `comm` to the entry plan of every site that needs it; returns the plans the
/// plugin gets and where each site's `comm` field is.
fn add_comm(plans: &PlanSet, comm: Option<&FieldPlan>) -> (PlanSet, Sites) {
    let mut out = plans.clone();
    let mut sites = Sites::new();
    for s in &mut out.sites {
        let at = match comm {
            Some(c) if s.needs.comm => {
                s.plan.fields.push(c.clone());
                Some(s.plan.fields.len() - 1)
            }
            _ => None,
        };
        sites.insert(s.id.0, at);
    }
    (out, sites)
}

/// Moves the `comm` field at `at` out of `rec` into `rec.comm` (up to its first NUL).
fn take_comm(rec: &mut Record, at: usize) {
    if at >= rec.fields.len() {
        return;
    }
    if let Ok(b) = rec.field(at) {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        rec.comm = String::from_utf8_lossy(&b[..end]).into_owned();
    }
    rec.fields.remove(at);
}

/// A handle that moves the probes of a running [`PluginBackend`] (usable from another
/// thread while `run` reads the rings).
#[derive(Clone)]
pub struct PlanSwitcher {
    shared: Arc<Shared>,
    module: PathBuf,
}

impl std::fmt::Debug for PlanSwitcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanSwitcher").finish()
    }
}

impl PlanSwitcher {
    /// Replaces the plugin's plan set with `plans` (every site must be one the plugin
    /// can serve), `cr3` giving per-site address-space filters, and waits until the
    /// plugin runs it: returns its generation. Records of the previous set that are
    /// still in the rings are delivered as before; none is made by it afterwards. A set
    /// the plugin refuses leaves the previous one active (`Error::Rejected`).
    pub fn switch(&self, plans: &PlanSet, cr3: &[(SiteId, u64)]) -> Result<u64, Error> {
        plans.verify().map_err(|e| Error::Plan(e.to_string()))?;
        let (keep, failed) = plugin_sites(plans, &self.module);
        if !failed.is_empty() {
            return Err(Error::Plan(failed.join("; ")));
        }
        let (keep, sites) = add_comm(&keep, self.shared.comm.as_ref());
        wire::check_plans(&keep, self.shared.layout.ring_bytes).map_err(Error::Plan)?;
        self.shared
            .switch(&wire::encode_plans_with_cr3(&keep, cr3), sites)
    }

    /// Hands the plugin an already encoded plan set without the host's checks (to show
    /// that the plugin's own checks refuse it); `ids` are the site ids to accept.
    #[doc(hidden)]
    pub fn switch_encoded(&self, enc: &[u8], ids: &[u32]) -> Result<u64, Error> {
        self.shared
            .switch(enc, ids.iter().map(|&id| (id, None)).collect())
    }

    /// The generation the probes run now.
    pub fn active_generation(&self) -> u64 {
        self.shared.mem.load(wire::H_PLAN_ACTIVE)
    }
}

/// The host side of the plugin backend. With [`PluginBackend::new`] it owns the shared
/// file (removed on drop); with [`PluginBackend::attach`] it borrows a VM's control file.
pub struct PluginBackend {
    opts: PluginOptions,
    library: PathBuf,
    path: PathBuf,
    shared: Arc<Shared>,
    given: PlanSet,
    failed: Vec<String>,
    stats: Stats,
    ran: bool,
    keep_seq: bool,
    seq: Vec<(u32, u64, u32)>,
    stalls: u32,
    /// Attached to a VM's control file: leave it (and the VM) as found.
    attached: bool,
    /// Ring counters when this session began (attach: earlier sessions' hits).
    base: Vec<(u64, u64)>,
    base_unringed: u64,
}

impl std::fmt::Debug for PluginBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginBackend")
            .field("path", &self.path)
            .field("library", &self.library)
            .finish()
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Pause between two passes over the rings.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok() && a.exists()
}

/// True if process `pid` exists and is not a zombie.
fn process_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => !st
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The `-plugin` arguments that start a VM with the plugin idle, its control file at
/// `control` (created by the plugin; `snaptap --vm-attach CONTROL` attaches later):
/// `["-plugin", "/path/libqemu_plugin.so,control=CONTROL"]`.
pub fn plugin_args_for(control: &Path) -> Result<Vec<String>, Error> {
    let lib = find_plugin_library().ok_or(Error::NoLibrary)?;
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    Ok(vec![
        "-plugin".to_string(),
        format!("{},control={}", lib.display(), control.display()),
    ])
}

impl PluginBackend {
    /// Verifies `plans`, keeps the entry and return sites of `opts.module` (the others
    /// are reported as failed by `run`), finds the plugin library and writes the shared
    /// file.
    pub fn new(opts: PluginOptions, plans: &PlanSet) -> Result<PluginBackend, Error> {
        plans.verify().map_err(|e| Error::Plan(e.to_string()))?;
        let (keep, failed) = plugin_sites(plans, &opts.module);
        if keep.sites.is_empty() {
            return Err(Error::Plan(format!(
                "no site can run in the QEMU plugin: {}",
                failed.join("; ")
            )));
        }
        let (keep, sites) = add_comm(&keep, opts.comm.as_ref());
        wire::check_plans(&keep, opts.ring_bytes.div_ceil(8) * 8).map_err(Error::Plan)?;
        let enc = wire::encode_plans_with_cr3(&keep, &opts.site_cr3);
        let mut b = PluginBackend::with_encoded_plans(opts, enc)?;
        if let Ok(mut g) = b.shared.gens.lock() {
            g.insert(1, sites);
        }
        b.given = plans.clone();
        b.failed = failed;
        Ok(b)
    }

    /// Writes an already encoded plan set without checking it: lets tests show that the
    /// plugin's own load-time checks refuse what the host would have refused.
    #[doc(hidden)]
    pub fn with_encoded_plans(opts: PluginOptions, enc: Vec<u8>) -> Result<PluginBackend, Error> {
        let library = match &opts.library {
            Some(l) => l.clone(),
            None => find_plugin_library().ok_or(Error::NoLibrary)?,
        };
        if opts.rings == 0 || opts.rings > wire::MAX_RINGS {
            return Err(Error::Shm(format!("bad ring count {}", opts.rings)));
        }
        if opts.ring_bytes < 4096 || opts.ring_bytes > wire::MAX_RING_BYTES {
            return Err(Error::Shm(format!("bad ring size {}", opts.ring_bytes)));
        }
        // Room for the plans and for larger ones a switch may bring.
        let cap = (enc.len() as u64).max(wire::DEFAULT_PLAN_CAP);
        let layout = Layout::new(opts.rings, opts.ring_bytes, cap);
        let path = PathBuf::from(format!(
            "/dev/shm/snaptap-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::Shm(format!("{}: {e}", path.display())))?;
        file.set_len(layout.total)
            .map_err(|e| Error::Shm(format!("{}: {e}", path.display())))?;
        let mem = FileMem {
            file,
            len: layout.total as usize,
        };
        layout.write_header(&mem, opts.cr3.unwrap_or(0));
        wire::write_plans(&mem, &layout, &enc, 1).map_err(Error::Plan)?;
        mem.store(wire::H_ARMED, u64::from(opts.armed_at_load));
        mem.store(wire::H_SESSION, u64::from(std::process::id()));
        let shared = Arc::new(Shared {
            mem,
            layout,
            gens: Mutex::new(HashMap::new()),
            comm: opts.comm.clone(),
            switching: Mutex::new(()),
            timeout: opts.switch_timeout,
            qemu_pid: Mutex::new(None),
        });
        Ok(PluginBackend {
            opts,
            library,
            path,
            shared,
            given: PlanSet::default(),
            failed: Vec::new(),
            stats: Stats::default(),
            ran: false,
            keep_seq: false,
            seq: Vec::new(),
            stalls: 0,
            attached: false,
            base: vec![(0, 0); layout.nrings as usize],
            base_unringed: 0,
        })
    }

    /// Attaches to a running VM whose plugin was loaded with `control=PATH` (idle, or
    /// left idle by an earlier session): claims the file for this session, installs
    /// `plans` as a new generation (waiting until the plugin runs them, or returning its
    /// refusal), with the probes disarmed until `run`. Records left in the rings by an
    /// earlier session are discarded.
    pub fn attach(
        control: &Path,
        opts: PluginOptions,
        plans: &PlanSet,
    ) -> Result<PluginBackend, Error> {
        plans.verify().map_err(|e| Error::Plan(e.to_string()))?;
        let (keep, failed) = plugin_sites(plans, &opts.module);
        if keep.sites.is_empty() {
            return Err(Error::Plan(format!(
                "no site can run in the QEMU plugin: {}",
                failed.join("; ")
            )));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(control)
            .map_err(|e| {
                Error::Shm(format!(
                    "{}: {e} (start QEMU with the arguments `snaptap --vm-plugin-args` prints)",
                    control.display()
                ))
            })?;
        let len = file
            .metadata()
            .map_err(|e| Error::Shm(format!("{}: {e}", control.display())))?
            .len() as usize;
        let mem = FileMem { file, len };
        let layout = Layout::from_header(&mem)
            .map_err(|e| Error::Shm(format!("{}: {e}", control.display())))?;
        match wire::status(&mem) {
            (wire::STATUS_EXITED, _) => return Err(Error::Exited),
            (wire::STATUS_PENDING, _) => {
                return Err(Error::Shm(format!(
                    "{}: the plugin has not loaded (yet)",
                    control.display()
                )))
            }
            _ => {}
        }
        let owner = mem.load(wire::H_SESSION);
        if owner != 0 && owner != u64::from(std::process::id()) && process_alive(owner) {
            return Err(Error::Busy(owner));
        }
        let (keep, sites) = add_comm(&keep, opts.comm.as_ref());
        wire::check_plans(&keep, layout.ring_bytes).map_err(Error::Plan)?;
        mem.store(wire::H_SESSION, u64::from(std::process::id()));
        // An earlier session that died without detaching may have left probes armed.
        mem.store(wire::H_ARMED, 0);
        let qemu_pid = match mem.load(wire::H_QEMU_PID) {
            0 => None,
            p => Some(p as u32),
        };
        let library = opts.library.clone().unwrap_or_default();
        let shared = Arc::new(Shared {
            mem,
            layout,
            gens: Mutex::new(HashMap::new()),
            comm: opts.comm.clone(),
            switching: Mutex::new(()),
            timeout: opts.switch_timeout,
            qemu_pid: Mutex::new(qemu_pid),
        });
        let mut b = PluginBackend {
            opts,
            library,
            path: control.to_path_buf(),
            shared,
            given: plans.clone(),
            failed,
            stats: Stats::default(),
            ran: false,
            keep_seq: false,
            seq: Vec::new(),
            stalls: 0,
            attached: true,
            base: Vec::new(),
            base_unringed: 0,
        };
        let enc = wire::encode_plans_with_cr3(&keep, &b.opts.site_cr3);
        if let Err(e) = b.shared.switch(&enc, sites) {
            b.release();
            return Err(e);
        }
        // Disarmed and re-translated: nothing writes the rings now. What an earlier
        // session left there is not ours; its counters are the baseline.
        let mem = &b.shared.mem;
        for ring in 0..layout.nrings {
            let c = layout.ctrl(ring);
            mem.store(c + wire::R_TAIL, mem.load(c + wire::R_HEAD));
            b.base
                .push((mem.load(c + wire::R_HITS), mem.load(c + wire::R_DROPPED)));
        }
        b.base_unringed = mem.load(wire::H_UNRINGED);
        Ok(b)
    }

    /// Attached: disarms, installs an empty plan set (so the VM runs on untraced) and
    /// gives the control file up for the next session.
    fn release(&mut self) {
        let mem = &self.shared.mem;
        // Once given up, the file may already be another session's: touch nothing.
        if self.attached && mem.load(wire::H_SESSION) == u64::from(std::process::id()) {
            mem.store(wire::H_ARMED, 0);
            if !self.shared.qemu_gone() {
                let _ = self
                    .shared
                    .switch(&wire::encode_plans(&PlanSet::default()), Sites::new());
            }
            mem.store(wire::H_SESSION, 0);
        }
    }

    /// A handle that moves the probes while `run` reads the rings.
    pub fn switcher(&self) -> PlanSwitcher {
        PlanSwitcher {
            shared: self.shared.clone(),
            module: self.opts.module.clone(),
        }
    }

    /// The shared file's path.
    pub fn shm_path(&self) -> &Path {
        &self.path
    }

    /// The plugin library that will be loaded.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The arguments to add to the QEMU command line:
    /// `["-plugin", "/path/libqemu_plugin.so,shm=/dev/shm/snaptap-PID-N"]`.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-plugin".to_string(),
            format!("{},shm={}", self.library.display(), self.path.display()),
        ]
    }

    /// The plugin's status word and message (see `wire::STATUS_*`).
    pub fn plugin_status(&self) -> (u64, String) {
        wire::status(&self.shared.mem)
    }

    /// Sites of the plan set the plugin cannot serve, with the reason (they are reported
    /// as failed by `run`).
    pub fn failed_sites(&self) -> &[String] {
        &self.failed
    }

    /// The QEMU process to watch: if it disappears (even killed, when the plugin's exit
    /// hook cannot run), `run` drains the rings and returns as on a normal QEMU exit.
    pub fn set_qemu_pid(&mut self, pid: u32) {
        if let Ok(mut p) = self.shared.qemu_pid.lock() {
            *p = Some(pid);
        }
    }

    /// Keeps, for every record emitted, its ring, sequence number (the ring's hit count
    /// when it was written: gaps between them are exactly the records dropped) and
    /// plan-set generation.
    pub fn keep_sequence(&mut self, on: bool) {
        self.keep_seq = on;
    }

    /// (ring, sequence number, generation) of every record emitted so far, in emission
    /// order, if [`PluginBackend::keep_sequence`] was set.
    pub fn sequence(&self) -> &[(u32, u64, u32)] {
        &self.seq
    }

    /// Counters of the last run.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Waits until the plugin has loaded the plans: `Ok` once it accepted them, the
    /// plugin's message if it rejected them.
    pub fn wait_loaded(&self, stop: &StopToken) -> Result<(), Error> {
        let t0 = Instant::now();
        loop {
            let (st, msg) = wire::status(&self.shared.mem);
            match st {
                wire::STATUS_READY => return Ok(()),
                wire::STATUS_REJECTED => return Err(Error::Rejected(msg)),
                wire::STATUS_EXITED => return Err(Error::Exited),
                _ => {}
            }
            if t0.elapsed() > self.opts.load_timeout || stop.is_requested() {
                return Err(Error::NotLoaded(self.opts.load_timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the plugin, arms the probes and emits records until `stop` is requested
    /// or QEMU exits (then `Event::Warning("QEMU exited")` and `Event::TargetEnded` with
    /// pid 0 follow the records); then disarms (attached: also installs an empty plan
    /// set and gives the VM up), drains the rings and returns. `plans` must be the set
    /// given to [`PluginBackend::new`]. Ring drops are reported as one `Event::Warning`
    /// and in [`PluginBackend::stats`].
    pub fn run(
        &mut self,
        plans: &PlanSet,
        tx: &EventSender,
        stop: &StopToken,
    ) -> Result<RunSummary, Error> {
        if self.ran {
            return Err(Error::Usage("the plugin backend has already run".into()));
        }
        if *plans != self.given {
            return Err(Error::Usage(
                "run() needs the plan set given to PluginBackend::new".into(),
            ));
        }
        self.ran = true;
        self.wait_loaded(stop)?;
        for f in &self.failed {
            tx.control(Event::Warning(f.clone()));
        }
        let n = self.shared.layout.nrings;
        let mut delivered = vec![0u64; n as usize];
        let mut buf = Vec::new();
        self.shared.mem.store(wire::H_ARMED, 1);
        let mut gone = false;
        let result = (|| loop {
            gone = self.shared.qemu_gone();
            self.poll(tx, &mut delivered, &mut buf)?;
            if stop.is_requested() || gone {
                return Ok(());
            }
            // Sleep between passes even when records flow: batches of a few hundred
            // records per pass leave the CPU to QEMU's vCPU thread (2 ms of records at
            // 500k hits/s is about 100 KiB, far below a ring).
            std::thread::sleep(POLL_INTERVAL);
        })();
        self.shared.mem.store(wire::H_ARMED, 0);
        result?;
        // A callback that saw `armed` just before it was cleared may still be writing:
        // drain until every ring's hits are accounted for (or give up after a second).
        let t0 = Instant::now();
        loop {
            self.poll(tx, &mut delivered, &mut buf)?;
            let st = self.collect(&delivered);
            let balanced = st
                .per_ring
                .iter()
                .all(|r| r.hits == r.delivered + r.dropped);
            self.stats = st;
            if balanced || t0.elapsed() > Duration::from_secs(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.attached && !gone {
            self.release();
        }
        if gone {
            tx.control(Event::Warning("QEMU exited".into()));
            tx.control(Event::TargetEnded {
                pid: 0,
                how: backend::TargetEnd::Exited(0),
            });
        }
        if self.stats.dropped > 0 {
            tx.control(Event::Warning(format!(
                "the QEMU plugin dropped {} of {} records (rings full)",
                self.stats.dropped, self.stats.hits
            )));
        }
        Ok(RunSummary {
            hits: self.stats.hits,
            failed_sites: self.failed.clone(),
        })
    }

    /// Reads every ring once; returns the number of records emitted. A record that
    /// cannot be decoded is retried on later polls (its bytes may not all be visible
    /// yet); the run fails only if it stays bad for `STALL_LIMIT` polls.
    fn poll(
        &mut self,
        tx: &EventSender,
        delivered: &mut [u64],
        buf: &mut Vec<u8>,
    ) -> Result<u64, Error> {
        const STALL_LIMIT: u32 = 500;
        let mut total = 0;
        // The generations known when this pass began, read without the lock; a record
        // of a generation installed meanwhile is looked up under it.
        let known = self
            .shared
            .gens
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        for ring in 0..self.shared.layout.nrings {
            let keep = self.keep_seq;
            let seq = &mut self.seq;
            let shared = &self.shared;
            let known = &known;
            let mut stale = 0u64;
            let res = wire::consume(&shared.mem, &shared.layout, ring, buf, &mut |b| {
                match wire::decode_record(b, 0, ring + 1, ring) {
                    Some(mut rec) => {
                        let gen = wire::record_gen(b);
                        let site = rec.site.0;
                        let ours = known
                            .get(&gen)
                            .and_then(|ids| ids.get(&site).copied())
                            .or_else(|| shared.lookup(gen, site));
                        let Some(comm_at) = ours else {
                            stale += 1;
                            return true;
                        };
                        if let Some(at) = comm_at {
                            take_comm(&mut rec, at);
                        }
                        if keep {
                            seq.push((ring, wire::record_seq(b), gen));
                        }
                        tx.record(rec);
                        true
                    }
                    None => false,
                }
            });
            let got = match res {
                Ok(n) => {
                    self.stalls = 0;
                    n
                }
                Err((n, why)) => {
                    self.stalls += 1;
                    if self.stalls > STALL_LIMIT {
                        return Err(Error::Ring(why));
                    }
                    n
                }
            };
            // Stale records count as consumed (the balance check needs them) but not
            // as delivered.
            self.stats.stale += stale;
            delivered[ring as usize] += got;
            total += got - stale.min(got);
        }
        Ok(total)
    }

    fn collect(&self, delivered: &[u64]) -> Stats {
        let mem = &self.shared.mem;
        let mut st = Stats {
            instrumented: mem.load(wire::H_INSTRUMENTED),
            stale: self.stats.stale,
            ..Stats::default()
        };
        for ring in 0..self.shared.layout.nrings {
            let c = self.shared.layout.ctrl(ring);
            let (h0, d0) = self.base.get(ring as usize).copied().unwrap_or((0, 0));
            let r = wire::RingCounters {
                hits: mem.load(c + wire::R_HITS).wrapping_sub(h0),
                dropped: mem.load(c + wire::R_DROPPED).wrapping_sub(d0),
                delivered: delivered[ring as usize],
            };
            st.hits += r.hits;
            st.dropped += r.dropped;
            st.delivered += r.delivered;
            st.per_ring.push(r);
        }
        st.delivered -= st.stale.min(st.delivered);
        let unringed = mem.load(wire::H_UNRINGED).wrapping_sub(self.base_unringed);
        st.hits += unringed;
        st.dropped += unringed;
        st
    }
}

impl Drop for PluginBackend {
    fn drop(&mut self) {
        if self.attached {
            self.release();
        } else {
            self.shared.mem.store(wire::H_ARMED, 0);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Finds `libqemu_plugin.so`: `$SNAPTAP_QEMU_PLUGIN`, next to the running executable (or
/// its parent directory, for test binaries in `deps/`), then `$CARGO_TARGET_DIR` and the
/// workspace's `target/`, `debug` before `release`.
pub fn find_plugin_library() -> Option<PathBuf> {
    const NAME: &str = "libqemu_plugin.so";
    if let Some(p) = std::env::var_os("SNAPTAP_QEMU_PLUGIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(p) = d.parent() {
                dirs.push(p.to_path_buf());
            }
        }
    }
    let mut targets = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.push(PathBuf::from(t));
    }
    targets.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    for t in targets {
        dirs.push(t.join("debug"));
        dirs.push(t.join("release"));
    }
    dirs.into_iter().map(|d| d.join(NAME)).find(|p| p.is_file())
}

/// Checks that a QEMU command line can run the plugin: its binary reports version 10 or
/// later and the command does not ask for KVM (plugins run under TCG only; under KVM
/// they load and never fire). `Err` says why, for a fallback to the gdbstub.
pub fn check_qemu(cmd: &str) -> Result<(), String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let bin = words
        .iter()
        .find(|w| !w.contains('='))
        .ok_or("empty QEMU command")?
        .trim_matches(|c| c == '\'' || c == '"');
    if words
        .iter()
        .any(|w| *w == "-enable-kvm" || w.contains("accel=kvm") || w.trim_matches('\'') == "kvm")
    {
        return Err("the QEMU command uses KVM; the TCG plugin only runs under TCG".into());
    }
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{bin} --version: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let major = text
        .split("QEMU emulator version ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("cannot read the version of {bin}: {}", text.trim()))?;
    if major < 10 {
        return Err(format!(
            "{bin} is QEMU {major}; the plugin needs QEMU 10 (scripts/install-qemu10.sh)"
        ));
    }
    Ok(())
}
