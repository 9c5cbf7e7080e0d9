//! snaptap's in-emulator copier: a QEMU TCG plugin (API v4, QEMU 10) that executes
//! capture plans at kernel probe instructions and writes the records into per-vCPU rings
//! in a shared-memory file that snaptap (`backend-plugin`) reads.
//!
//! Overview: QEMU loads `libqemu_plugin.so,shm=/dev/shm/snaptap-PID-N` (a file snaptap
//! prepared, with the plans of a `--vm` session) or `libqemu_plugin.so,control=PATH` (the
//! plugin creates the file itself, without plans, for `snaptap --vm-attach PATH` later).
//! At load the plugin maps that file, decodes the plan set (`backend_plugin::wire`),
//! checks it (`CapturePlan::verify`, unique ids, entry and return sites only, records fit
//! a ring) and either reports "ready" or rejects it with a message in the file's control
//! area (QEMU then runs on untraced). At translation time it registers an instruction
//! callback only on the probe instructions; at each hit, if snaptap armed the probes
//! (and the `cr3` filters match), it runs [`backend::execute`] — the same plan
//! interpreter as every backend — against the vCPU's registers and guest virtual
//! memory, and appends the record to the vCPU's ring, or counts a drop when the ring is
//! full. It never writes guest state.
//!
//! Moving probes: a control thread watches the plan-set generation word. A new set is
//! checked exactly as at load; a refused one is answered with a message (the active set
//! stays); an accepted one waits as "pending" while a conditional callback on every
//! translation block (an inline compare while nothing is pending) lets the next vCPU
//! call `qemu_plugin_reset`. In its completion callback — all vCPUs out of translated
//! code, the translation cache flushed — the pending set becomes the active one and the
//! generation is acknowledged: a record is made by exactly one generation and says so.
//!
//! Return probes: the entry half runs the entry plan and remembers (return address,
//! `rsp`); a callback on the return address finds the frame (`rsp` 8 higher) and runs
//! the return plan into the same record. Return addresses are found at translation time
//! (a block whose 5 preceding bytes are `call rel32` to a probed function) or, for
//! indirect calls, at the first entry: one `qemu_plugin_reset` re-translates with the
//! new address instrumented (hits during that millisecond are not seen).
//!
//! Layout: this file is the safe logic; `ffi` is the only module with `unsafe` (QEMU's
//! C API, the shared mapping, the exported symbols).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};

use backend::TargetAccess;
use backend_plugin::wire::{self, Layout, SharedMem};
use capture_plan::{DwarfReg, ProbeSite, Record, SiteKind};

mod ffi;

/// Everything decided at load.
struct Plugin {
    mem: ffi::MapMem,
    layout: Layout,
    /// The session-wide `cr3` filter (0 = none).
    cr3: u64,
    /// The file the plugin created itself (`control=PATH`), removed when QEMU exits.
    owned: Option<String>,
}

static PLUGIN: OnceLock<Plugin> = OnceLock::new();

/// The probes at one address.
struct Group {
    /// The probed instruction's guest virtual address.
    addr: u64,
    /// Indices into `Plans::sites`.
    sites: Vec<usize>,
    /// Some site here has a `cr3` filter (the hit then reads `cr3` once).
    any_cr3: bool,
}

/// One plan set as the probes run it. Once active it is never freed: it is replaced only
/// while every vCPU is outside translated code, but a frame of a return probe may still
/// point at it.
struct Plans {
    /// The generation it came with (`H_PLAN_GEN` when snaptap wrote it).
    gen: u32,
    sites: Vec<ProbeSite>,
    /// Per site: only hits whose `cr3` equals this are recorded (0 = every address space).
    cr3: Vec<u64>,
    by_addr: HashMap<u64, usize>,
    groups: Vec<Group>,
    /// Lowest and highest probe address, for a cheap test at translation time.
    lo: u64,
    hi: u64,
    /// Some site is a return probe (translation then also looks for return points).
    returns: bool,
}

