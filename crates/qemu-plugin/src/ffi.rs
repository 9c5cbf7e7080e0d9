//! The plugin's only `unsafe` code: the symbols QEMU looks up, the callbacks it calls,
//! register and guest-memory reads through QEMU's plugin API, and the shared mapping.
//!
//! QEMU's API is C: every pointer it hands over is valid for the duration of the
//! callback it is passed to, and the register/memory functions may only be called from
//! a vCPU callback registered with `QEMU_PLUGIN_CB_R_REGS`. The glib functions used to
//! allocate byte arrays are resolved from the QEMU process at load time.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use backend::TargetAccess;
use backend_plugin::wire::SharedMem;
use capture_plan::DwarfReg;
use qemu_plugin_sys::qemu_plugin_reset;
use qemu_plugin_sys::{
    qemu_info_t, qemu_plugin_cb_flags, qemu_plugin_get_registers, qemu_plugin_id_t,
    qemu_plugin_insn_vaddr, qemu_plugin_read_memory_vaddr, qemu_plugin_read_register,
    qemu_plugin_reg_descriptor, qemu_plugin_register, qemu_plugin_register_atexit_cb,
    qemu_plugin_register_vcpu_init_cb, qemu_plugin_register_vcpu_insn_exec_cb,
    qemu_plugin_register_vcpu_tb_trans_cb, qemu_plugin_tb, qemu_plugin_tb_get_insn,
    qemu_plugin_tb_n_insns, GArray, GByteArray, QEMU_PLUGIN_VERSION,
};
use qemu_plugin_sys::{
    qemu_plugin_cond, qemu_plugin_num_vcpus, qemu_plugin_register_vcpu_insn_exec_cond_cb,
    qemu_plugin_register_vcpu_tb_exec_cond_cb, qemu_plugin_scoreboard, qemu_plugin_scoreboard_new,
    qemu_plugin_u64, qemu_plugin_u64_set,
};

extern "C" {
    fn g_byte_array_new() -> *mut GByteArray;
    fn g_array_free(array: *mut GArray, free_segment: c_int) -> *mut c_char;
}

/// The plugin API version this library was built against; QEMU refuses to load a
/// plugin without it.
#[no_mangle]
pub static qemu_plugin_version: c_int = QEMU_PLUGIN_VERSION as c_int;

/// Not a DWARF register: `cr3`, for the address-space filter.
pub(crate) const CR3: DwarfReg = DwarfReg(backend_plugin::wire::CR3_REG);

/// QEMU register names by DWARF number (x86_64 psABI numbering), and `cr3`.
const REG_NAMES: [(u16, &str); 26] = [
    (0, "rax"),
    (1, "rdx"),
    (2, "rcx"),
    (3, "rbx"),
    (4, "rsi"),
    (5, "rdi"),
    (6, "rbp"),
    (7, "rsp"),
    (8, "r8"),
    (9, "r9"),
    (10, "r10"),
    (11, "r11"),
    (12, "r12"),
    (13, "r13"),
    (14, "r14"),
    (15, "r15"),
    (49, "eflags"),
    (50, "es"),
    (51, "cs"),
    (52, "ss"),
    (53, "ds"),
    (54, "fs"),
    (55, "gs"),
    (58, "fs_base"),
    (59, "gs_base"),
    (0x8100, "cr3"),
];

/// The per-vCPU scoreboard (as an integer, so it is `Sync`) of two words: at offset 0
/// the `armed` word the probe callbacks are conditional on (non-zero while snaptap has
/// the probes armed: disarmed probes then cost an inline compare, not a call), at offset
/// 8 the "reset wanted" word the per-block heartbeat is conditional on.
static SB: OnceLock<usize> = OnceLock::new();

/// Offset of the "reset wanted" word in a scoreboard entry.
const SB_RESET: usize = 8;

/// Our plugin id, for re-registering callbacks after a reset.
static PLUGIN_ID: OnceLock<qemu_plugin_id_t> = OnceLock::new();

/// The guest's architecture name, for checking plan sets that arrive later.
static TARGET: OnceLock<String> = OnceLock::new();

