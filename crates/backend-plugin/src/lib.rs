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
//! Kernel sites only: the module is the kernel ELF, whose link-time addresses are guest
//! virtual addresses. No `unsafe` here: the host reads and writes the shared file with
//! `pread`/`pwrite`, which are coherent with the plugin's mapping of the same tmpfs pages.
#![forbid(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backend::{Event, EventSender, RunSummary, StopToken};
use capture_plan::{PlanSet, SiteKind};

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
    /// instruction; otherwise `run` arms them.
    pub armed_at_load: bool,
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

/// The host side of the plugin backend, owning the shared file (removed on drop).
pub struct PluginBackend {
    opts: PluginOptions,
    library: PathBuf,
    path: PathBuf,
    mem: FileMem,
    layout: Layout,
    given: PlanSet,
    failed: Vec<String>,
    stats: Stats,
    ran: bool,
    keep_seq: bool,
    seq: Vec<(u32, u64)>,
    stalls: u32,
    qemu_pid: Option<u32>,
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
const POLL_INTERVAL: Duration = Duration::from_millis(2);

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok() && a.exists()
}

impl PluginBackend {
    /// Verifies `plans`, keeps the entry and return sites of `opts.module` (the others
    /// are reported as failed by `run`), finds the plugin library and writes the shared
    /// file.
    pub fn new(opts: PluginOptions, plans: &PlanSet) -> Result<PluginBackend, Error> {
        plans.verify().map_err(|e| Error::Plan(e.to_string()))?;
        let mut keep = PlanSet::default();
        let mut failed = Vec::new();
        for s in &plans.sites {
            if !same_file(&s.module, &opts.module) {
                failed.push(format!(
                    "site {}: {} is not the kernel {} (the plugin probes kernel sites only)",
                    s.id.0,
                    s.module.display(),
                    opts.module.display()
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
        if keep.sites.is_empty() {
            return Err(Error::Plan(format!(
                "no site can run in the QEMU plugin: {}",
                failed.join("; ")
            )));
        }
        wire::check_plans(&keep, opts.ring_bytes.div_ceil(8) * 8).map_err(Error::Plan)?;
        let mut b = PluginBackend::with_encoded_plans(opts, wire::encode_plans(&keep))?;
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
        let layout = Layout::new(opts.rings, opts.ring_bytes, enc.len() as u64);
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
        mem.write(layout.plan_off as usize, &enc);
        layout.write_header(&mem, opts.cr3.unwrap_or(0));
        mem.store(wire::H_ARMED, u64::from(opts.armed_at_load));
        Ok(PluginBackend {
            opts,
            library,
            path,
            mem,
            layout,
            given: PlanSet::default(),
            failed: Vec::new(),
            stats: Stats::default(),
            ran: false,
            keep_seq: false,
            seq: Vec::new(),
            stalls: 0,
            qemu_pid: None,
        })
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
        wire::status(&self.mem)
    }

    /// Sites of the plan set the plugin cannot serve, with the reason (they are reported
    /// as failed by `run`).
    pub fn failed_sites(&self) -> &[String] {
        &self.failed
    }

    /// The QEMU process to watch: if it disappears (even killed, when the plugin's exit
    /// hook cannot run), `run` drains the rings and returns as on a normal QEMU exit.
    pub fn set_qemu_pid(&mut self, pid: u32) {
        self.qemu_pid = Some(pid);
    }

    fn qemu_gone(&self) -> bool {
        if wire::status(&self.mem).0 == wire::STATUS_EXITED {
            return true;
        }
        match self.qemu_pid {
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

    /// Keeps, for every record emitted, its ring and sequence number (the ring's hit
    /// count when it was written): gaps between them are exactly the records dropped.
    pub fn keep_sequence(&mut self, on: bool) {
        self.keep_seq = on;
    }

    /// (ring, sequence number) of every record emitted so far, in emission order, if
    /// [`PluginBackend::keep_sequence`] was set.
    pub fn sequence(&self) -> &[(u32, u64)] {
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
            let (st, msg) = wire::status(&self.mem);
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
    /// pid 0 follow the records); then disarms, drains the rings and returns. `plans` must be the set
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
        let n = self.layout.nrings;
        let mut delivered = vec![0u64; n as usize];
        let mut buf = Vec::new();
        self.mem.store(wire::H_ARMED, 1);
        let mut gone = false;
        let result = (|| loop {
            gone = self.qemu_gone();
            self.poll(tx, &mut delivered, &mut buf)?;
            if stop.is_requested() || gone {
                return Ok(());
            }
            // Sleep between passes even when records flow: batches of a few hundred
            // records per pass leave the CPU to QEMU's vCPU thread (2 ms of records at
            // 500k hits/s is about 100 KiB, far below a ring).
            std::thread::sleep(POLL_INTERVAL);
        })();
        self.mem.store(wire::H_ARMED, 0);
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
        for ring in 0..self.layout.nrings {
            let keep = self.keep_seq;
            let seq = &mut self.seq;
            let res =
                wire::consume(
                    &self.mem,
                    &self.layout,
                    ring,
                    buf,
                    &mut |b| match wire::decode_record(b, 0, ring + 1, ring) {
                        Some(rec) => {
                            if keep {
                                seq.push((ring, wire::record_seq(b)));
                            }
                            tx.record(rec);
                            true
                        }
                        None => false,
                    },
                );
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
            delivered[ring as usize] += got;
            total += got;
        }
        Ok(total)
    }

    fn collect(&self, delivered: &[u64]) -> Stats {
        let mut st = Stats {
            instrumented: self.mem.load(wire::H_INSTRUMENTED),
            ..Stats::default()
        };
        for ring in 0..self.layout.nrings {
            let c = self.layout.ctrl(ring);
            let r = wire::RingCounters {
                hits: self.mem.load(c + wire::R_HITS),
                dropped: self.mem.load(c + wire::R_DROPPED),
                delivered: delivered[ring as usize],
            };
            st.hits += r.hits;
            st.dropped += r.dropped;
            st.delivered += r.delivered;
            st.per_ring.push(r);
        }
        let unringed = self.mem.load(wire::H_UNRINGED);
        st.hits += unringed;
        st.dropped += unringed;
        st
    }
}

impl Drop for PluginBackend {
    fn drop(&mut self) {
        self.mem.store(wire::H_ARMED, 0);
        let _ = std::fs::remove_file(&self.path);
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