impl Plans {
    fn new(gen: u64, sites: Vec<ProbeSite>, cr3: Vec<u64>) -> Plans {
        let mut by_addr: HashMap<u64, usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let g = *by_addr.entry(s.addr.0).or_insert_with(|| {
                groups.push(Group {
                    addr: s.addr.0,
                    sites: Vec::new(),
                    any_cr3: false,
                });
                groups.len() - 1
            });
            groups[g].sites.push(i);
            groups[g].any_cr3 |= cr3.get(i).is_some_and(|&c| c != 0);
        }
        Plans {
            gen: gen as u32,
            lo: by_addr.keys().copied().min().unwrap_or(u64::MAX),
            hi: by_addr.keys().copied().max().unwrap_or(0),
            returns: sites
                .iter()
                .any(|s| matches!(s.kind, SiteKind::Return { .. })),
            sites,
            cr3,
            by_addr,
            groups,
        }
    }
}

/// The active plan set (null before the first one is installed).
static ACTIVE: AtomicPtr<Plans> = AtomicPtr::new(std::ptr::null_mut());

/// A checked plan set waiting for the next reset to become active.
static PENDING: Mutex<Option<Box<Plans>>> = Mutex::new(None);

fn active() -> Option<&'static Plans> {
    ffi::deref_plans(ACTIVE.load(Ordering::Acquire))
}

/// Makes `plans` the active set. Only at load (no vCPU runs yet) or in the completion
/// callback of a reset (every vCPU outside translated code, the cache flushed).
fn activate(plans: Box<Plans>) {
    // Never freed: see `Plans`.
    let p: &'static mut Plans = Box::leak(plans);
    ACTIVE.store(p, Ordering::Release);
}

/// A return probe's entry half, waiting for its function to return.
struct Frame {
    /// The plan set of the entry.
    plans: &'static Plans,
    /// Index into `plans.sites`.
    site: usize,
    /// The ring of the vCPU that entered (for counting the record as dropped).
    vcpu: u32,
    /// The return address read at `[rsp]` on entry.
    ret: u64,
    /// `rsp` on entry: at the return address it is 8 higher.
    rsp: u64,
    /// The record with the entry fields.
    rec: Record,
}

/// Most frames remembered at once; the oldest is dropped (and counted) beyond.
const MAX_FRAMES: usize = 4096;

/// Frames of every vCPU (a kernel thread may return on another vCPU than it entered).
static FRAMES: Mutex<Vec<Frame>> = Mutex::new(Vec::new());

/// Return addresses instrumented or to instrument at their next translation.
static RET_ADDRS: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

fn arg<'a>(args: &'a [String], key: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
}

/// Parses the plugin arguments, maps (or with `control=` creates) the shared file and
/// loads the plans in it. `Ok(true)`: install the callbacks (the plans were accepted, or
/// refused with the message in the file: then probes may still come later through a
/// plan switch); `Ok(false)`: the file's header is unusable (the message says so, QEMU
/// runs on untraced); `Err`: the file itself cannot be used (QEMU reports it and stops).
fn install(target: &str, args: &[String], max_vcpus: u32) -> Result<bool, String> {
    let (mem, owned) = match (arg(args, "shm"), arg(args, "control")) {
        (Some(shm), None) => (ffi::MapMem::open(shm)?, None),
        (None, Some(ctl)) => {
            let rings = match arg(args, "rings") {
                Some(r) => r
                    .parse::<u32>()
                    .map_err(|_| format!("snaptap plugin: bad rings={r}"))?,
                None => max_vcpus.max(1),
            };
            let ring_kib = match arg(args, "ring_kib") {
                Some(r) => r
                    .parse::<u64>()
                    .map_err(|_| format!("snaptap plugin: bad ring_kib={r}"))?,
                None => 4096,
            };
            if rings == 0
                || rings > wire::MAX_RINGS
                || ring_kib < 4
                || ring_kib << 10 > wire::MAX_RING_BYTES
            {
                return Err(format!(
                    "snaptap plugin: rings={rings} ring_kib={ring_kib} out of range"
                ));
            }
            if let Some(pid) = live_owner(ctl) {
                return Err(format!(
                    "snaptap plugin: {ctl} is the control file of a running QEMU (pid {pid})"
                ));
            }
            let lay = Layout::new(rings, ring_kib << 10, wire::DEFAULT_PLAN_CAP);
            let mem = ffi::MapMem::create(ctl, lay.total as usize)?;
            lay.write_header(&mem, 0);
            mem.store(wire::H_PLUGIN_OWNED, 1);
            (mem, Some(ctl.to_string()))
        }
        _ => return Err("snaptap plugin: give exactly one of shm=PATH or control=PATH".into()),
    };
    let layout = match Layout::from_header(&mem) {
        Ok(l) => l,
        Err(e) => {
            wire::set_status(&mem, wire::STATUS_REJECTED, &e);
            return Ok(false);
        }
    };
    mem.store(wire::H_QEMU_PID, u64::from(std::process::id()));
    let gen = mem.load(wire::H_PLAN_GEN);
    let loaded = load_plans(&mem, &layout, target, gen);
    let cr3 = mem.load(wire::H_CR3);
    let p = Plugin {
        mem,
        layout,
        cr3,
        owned,
    };
    if PLUGIN.set(p).is_err() {
        return Err("snaptap plugin: loaded twice".into());
    }
    let Some(p) = PLUGIN.get() else {
        return Err("snaptap plugin: not installed".into());
    };
    match loaded {
        Ok(plans) => {
            let n = plans.sites.len();
            activate(Box::new(plans));
            acknowledge(p, gen, true);
            let msg = if p.owned.is_some() && n == 0 {
                "idle: no probes until snaptap attaches".to_string()
            } else {
                format!("ready: {}", sites_word(n))
            };
            wire::set_status(&p.mem, wire::STATUS_READY, &msg);
        }
        Err(e) => {
            activate(Box::new(Plans::new(gen, Vec::new(), Vec::new())));
            wire::set_status(&p.mem, wire::STATUS_REJECTED, &e);
            acknowledge(p, gen, false);
        }
    }
    Ok(true)
}