/// A reset (re-translation) is under way.
static RESETTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Re-translates everything: QEMU removes this plugin's callbacks, flushes the
/// translation cache and calls `reset_done` with every vCPU outside translated code,
/// which activates a pending plan set and registers the callbacks again. Hits during
/// that window (about a millisecond) are not seen. Only from a vCPU callback: from any
/// other thread QEMU would remove the callbacks while vCPUs run.
pub(crate) fn retranslate() {
    let Some(&id) = PLUGIN_ID.get() else { return };
    if RESETTING.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: called from a vCPU callback with our own plugin id.
    unsafe { qemu_plugin_reset(id, Some(reset_done)) };
}

unsafe extern "C" fn reset_done(id: qemu_plugin_id_t) {
    crate::reset_completed();
    set_all(SB_RESET, 0);
    // SAFETY: re-registering our callbacks with our id after the reset completed.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, Some(tb_trans));
        qemu_plugin_register_atexit_cb(id, Some(at_exit), std::ptr::null_mut());
    }
    RESETTING.store(false, Ordering::Release);
}

/// Wall-clock time in nanoseconds since the epoch (the vDSO's `clock_gettime`, without
/// `SystemTime`'s conversions on the per-hit path).
pub(crate) fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The active plan set behind `ACTIVE`'s pointer.
pub(crate) fn deref_plans(p: *mut crate::Plans) -> Option<&'static crate::Plans> {
    // SAFETY: the pointer is null or comes from `Box::leak` in `activate`, and plan sets
    // are never freed or mutated once published.
    unsafe { p.as_ref() }
}

/// Set at exit: the control thread stops.
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn sb_entry(offset: usize) -> Option<qemu_plugin_u64> {
    SB.get().map(|&sb| qemu_plugin_u64 {
        score: sb as *mut qemu_plugin_scoreboard,
        offset,
    })
}

/// Stores `v` into the scoreboard word at `offset` of every vCPU.
fn set_all(offset: usize, v: u64) {
    let Some(e) = sb_entry(offset) else { return };
    // SAFETY: reads QEMU's vCPU count.
    let n = unsafe { qemu_plugin_num_vcpus() };
    for vcpu in 0..n.max(0) as c_uint {
        // SAFETY: an aligned 8-byte store into the scoreboard entry of an existing vCPU;
        // TCG code only loads it.
        unsafe { qemu_plugin_u64_set(e, vcpu, v) };
    }
}

/// The control thread: every half millisecond, copies snaptap's `armed` word into every
/// vCPU's scoreboard entry when it (or the number of vCPUs) changed, and picks up a new
/// plan-set generation (checked here; if accepted, the heartbeat of the next block a
/// vCPU runs starts the reset that activates it). The callbacks themselves still check
/// the shared word, so hits are counted exactly from the moment snaptap arms or disarms.
fn control_loop() {
    let mut last = (u64::MAX, -1);
    let mut seen = crate::loaded_generation();
    let target = TARGET.get().cloned().unwrap_or_default();
    while !EXITING.load(Ordering::Relaxed) {
        // Writing starts once the vCPUs exist (their registers were looked up), so the
        // scoreboard is not being resized by a vCPU creation meanwhile.
        if REGS.get().is_some() {
            let a = crate::armed_word();
            // SAFETY: reads QEMU's vCPU count.
            let n = unsafe { qemu_plugin_num_vcpus() };
            if (a, n) != last {
                set_all(0, a);
                last = (a, n);
            }
            if !RESETTING.load(Ordering::Acquire) && crate::poll_switch(&target, &mut seen) {
                set_all(SB_RESET, 1);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// QEMU register handles by DWARF number (x86_64 psABI numbering; `cr3` at the last
/// index), found at the first vCPU's initialisation: QEMU numbers registers the same way
/// on every vCPU of a machine. `usize::MAX` marks a register QEMU does not have.
struct RegTable([usize; REG_SLOTS]);

/// Slots: DWARF numbers 0..=59, then `cr3`.
const REG_SLOTS: usize = 61;

fn reg_slot(reg: DwarfReg) -> Option<usize> {
    match reg.0 {
        n @ 0..=59 => Some(n as usize),
        backend_plugin::wire::CR3_REG => Some(60),
        _ => None,
    }
}

static REGS: OnceLock<RegTable> = OnceLock::new();

/// The shared file, mapped read-write into QEMU.
pub(crate) struct MapMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping lives as long as the process (never unmapped) and is only
// accessed through atomics (words) or byte copies into areas owned by one side.
unsafe impl Send for MapMem {}
// SAFETY: as above; concurrent access goes through `AtomicU64` or disjoint areas.
unsafe impl Sync for MapMem {}

impl MapMem {
    /// Maps the whole file at `path` shared, read-write.
    pub(crate) fn open(path: &str) -> Result<MapMem, String> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("snaptap plugin: {path}: {e}"))?;
        let len = f
            .metadata()
            .map_err(|e| format!("snaptap plugin: {path}: {e}"))?
            .len() as usize;
        if len < 4096 {
            return Err(format!("snaptap plugin: {path} is too short ({len} bytes)"));
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of an open file of `len` bytes; the result is
        // checked against MAP_FAILED before use, and the fd may be closed afterwards.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "snaptap plugin: mmap {path}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(MapMem { ptr: p.cast(), len })
    }

    /// Creates `path` afresh with mode 0600 (a stale file of an earlier QEMU is
    /// unlinked first, so a process still mapping it keeps its own pages), sizes it to
    /// `len` bytes and maps it (`control=PATH`: the plugin owns the file).
    pub(crate) fn create(path: &str, len: usize) -> Result<MapMem, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(path);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("snaptap plugin: {path}: {e}"))?;
        f.set_len(len as u64)
            .map_err(|e| format!("snaptap plugin: {path}: {e}"))?;
        drop(f);
        MapMem::open(path)
    }

    fn word(&self, off: usize) -> Option<&AtomicU64> {
        if !off.is_multiple_of(8) || off.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); the memory is
        // shared with snaptap, so it is only ever accessed atomically as a word here.
        Some(unsafe { &*(self.ptr.add(off) as *const AtomicU64) })
    }
}

