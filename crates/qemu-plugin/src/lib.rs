//! snaptap's in-emulator copier: a QEMU TCG plugin (API v4, QEMU 10) that executes
//! capture plans at kernel probe instructions and writes the records into per-vCPU rings
//! in a shared-memory file that snaptap (`backend-plugin`) reads.
//!
//! Overview: QEMU loads `libqemu_plugin.so,shm=/dev/shm/snaptap-PID-N`. At load the
//! plugin maps that file, decodes the plan set (`backend_plugin::wire`), checks it
//! (`CapturePlan::verify`, entry and return sites only, records fit a ring) and either
//! reports "ready" or rejects it with a message in the file's control area (QEMU then runs on
//! untraced). At translation time it registers an instruction callback only on the probe
//! instructions; at each hit, if snaptap armed the probes (and the optional `cr3` filter
//! matches), it runs [`backend::execute`] — the same plan interpreter as every backend —
//! against the vCPU's registers and guest virtual memory, and appends the record to the
//! vCPU's ring, or counts a drop when the ring is full. It never writes guest state.
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
use std::sync::{Mutex, OnceLock};

use backend::TargetAccess;
use backend_plugin::wire::{self, Layout, SharedMem};
use capture_plan::{DwarfReg, ProbeSite, Record, SiteKind};

mod ffi;

/// Everything decided at load.
struct Plugin {
    mem: ffi::MapMem,
    layout: Layout,
    sites: Vec<ProbeSite>,
    /// Probe address -> index into `groups`, and the lowest/highest probe address for a
    /// cheap test at translation time.
    by_addr: HashMap<u64, usize>,
    /// Per probe address: its address and the indices into `sites` probed there.
    groups: Vec<(u64, Vec<usize>)>,
    lo: u64,
    hi: u64,
    cr3: u64,
}

static PLUGIN: OnceLock<Plugin> = OnceLock::new();