/// The pid of another live QEMU whose control file `path` is, if any.
fn live_owner(path: &str) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).ok()?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, wire::H_QEMU_PID as u64).ok()?;
    let pid = u64::from_le_bytes(b);
    // A recycled pid of some other program does not count.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    (pid != 0 && pid != u64::from(std::process::id()) && comm.starts_with("qemu")).then_some(pid)
}

fn sites_word(n: usize) -> String {
    format!("{n} site{}", if n == 1 { "" } else { "s" })
}

/// Tells snaptap that generation `gen` was accepted (and is active) or refused.
fn acknowledge(p: &Plugin, gen: u64, accepted: bool) {
    if accepted {
        p.mem.store(wire::H_PLAN_ACTIVE, gen);
    }
    p.mem.store(
        wire::H_PLAN_RESULT,
        if accepted {
            wire::PLAN_ACCEPTED
        } else {
            wire::PLAN_REJECTED
        },
    );
    p.mem.store(wire::H_PLAN_ACK, gen);
}

/// Reads and checks the plan set in the plan area, as generation `gen`.
fn load_plans(mem: &ffi::MapMem, lay: &Layout, target: &str, gen: u64) -> Result<Plans, String> {
    if target != "x86_64" {
        return Err(format!("the guest is {target}; the plugin supports x86_64"));
    }
    let enc = lay.read_plans(mem)?;
    if enc.is_empty() {
        return Ok(Plans::new(gen, Vec::new(), Vec::new()));
    }
    let (plans, cr3) = wire::decode_plans_with_cr3(&enc)?;
    wire::check_plans(&plans, lay.ring_bytes)?;
    Ok(Plans::new(gen, plans.sites, cr3))
}

/// Control thread: if snaptap published a new generation, checks it; a refused set is
/// answered at once, an accepted one waits for the next reset. Returns true if a reset
/// is wanted.
fn poll_switch(target: &str, seen: &mut u64) -> bool {
    let Some(p) = PLUGIN.get() else { return false };
    let gen = p.mem.load(wire::H_PLAN_GEN);
    if gen == *seen {
        return false;
    }
    *seen = gen;
    match load_plans(&p.mem, &p.layout, target, gen) {
        Ok(plans) => {
            if let Ok(mut pending) = PENDING.lock() {
                *pending = Some(Box::new(plans));
            }
            true
        }
        Err(e) => {
            wire::set_message(&p.mem, &format!("generation {gen}: {e}"));
            acknowledge(p, gen, false);
            false
        }
    }
}

/// The generation the control thread starts from (the one loaded at install).
fn loaded_generation() -> u64 {
    PLUGIN.get().map_or(0, |p| p.mem.load(wire::H_PLAN_ACK))
}