impl SharedMem for MapMem {
    fn len(&self) -> usize {
        self.len
    }
    fn load(&self, off: usize) -> u64 {
        self.word(off).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn store(&self, off: usize, v: u64) {
        if let Some(w) = self.word(off) {
            w.store(v, Ordering::Release);
        }
    }
    fn fetch_add(&self, off: usize, v: u64) {
        if let Some(w) = self.word(off) {
            w.fetch_add(v, Ordering::AcqRel);
        }
    }
    fn write(&self, off: usize, bytes: &[u8]) {
        if off.checked_add(bytes.len()).is_some_and(|e| e <= self.len) {
            // SAFETY: the destination range is inside the mapping (checked above) and
            // cannot overlap `bytes`, which lives in this process's heap or stack.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(off), bytes.len())
            };
        }
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        if off.checked_add(buf.len()).is_some_and(|e| e <= self.len) {
            // SAFETY: the source range is inside the mapping (checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.add(off), buf.as_mut_ptr(), buf.len())
            };
        } else {
            buf.fill(0);
        }
    }
}

thread_local! {
    /// This vCPU thread's glib byte array for register and memory reads.
    static GBUF: Cell<*mut GByteArray> = const { Cell::new(std::ptr::null_mut()) };
}

fn gbuf() -> *mut GByteArray {
    GBUF.with(|c| {
        if c.get().is_null() {
            // SAFETY: glib's allocator, resolved from QEMU; never freed (one per thread).
            c.set(unsafe { g_byte_array_new() });
        }
        c.get()
    })
}

/// The vCPU being probed, as the plan interpreter sees it. Registers read during one
/// hit are kept, so a plan (or several sites at one address) reading `rdi` three times
/// asks QEMU once.
struct Vcpu {
    pc: u64,
    cached: [(u16, u64); 6],
    ncached: usize,
}

impl Vcpu {
    fn new(pc: u64) -> Vcpu {
        Vcpu {
            pc,
            cached: [(0, 0); 6],
            ncached: 0,
        }
    }

    fn read_register(reg: DwarfReg) -> Option<u64> {
        let handle = REGS.get()?.0[reg_slot(reg)?];
        if handle == usize::MAX {
            return None;
        }
        let buf = gbuf();
        if buf.is_null() {
            return None;
        }
        // SAFETY: called only from the instruction callback registered with
        // QEMU_PLUGIN_CB_R_REGS; `buf` is this thread's valid GByteArray, emptied first
        // because QEMU appends the register's bytes to it.
        let n = unsafe {
            (*buf).len = 0;
            qemu_plugin_read_register(handle as *mut qemu_plugin_register, buf)
        };
        if n <= 0 {
            return None;
        }
        let n = (n as usize).min(8);
        let mut b = [0u8; 8];
        // SAFETY: QEMU wrote `n` (>= the bytes copied) bytes at `data`.
        unsafe {
            if (*buf).len as usize >= n {
                std::ptr::copy_nonoverlapping((*buf).data, b.as_mut_ptr(), n);
            } else {
                return None;
            }
        }
        Some(u64::from_le_bytes(b))
    }
}