/// A return probe's entry half, waiting for its function to return.
struct Frame {
    /// Index into `Plugin::sites`.
    site: usize,
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

/// Parses the plugin arguments and loads the plans. `Ok(true)`: probes to instrument;
/// `Ok(false)`: the plans were rejected (the message is in the shared file, QEMU runs on
/// untraced); `Err`: the shared file itself cannot be used (QEMU reports it and stops).
fn install(target: &str, args: &[String]) -> Result<bool, String> {
    let shm = args
        .iter()
        .find_map(|a| a.strip_prefix("shm="))
        .ok_or("snaptap plugin: missing shm=PATH argument")?;
    let mem = ffi::MapMem::open(shm)?;
    let layout = match Layout::from_header(&mem) {
        Ok(l) => l,
        Err(e) => {
            wire::set_status(&mem, wire::STATUS_REJECTED, &e);
            return Ok(false);
        }
    };
    match load_plans(&mem, &layout, target) {
        Ok(sites) => {
            let mut by_addr: HashMap<u64, usize> = HashMap::new();
            let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
            for (i, s) in sites.iter().enumerate() {
                let g = *by_addr.entry(s.addr.0).or_insert_with(|| {
                    groups.push((s.addr.0, Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push(i);
            }
            let lo = by_addr.keys().copied().min().unwrap_or(u64::MAX);
            let hi = by_addr.keys().copied().max().unwrap_or(0);
            let n = sites.len();
            let cr3 = mem.load(wire::H_CR3);
            let p = Plugin {
                mem,
                layout,
                sites,
                by_addr,
                groups,
                lo,
                hi,
                cr3,
            };
            let ok = format!("ready: {n} sites");
            if PLUGIN.set(p).is_err() {
                return Err("snaptap plugin: loaded twice".into());
            }
            if let Some(p) = PLUGIN.get() {
                wire::set_status(&p.mem, wire::STATUS_READY, &ok);
            }
            Ok(true)
        }
        Err(e) => {
            wire::set_status(&mem, wire::STATUS_REJECTED, &e);
            Ok(false)
        }
    }
}

fn load_plans(mem: &ffi::MapMem, lay: &Layout, target: &str) -> Result<Vec<ProbeSite>, String> {
    if target != "x86_64" {
        return Err(format!("the guest is {target}; the plugin supports x86_64"));
    }
    let mut enc = vec![0u8; lay.plan_len as usize];
    mem.read(lay.plan_off as usize, &mut enc);
    let plans = wire::decode_plans(&enc)?;
    wire::check_plans(&plans, lay.ring_bytes)?;
    Ok(plans.sites)
}

/// Translation time: the site group to call back for an instruction at `vaddr`, if any.
fn probe_at(vaddr: u64) -> Option<usize> {
    let p = PLUGIN.get()?;
    if vaddr < p.lo || vaddr > p.hi {
        return None;
    }
    let g = *p.by_addr.get(&vaddr)?;
    p.mem.fetch_add(wire::H_INSTRUMENTED, 1);
    Some(g)
}

/// The address of site group `g` (the probed instruction).
fn group_addr(g: usize) -> u64 {
    PLUGIN
        .get()
        .and_then(|p| p.groups.get(g))
        .map_or(0, |(a, _)| *a)
}

/// True if some site is a return probe (translation then also looks for return points).
fn has_return_sites() -> bool {
    PLUGIN.get().is_some_and(|p| {
        p.sites
            .iter()
            .any(|s| matches!(s.kind, SiteKind::Return { .. }))
    })
}

/// Entry addresses of the return sites, for recognising `call rel32` to them at
/// translation time.
fn is_return_site_entry(addr: u64) -> bool {
    PLUGIN.get().is_some_and(|p| {
        p.by_addr.get(&addr).is_some_and(|&g| {
            p.groups[g]
                .1
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

/// snaptap's `armed` word (0 when the plugin has no plans).
fn armed_word() -> u64 {
    PLUGIN.get().map_or(0, |p| p.mem.load(wire::H_ARMED))
}

/// QEMU is exiting: tell snaptap.
fn exiting() {
    if let Some(p) = PLUGIN.get() {
        p.mem.store(wire::H_ARMED, 0);
        wire::set_status(&p.mem, wire::STATUS_EXITED, "QEMU exited");
    }
}

thread_local! {
    /// The record and encoding buffers of this vCPU thread, reused across hits.
    static SCRATCH: RefCell<(Record, Vec<u8>)> =
        RefCell::new((Record::new(Default::default(), 0, 0, 0, 0), Vec::with_capacity(256)));
}

/// Run time: the probe instruction of site group `g` (at `vaddr`) is about to execute on
/// `vcpu`.
fn hit(vcpu: u32, g: usize, vaddr: u64, target: &mut dyn TargetAccess) {
    let Some(p) = PLUGIN.get() else { return };
    if p.mem.load(wire::H_ARMED) != 1 {
        return;
    }
    if p.cr3 != 0 && target.reg(ffi::CR3) != Some(p.cr3) {
        return;
    }
    let Some((_, group)) = p.groups.get(g) else {
        return;
    };
    let time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    for &i in group {
        let site = &p.sites[i];
        if vcpu >= p.layout.nrings {
            p.mem.fetch_add(wire::H_UNRINGED, 1);
            continue;
        }
        if let SiteKind::Return { .. } = site.kind {
            entry_half(p, vcpu, i, vaddr, time_ns, target);
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
            wire::encode_record(rec, enc);
            wire::produce(&p.mem, &p.layout, vcpu, enc);
        });
    }
}

/// The entry of a return site's function: runs the entry plan and remembers the frame.
/// A return address seen for the first time is instrumented by re-translating (one
/// translation-cache flush); calls through `call rel32` were already found at translation.
fn entry_half(
    p: &Plugin,
    vcpu: u32,
    i: usize,
    vaddr: u64,
    time_ns: u64,
    target: &mut dyn TargetAccess,
) {
    let site = &p.sites[i];
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
            frames.remove(k);
            wire::count_drop(&p.mem, &p.layout, vcpu);
        }
        if frames.len() >= MAX_FRAMES {
            frames.remove(0);
            wire::count_drop(&p.mem, &p.layout, vcpu);
        }
        frames.push(Frame {
            site: i,
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
    let site = &p.sites[frame.site];
    let SiteKind::Return { return_plan } = &site.kind else {
        return;
    };
    let mut rec = frame.rec;
    rec.ip = vaddr;
    rec.time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    backend::execute(return_plan, target, &mut rec);
    let mut enc = Vec::new();
    wire::encode_record(&rec, &mut enc);
    wire::produce(&p.mem, &p.layout, vcpu, &mut enc);
}