/// A reset completed (every vCPU outside translated code, the cache flushed): a pending
/// plan set becomes the active one; return-probe frames of the old set are counted as
/// dropped (their sites are gone).
fn reset_completed() {
    let Some(p) = PLUGIN.get() else { return };
    let next = PENDING.lock().ok().and_then(|mut g| g.take());
    let Some(next) = next else { return };
    if let Ok(mut frames) = FRAMES.lock() {
        for f in frames.drain(..) {
            wire::count_drop(&p.mem, &p.layout, f.vcpu);
        }
    }
    if let Ok(mut set) = RET_ADDRS.lock() {
        *set = None;
    }
    let (gen, n) = (u64::from(next.gen), next.sites.len());
    activate(next);
    acknowledge(p, gen, true);
    wire::set_status(
        &p.mem,
        wire::STATUS_READY,
        &format!("ready: {} (generation {gen})", sites_word(n)),
    );
}

/// Translation time: the site group to call back for an instruction at `vaddr`, if any.
fn probe_at(vaddr: u64) -> Option<usize> {
    let plans = active()?;
    if vaddr < plans.lo || vaddr > plans.hi {
        return None;
    }
    let g = *plans.by_addr.get(&vaddr)?;
    if let Some(p) = PLUGIN.get() {
        p.mem.fetch_add(wire::H_INSTRUMENTED, 1);
    }
    Some(g)
}

/// The address of site group `g` (the probed instruction).
fn group_addr(g: usize) -> u64 {
    active()
        .and_then(|p| p.groups.get(g))
        .map_or(0, |grp| grp.addr)
}

/// True if some site is a return probe (translation then also looks for return points).
fn has_return_sites() -> bool {
    active().is_some_and(|p| p.returns)
}

/// Entry addresses of the return sites, for recognising `call rel32` to them at
/// translation time.
fn is_return_site_entry(addr: u64) -> bool {
    active().is_some_and(|p| {
        p.by_addr.get(&addr).is_some_and(|&g| {
            p.groups[g]
                .sites
                .iter()
                .any(|&i| matches!(p.sites[i].kind, SiteKind::Return { .. }))
        })
    })
}

/// Translation time: should the instruction at `vaddr` get a return callback? Yes if
/// it is a known return address, or (for the first instruction of a block) if the 5
/// bytes before it, `before`, are a `call rel32` to a return site's function: then it is
/// that call's return address, instrumented before the function first returns there.
fn return_point(vaddr: u64, before: Option<[u8; 5]>) -> bool {
    let Ok(mut set) = RET_ADDRS.lock() else {
        return false;
    };
    let set = set.get_or_insert_with(HashSet::new);
    if set.contains(&vaddr) {
        return true;
    }
    if let Some(b) = before {
        if b[0] == 0xe8 {
            let rel = i32::from_le_bytes([b[1], b[2], b[3], b[4]]) as i64 as u64;
            if is_return_site_entry(vaddr.wrapping_add(rel)) {
                set.insert(vaddr);
                return true;
            }
        }
    }
    false
}

/// snaptap's `armed` word (0 when the plugin has no shared file).
fn armed_word() -> u64 {
    PLUGIN.get().map_or(0, |p| p.mem.load(wire::H_ARMED))
}

/// QEMU is exiting: tell snaptap, and remove a control file the plugin created (a
/// session still attached keeps reading its open file).
fn exiting() {
    if let Some(p) = PLUGIN.get() {
        p.mem.store(wire::H_ARMED, 0);
        wire::set_status(&p.mem, wire::STATUS_EXITED, "QEMU exited");
        if let Some(path) = &p.owned {
            let _ = std::fs::remove_file(path);
        }
    }
}

thread_local! {
    /// The record and encoding buffers of this vCPU thread, reused across hits.
    static SCRATCH: RefCell<(Record, Vec<u8>)> =
        RefCell::new((Record::new(Default::default(), 0, 0, 0, 0), Vec::with_capacity(256)));
}

fn now_ns() -> u64 {
    ffi::realtime_ns()
}