impl TargetAccess for Vcpu {
    fn reg(&mut self, reg: DwarfReg) -> Option<u64> {
        if reg == DwarfReg::RIP {
            // At an instruction callback the probed instruction's address is the pc.
            return Some(self.pc);
        }
        if let Some(&(_, v)) = self.cached[..self.ncached].iter().find(|c| c.0 == reg.0) {
            return Some(v);
        }
        let v = Vcpu::read_register(reg)?;
        if self.ncached < self.cached.len() {
            self.cached[self.ncached] = (reg.0, v);
            self.ncached += 1;
        }
        Some(v)
    }

    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), u64> {
        if out.is_empty() {
            return Ok(());
        }
        let buf = gbuf();
        if buf.is_null() {
            return Err(addr);
        }
        // SAFETY: vCPU context (instruction callback); `buf` is a valid GByteArray that
        // QEMU resizes to `out.len()` bytes on success.
        let ok = unsafe { qemu_plugin_read_memory_vaddr(addr, buf, out.len()) };
        // SAFETY: on success `data` holds `len` >= out.len() bytes (checked).
        unsafe {
            if !ok || ((*buf).len as usize) < out.len() {
                return Err(addr);
            }
            std::ptr::copy_nonoverlapping((*buf).data, out.as_mut_ptr(), out.len());
        }
        Ok(())
    }
}

/// QEMU's entry point: parses the arguments, loads the plans, registers the callbacks.
///
/// # Safety
/// Called by QEMU with a valid `info` and `argc` valid C strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: qemu_plugin_id_t,
    info: *const qemu_info_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    let mut args = Vec::new();
    for i in 0..argc.max(0) as usize {
        // SAFETY: QEMU passes `argc` valid NUL-terminated strings.
        let a = unsafe { *argv.add(i) };
        if !a.is_null() {
            // SAFETY: non-null and NUL-terminated (above).
            args.push(unsafe { CStr::from_ptr(a) }.to_string_lossy().into_owned());
        }
    }
    // SAFETY: `info` is valid for this call; `target_name` is a C string or null.
    let target = unsafe {
        if info.is_null() || (*info).target_name.is_null() {
            String::new()
        } else {
            CStr::from_ptr((*info).target_name)
                .to_string_lossy()
                .into_owned()
        }
    };
    // SAFETY: `info` is valid for this call; in system emulation the union holds the
    // vCPU counts.
    let max_vcpus = unsafe {
        if info.is_null() || !(*info).system_emulation {
            1
        } else {
            (*info).__bindgen_anon_1.system.max_vcpus.max(1) as u32
        }
    };
    let _ = TARGET.set(target.clone());
    match crate::install(&target, &args, max_vcpus) {
        Ok(true) => {
            let _ = PLUGIN_ID.set(id);
            // SAFETY: a scoreboard of two u64 per vCPU, owned by QEMU's plugin core.
            let sb = unsafe { qemu_plugin_scoreboard_new(16) };
            if !sb.is_null() {
                let _ = SB.set(sb as usize);
                std::thread::spawn(control_loop);
            }
            // SAFETY: registering callbacks with our plugin id, from the install hook.
            unsafe {
                qemu_plugin_register_vcpu_init_cb(id, Some(vcpu_init));
                qemu_plugin_register_vcpu_tb_trans_cb(id, Some(tb_trans));
                qemu_plugin_register_atexit_cb(id, Some(at_exit), std::ptr::null_mut());
            }
            0
        }
        Ok(false) => 0,
        Err(e) => {
            eprintln!("{e}");
            -1
        }
    }
}