/// Run time: the probe instruction of site group `g` (at `vaddr`) is about to execute on
/// `vcpu`.
fn hit(vcpu: u32, g: usize, vaddr: u64, target: &mut dyn TargetAccess) {
    let Some(p) = PLUGIN.get() else { return };
    if p.mem.load(wire::H_ARMED) != 1 {
        return;
    }
    let Some(plans) = active() else { return };
    let Some(group) = plans.groups.get(g) else {
        return;
    };
    let cr3 = if p.cr3 != 0 || group.any_cr3 {
        target.reg(ffi::CR3)
    } else {
        None
    };
    if p.cr3 != 0 && cr3 != Some(p.cr3) {
        return;
    }
    let time_ns = now_ns();
    for &i in &group.sites {
        let filter = plans.cr3[i];
        if filter != 0 && cr3 != Some(filter) {
            continue;
        }
        let site = &plans.sites[i];
        if vcpu >= p.layout.nrings {
            p.mem.fetch_add(wire::H_UNRINGED, 1);
            continue;
        }
        if let SiteKind::Return { .. } = site.kind {
            entry_half(p, plans, vcpu, i, vaddr, time_ns, target);
            continue;
        }
        SCRATCH.with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return;
            };
            let (rec, enc) = &mut *s;
            rec.site = site.id;
            rec.time_ns = time_ns;
            rec.ip = vaddr;
            rec.fields.clear();
            rec.data.clear();
            backend::execute(&site.plan, target, rec);
            wire::encode_record_gen(rec, plans.gen, enc);
            wire::produce(&p.mem, &p.layout, vcpu, enc);
        });
    }
}

/// The entry of a return site's function: runs the entry plan and remembers the frame.
/// A return address seen for the first time is instrumented by re-translating (one
/// translation-cache flush); calls through `call rel32` were already found at translation.
fn entry_half(
    p: &Plugin,
    plans: &'static Plans,
    vcpu: u32,
    i: usize,
    vaddr: u64,
    time_ns: u64,
    target: &mut dyn TargetAccess,
) {
    let site = &plans.sites[i];
    let mut rec = Record::new(site.id, 0, 0, time_ns, vaddr);
    backend::execute(&site.plan, target, &mut rec);
    let rsp = target.reg(DwarfReg::RSP).unwrap_or(0);
    let mut b = [0u8; 8];
    if rsp == 0 || target.read(rsp, &mut b).is_err() {
        wire::count_drop(&p.mem, &p.layout, vcpu);
        return;
    }
    let ret = u64::from_le_bytes(b);
    let new_addr = match RET_ADDRS.lock() {
        Ok(mut set) => set.get_or_insert_with(HashSet::new).insert(ret),
        Err(_) => false,
    };
    if let Ok(mut frames) = FRAMES.lock() {
        // A frame of the same stack slot is stale (its function never returned
        // normally, e.g. a continuation discarded the stack): replace it.
        if let Some(k) = frames.iter().position(|f| f.rsp == rsp) {
            let old = frames.remove(k);
            wire::count_drop(&p.mem, &p.layout, old.vcpu);
        }
        if frames.len() >= MAX_FRAMES {
            let old = frames.remove(0);
            wire::count_drop(&p.mem, &p.layout, old.vcpu);
        }
        frames.push(Frame {
            plans,
            site: i,
            vcpu,
            ret,
            rsp,
            rec,
        });
    }
    if new_addr {
        ffi::retranslate();
    }
}

/// Run time: the instruction at `vaddr`, a return address, is about to execute.
fn returned(vcpu: u32, vaddr: u64, target: &mut dyn TargetAccess) {
    let Some(p) = PLUGIN.get() else { return };
    if p.mem.load(wire::H_ARMED) != 1 || vcpu >= p.layout.nrings {
        return;
    }
    let Some(rsp) = target.reg(DwarfReg::RSP) else {
        return;
    };
    let frame = match FRAMES.lock() {
        Ok(mut frames) => match frames
            .iter()
            .rposition(|f| f.ret == vaddr && f.rsp.wrapping_add(8) == rsp)
        {
            Some(k) => frames.remove(k),
            None => return,
        },
        Err(_) => return,
    };
    let plans = frame.plans;
    let site = &plans.sites[frame.site];
    let SiteKind::Return { return_plan } = &site.kind else {
        return;
    };
    let mut rec = frame.rec;
    rec.ip = vaddr;
    rec.time_ns = now_ns();
    backend::execute(return_plan, target, &mut rec);
    let mut enc = Vec::new();
    wire::encode_record_gen(&rec, plans.gen, &mut enc);
    // The frame's hit is counted on the ring it is written to.
    wire::produce(&p.mem, &p.layout, vcpu, &mut enc);
}