unsafe extern "C" fn vcpu_init(_id: qemu_plugin_id_t, _vcpu: c_uint) {
    if REGS.get().is_some() {
        return;
    }
    // SAFETY: called in vCPU context after its initialisation, as the API requires.
    let arr = unsafe { qemu_plugin_get_registers() };
    if arr.is_null() {
        return;
    }
    let mut found = RegTable([usize::MAX; REG_SLOTS]);
    // SAFETY: `arr` is a GArray of `len` qemu_plugin_reg_descriptor with valid C-string
    // names; we own the array and free it (not the strings) afterwards.
    unsafe {
        let descs = (*arr).data as *const qemu_plugin_reg_descriptor;
        for i in 0..(*arr).len as usize {
            let d = &*descs.add(i);
            if d.name.is_null() {
                continue;
            }
            let name = CStr::from_ptr(d.name).to_string_lossy();
            if let Some(slot) = REG_NAMES
                .iter()
                .find(|(_, r)| *r == name)
                .and_then(|(n, _)| reg_slot(DwarfReg(*n)))
            {
                found.0[slot] = d.handle as usize;
            }
        }
        g_array_free(arr, 1);
    }
    let _ = REGS.set(found);
}

/// The 5 bytes before `vaddr` in guest memory, if readable (translation time).
fn bytes_before(vaddr: u64) -> Option<[u8; 5]> {
    let mut b = [0u8; 5];
    Vcpu::new(vaddr).read(vaddr.checked_sub(5)?, &mut b).ok()?;
    Some(b)
}

unsafe extern "C" fn tb_trans(_id: qemu_plugin_id_t, tb: *mut qemu_plugin_tb) {
    // The heartbeat: while a plan switch waits, the next block any vCPU runs starts the
    // reset; otherwise it costs an inline compare per block.
    if let Some(e) = sb_entry(SB_RESET) {
        // SAFETY: `tb` is valid for this translation callback; the scoreboard entry
        // lives as long as the plugin; no user data.
        unsafe {
            qemu_plugin_register_vcpu_tb_exec_cond_cb(
                tb,
                Some(heartbeat),
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                qemu_plugin_cond::QEMU_PLUGIN_COND_NE,
                e,
                0,
                std::ptr::null_mut(),
            )
        };
    }
    let returns = crate::has_return_sites();
    // SAFETY: `tb` is valid for this translation callback.
    let n = unsafe { qemu_plugin_tb_n_insns(tb) };
    for i in 0..n {
        // SAFETY: `i` < n; the instruction handle is valid during this callback.
        let insn = unsafe { qemu_plugin_tb_get_insn(tb, i) };
        // SAFETY: as above.
        let vaddr = unsafe { qemu_plugin_insn_vaddr(insn) };
        if let Some(g) = crate::probe_at(vaddr) {
            register(insn, Some(on_hit), g);
        }
        if returns {
            let before = if i == 0 { bytes_before(vaddr) } else { None };
            if crate::return_point(vaddr, before) {
                register(insn, Some(on_return), vaddr as usize);
            }
        }
    }
}

/// Registers `cb` on `insn` with `udata` (an integer), conditional on the armed
/// scoreboard word when there is one.
fn register(
    insn: *mut qemu_plugin_sys::qemu_plugin_insn,
    cb: qemu_plugin_sys::qemu_plugin_vcpu_udata_cb_t,
    udata: usize,
) {
    // SAFETY: registering on an instruction handle valid during the translation
    // callback; the user data is an integer, never dereferenced; the scoreboard entry
    // lives as long as the plugin.
    unsafe {
        match sb_entry(0) {
            Some(e) => qemu_plugin_register_vcpu_insn_exec_cond_cb(
                insn,
                cb,
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS,
                qemu_plugin_cond::QEMU_PLUGIN_COND_NE,
                e,
                0,
                udata as *mut c_void,
            ),
            None => qemu_plugin_register_vcpu_insn_exec_cb(
                insn,
                cb,
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS,
                udata as *mut c_void,
            ),
        }
    }
}

unsafe extern "C" fn heartbeat(_vcpu: c_uint, _udata: *mut c_void) {
    retranslate();
}

unsafe extern "C" fn on_return(vcpu: c_uint, udata: *mut c_void) {
    let pc = udata as usize as u64;
    crate::returned(vcpu, pc, &mut Vcpu::new(pc));
}

unsafe extern "C" fn on_hit(vcpu: c_uint, udata: *mut c_void) {
    let g = udata as usize;
    let pc = crate::group_addr(g);
    crate::hit(vcpu, g, pc, &mut Vcpu::new(pc));
}

unsafe extern "C" fn at_exit(_id: qemu_plugin_id_t, _udata: *mut c_void) {
    EXITING.store(true, Ordering::Relaxed);
    crate::exiting();
}
