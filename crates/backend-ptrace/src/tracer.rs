//! The tracing state machine: processes, threads, breakpoints, step-over, return
//! probes, fork/exec following and the detach that leaves every target unharmed.
//!
//! Step-over scheme: to execute the instruction under a breakpoint, the original byte is
//! put back and the thread single-steps it. While the byte is out, no other thread that
//! shares the memory may run, or it could execute the probed instruction unseen: every
//! other running thread of that address space is stopped with `PTRACE_INTERRUPT` first
//! (all tracees are seized, so this works everywhere) and resumed after the step. A
//! single-threaded target pays nothing for this. Events that other threads report while
//! we wait for them to stop are queued (`deferred`) and handled afterwards, so no hit is
//! lost; a thread that trapped on a breakpoint removed meanwhile is recognised by the
//! address being in the breakpoint history and rewound.
//!
//! What the backend writes into a target, and nothing else: (1) the `int3` bytes of its
//! breakpoints (probe sites, pending returns, the dynamic linker's `_dl_debug_state`),
//! put back to the original byte at detach and in fork children that are not followed;
//! (2) out-of-line step pads in the unused slack after an executable segment (left in
//! place, see `pad`); (3) USDT semaphores: for each `SiteKind::Semaphore` site, the
//! little-endian `u16` at bias + addr gets one added when the site is installed in an
//! image that maps its module (at start, after exec, when the dynamic linker reports a
//! load), once per address per image, and one taken off at detach (never below zero; a
//! process already gone needs nothing). A followed fork child inherits the raised counter
//! with its copy of memory and is not raised again; an unfollowed one is lowered before
//! it is let go; an exec starts from a fresh image; an unmapped library takes its counter
//! with it. The counter is read, changed and written back while the process may run
//! (at a library load): only another writer of the same counter, such as a second
//! tracer, could race with that. Registers are written only to move a thread (rip into
//! a pad, rewinding onto a removed breakpoint, an emulated `ret`).
//!
//! System call sites: an image that maps the module of any `SyscallEntry` or
//! `SyscallReturn` site (decided with the sites, so again after exec and library loads)
//! has its threads resumed with `PTRACE_SYSCALL`; every other thread keeps `PTRACE_CONT`
//! and pays nothing. With `PTRACE_O_TRACESYSGOOD` a syscall stop is `SIGTRAP | 0x80`, and
//! `PTRACE_GET_SYSCALL_INFO` tells entry from exit. Plans run there with the thread's
//! registers and `DwarfReg::SYSCALL_NR` = `orig_rax`; the record's ip is the address after
//! the `syscall` instruction. Consequences worth knowing: the first record of a spawned
//! or exec'd image is the return of its `execve` (the exec event comes first, then the
//! exit stop); a fork child starts after its fork returned (no return record for it); a
//! blocking call interrupted by our own `PTRACE_INTERRUPT` (while another thread
//! single-steps a probed instruction) exits with `-ERESTART*` and is restarted by the
//! kernel: that exit and the restart's entry are hidden and a `restart_syscall` is
//! reported under the original number, so the call shows once (an interruption by a
//! real signal is reported as the kernel shows it). A thread detached at a syscall stop
//! just goes on with the call.
//!
//! `Event::ModuleMapped { pid, path, bias }` is sent for every executable file mapping of
//! a traced process when first seen: at start, after exec, for a followed fork or vfork
//! child, and whenever the dynamic linker hook fires (it is now always armed, not only
//! when a site waits for a library); once per (pid, path, bias), forgotten at exec and
//! exit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend::{execute, Event, EventSender, RunSummary, StopToken, TargetAccess, TargetEnd};
use capture_plan::{DwarfReg, PlanSet, ProbeSite, Record, SiteId, SiteKind};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

use crate::{elf, pad, procfs, sys, Error, Options};

const SI_KERNEL: i32 = 0x80;
/// `restart_syscall`, which the kernel runs to resume an interrupted sleep.
const SYS_RESTART_SYSCALL: u64 = 219;
/// The stop signal of a system call stop under `PTRACE_O_TRACESYSGOOD`.
const SYSCALL_TRAP: i32 = libc::SIGTRAP | 0x80;
const INT3: u8 = 0xCC;
/// The signal that interrupts our blocking `waitpid` when a stop is requested. Its
/// default action is to be ignored, and we install a do-nothing handler for it.
const WAKE_SIGNAL: i32 = libc::SIGURG;
const WAIT_ALL: i32 = libc::__WALL | libc::__WNOTHREAD;

/// A decoded wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ev {
    /// The thread exited with this code.
    Exited(i32),
    /// The thread was killed by this signal (core dumped?).
    Signaled(i32, bool),
    /// Signal-delivery-stop.
    Signal(i32),
    /// A ptrace event stop: (event, signal).
    Event(i32, i32),
    /// A system call entry or exit stop (`SIGTRAP | 0x80` with `PTRACE_O_TRACESYSGOOD`).
    Syscall,
    /// Anything else (continued).
    Other,
}

/// Decodes a raw `waitpid` status.
pub(crate) fn decode(status: i32) -> Ev {
    if libc::WIFEXITED(status) {
        Ev::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Ev::Signaled(libc::WTERMSIG(status), libc::WCOREDUMP(status))
    } else if libc::WIFSTOPPED(status) {
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xffff;
        if event != 0 {
            Ev::Event(event, sig)
        } else if sig == SYSCALL_TRAP {
            Ev::Syscall
        } else {
            Ev::Signal(sig)
        }
    } else {
        Ev::Other
    }
}

/// True for the kernel-internal "restart me" returns (`-ERESTARTSYS`,
/// `-ERESTARTNOINTR`, `-ERESTARTNOHAND`, `-ERESTART_RESTARTBLOCK`), which a program never
/// sees.
pub(crate) fn is_erestart(rax: u64) -> bool {
    matches!(rax as i64, -512 | -513 | -514 | -516)
}

fn is_stop(status: i32) -> bool {
    libc::WIFSTOPPED(status)
}

fn is_group_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// The name of signal `sig`, such as `SIGSEGV`.
pub(crate) fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("SIG{sig}"),
    }
}

fn trace_options() -> ptrace::Options {
    ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_TRACEEXIT
        | ptrace::Options::PTRACE_O_TRACEVFORKDONE
        // Only matters for threads resumed with PTRACE_SYSCALL: it makes their system
        // call stops distinguishable from a real SIGTRAP.
        | ptrace::Options::PTRACE_O_TRACESYSGOOD
}

fn pid(t: u32) -> Pid {
    Pid::from_raw(t as i32)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The value of DWARF register `n` in `r` (x86_64 numbering).
pub(crate) fn reg_value(r: &libc::user_regs_struct, n: u16) -> Option<u64> {
    Some(match n {
        0 => r.rax,
        1 => r.rdx,
        2 => r.rcx,
        3 => r.rbx,
        4 => r.rsi,
        5 => r.rdi,
        6 => r.rbp,
        7 => r.rsp,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        15 => r.r15,
        16 => r.rip,
        49 => r.eflags,
        50 => r.es,
        51 => r.cs,
        52 => r.ss,
        53 => r.ds,
        54 => r.fs,
        55 => r.gs,
        58 => r.fs_base,
        59 => r.gs_base,
        _ => return None,
    })
}

/// One `int3` we own in an address space.
#[derive(Clone, Debug)]
pub(crate) struct Bp {
    /// The byte the `int3` replaced.
    pub orig: u8,
    /// Entry and return-entry sites at this address.
    pub entry: Vec<SiteId>,
    /// Pending returns (frames in any thread) whose return address is here.
    pub ret_refs: u32,
    /// The dynamic linker's `r_brk` (rescan the maps here).
    pub rbrk: bool,
}

impl Bp {
    fn unused(&self) -> bool {
        self.entry.is_empty() && self.ret_refs == 0 && !self.rbrk
    }
}

enum Use {
    Entry(SiteId),
    Ret,
    Rbrk,
}

/// Reads target memory for a capture plan: `process_vm_readv`, falling back to
/// `/proc/PID/mem` for what it could not read (it refuses some mappings, such as
/// read-protected ones ptrace may still read), or `PTRACE_PEEKDATA` if that file could
/// not be opened; then puts the original bytes back where our own `int3`s are, so a
/// plan never sees them.
pub(crate) fn read_mem(
    tid: u32,
    mem: Option<&File>,
    bps: &BTreeMap<u64, Bp>,
    addr: u64,
    buf: &mut [u8],
    vm_ok: &mut bool,
) -> Result<(), u64> {
    let len = buf.len() as u64;
    if len == 0 {
        return Ok(());
    }
    let Some(end) = addr.checked_add(len) else {
        return Err(addr);
    };
    let mut done = 0usize;
    if *vm_ok {
        let remote = [RemoteIoVec {
            base: addr as usize,
            len: buf.len(),
        }];
        match process_vm_readv(pid(tid), &mut [std::io::IoSliceMut::new(buf)], &remote) {
            Ok(n) => done = n,
            Err(Errno::ENOSYS) | Err(Errno::EPERM) => *vm_ok = false,
            Err(_) => {}
        }
    }
    while done < buf.len() {
        let at = addr + done as u64;
        let n = match mem {
            Some(f) => f.read_at(&mut buf[done..], at).unwrap_or(0),
            // Last resort: word by word (the thread is stopped at a hit).
            None => match ptrace::read(pid(tid), at as ptrace::AddressType) {
                Ok(w) => {
                    let w = (w as u64).to_le_bytes();
                    let n = (buf.len() - done).min(8);
                    buf[done..done + n].copy_from_slice(&w[..n]);
                    n
                }
                Err(_) => 0,
            },
        };
        if n == 0 {
            return Err(at);
        }
        done += n;
    }
    for (a, bp) in bps.range(addr..end) {
        buf[(a - addr) as usize] = bp.orig;
    }
    Ok(())
}

struct Access<'a> {
    tid: u32,
    regs: &'a libc::user_regs_struct,
    mem: Option<&'a File>,
    bps: &'a BTreeMap<u64, Bp>,
    vm_ok: &'a mut bool,
    /// The system call number, at a system call stop only.
    sys_nr: Option<u64>,
    /// Bytes already read at this stop (start, buffer, valid length): see
    /// [`Access::read`]. A fixed buffer: no allocation on the hit path.
    ahead: Option<(u64, [u8; READ_AHEAD as usize], usize)>,
}

/// How far [`Access::read`] reads ahead of a small request, within its page.
const READ_AHEAD: u64 = 256;

impl TargetAccess for Access<'_> {
    fn reg(&mut self, reg: DwarfReg) -> Option<u64> {
        if reg == DwarfReg::SYSCALL_NR {
            return self.sys_nr;
        }
        reg_value(self.regs, reg.0)
    }

    /// Small reads near each other are the rule (`$r->a`, `$r->b`, `$r->c`): the first
    /// reads up to [`READ_AHEAD`] bytes, never past the end of its page (so it fails
    /// only where the exact read would), and later reads inside that range are served
    /// from it. The target is stopped, so the bytes cannot change meanwhile. Each
    /// `process_vm_readv` saved is a syscall and a ptrace access check per field.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        let len = buf.len() as u64;
        if let Some((start, bytes, n)) = &self.ahead {
            if addr >= *start
                && addr
                    .checked_add(len)
                    .is_some_and(|e| e <= start + *n as u64)
            {
                let o = (addr - start) as usize;
                buf.copy_from_slice(&bytes[o..o + buf.len()]);
                return Ok(());
            }
        }
        let page_end = (addr | 0xfff).wrapping_add(1);
        let ahead = READ_AHEAD.min(page_end.wrapping_sub(addr));
        if len <= ahead && page_end > addr {
            let mut bytes = [0u8; READ_AHEAD as usize];
            let n = ahead as usize;
            if read_mem(
                self.tid,
                self.mem,
                self.bps,
                addr,
                &mut bytes[..n],
                self.vm_ok,
            )
            .is_ok()
            {
                buf.copy_from_slice(&bytes[..buf.len()]);
                self.ahead = Some((addr, bytes, n));
                return Ok(());
            }
        }
        read_mem(self.tid, self.mem, self.bps, addr, buf, self.vm_ok)
    }
}

/// Identifies one mapping (start address, inode) across rescans of the maps.
type MapId = (u64, u64);

/// One address space we trace (a process; vfork children share their parent's).
pub(crate) struct Proc {
    mem: Option<File>,
    exe: PathBuf,
    bps: BTreeMap<u64, Bp>,
    /// Every address we ever put an `int3` at in this image, with the original byte.
    history: BTreeMap<u64, u8>,
    /// Sites installed (or given up on) in this image: site -> (module, address).
    installed: HashMap<SiteId, (PathBuf, Option<u64>)>,
    rbrk_done: bool,
    /// Out-of-line pads by breakpoint address (`None`: single-step there instead),
    /// with the identity (start, inode) of the mapping that holds the pad.
    pads: HashMap<u64, Option<(u64, MapId)>>,
    /// Next free byte of the slack after each executable segment, by slack start.
    slack: HashMap<u64, (u64, MapId)>,
    /// Syscall entry sites whose module this image maps (it is then resumed with
    /// `PTRACE_SYSCALL`).
    sys_entry: Vec<SiteId>,
    /// Syscall return sites whose module this image maps.
    sys_exit: Vec<SiteId>,
    /// USDT semaphores (runtime addresses) we added one to in this image.
    pub(crate) sems: BTreeSet<u64>,
}

impl Proc {
    pub(crate) fn open(p: u32) -> Proc {
        Proc {
            mem: open_mem(p),
            exe: std::fs::read_link(format!("/proc/{p}/exe")).unwrap_or_default(),
            bps: BTreeMap::new(),
            history: BTreeMap::new(),
            installed: HashMap::new(),
            rbrk_done: false,
            pads: HashMap::new(),
            slack: HashMap::new(),
            sys_entry: Vec::new(),
            sys_exit: Vec::new(),
            sems: BTreeSet::new(),
        }
    }

    /// True if threads of this image stop at system calls.
    fn traces_syscalls(&self) -> bool {
        !self.sys_entry.is_empty() || !self.sys_exit.is_empty()
    }

    pub(crate) fn read_u16(&self, addr: u64) -> Option<u16> {
        let mut b = [0u8; 2];
        self.mem.as_ref()?.read_exact_at(&mut b, addr).ok()?;
        Some(u16::from_le_bytes(b))
    }

    /// Adds one to the USDT semaphore at `addr` (once per address per image).
    pub(crate) fn sem_up(&mut self, addr: u64) -> Result<(), String> {
        if self.sems.contains(&addr) {
            return Ok(());
        }
        let v = self
            .read_u16(addr)
            .ok_or_else(|| format!("cannot read the semaphore at {addr:#x}"))?;
        // A counter at its maximum cannot take one more without reading as 0 (off).
        let nv = v
            .checked_add(1)
            .ok_or_else(|| format!("the semaphore at {addr:#x} is saturated"))?;
        self.poke_bytes(addr, &nv.to_le_bytes())
            .map_err(|e| format!("cannot write the semaphore at {addr:#x}: {e}"))?;
        self.sems.insert(addr);
        Ok(())
    }

    /// Takes our one off every semaphore we raised, never below zero; a process that
    /// is gone (its memory file no longer readable) needs nothing.
    pub(crate) fn restore_semaphores(&self) {
        for &addr in &self.sems {
            if let Some(v) = self.read_u16(addr) {
                if v > 0 {
                    let _ = self.poke_bytes(addr, &(v - 1).to_le_bytes());
                }
            }
        }
    }

    fn poke(&self, addr: u64, byte: u8) -> std::io::Result<()> {
        match &self.mem {
            Some(f) => f.write_all_at(&[byte], addr),
            None => Err(std::io::Error::other("no /proc/PID/mem")),
        }
    }

    fn poke_bytes(&self, addr: u64, bytes: &[u8]) -> std::io::Result<()> {
        match &self.mem {
            Some(f) => f.write_all_at(bytes, addr),
            None => Err(std::io::Error::other("no /proc/PID/mem")),
        }
    }

    fn peek(&self, addr: u64) -> Option<u8> {
        let mut b = [0u8; 1];
        self.mem.as_ref()?.read_exact_at(&mut b, addr).ok()?;
        Some(b[0])
    }

    /// Makes memory match the breakpoint table: `int3` where a breakpoint is, the
    /// original byte at every other address we ever used.
    fn sync_memory(&self) {
        for (&addr, &orig) in &self.history {
            let want = if self.bps.contains_key(&addr) {
                INT3
            } else {
                orig
            };
            if self.peek(addr).is_some_and(|b| b != want) {
                let _ = self.poke(addr, want);
            }
        }
    }

    /// Removes every `int3` of ours from memory (the table is kept for rewinding).
    fn clean_memory(&self) {
        for (&addr, &orig) in &self.history {
            if self.peek(addr) == Some(INT3) && orig != INT3 {
                let _ = self.poke(addr, orig);
            }
        }
    }
}

fn open_mem(p: u32) -> Option<File> {
    File::options()
        .read(true)
        .write(true)
        .open(format!("/proc/{p}/mem"))
        .ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TState {
    /// Announced by its parent's event, initial stop not handled yet (it is stopped or
    /// about to stop; it has run no user code).
    New,
    Running,
    /// In a ptrace-stop we know of.
    Stopped,
    /// Group-stopped, resumed with `PTRACE_LISTEN`.
    Listening,
    /// Past its `PTRACE_EVENT_EXIT` stop: runs no more user code.
    Exiting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    None,
    /// A fork child with its own copy of its parent's memory.
    Fork,
    /// A vfork child running in its parent's memory until it execs.
    Vfork,
}

struct Frame {
    site: SiteId,
    entry_rsp: u64,
    ret: u64,
    rec: Record,
}

struct Thread {
    /// The thread group (process) id records carry.
    pid: u32,
    /// The key of the address space (`Proc`) it runs in.
    mem: u32,
    state: TState,
    /// Raw status of the stop it is in, while `Stopped`.
    last: Option<i32>,
    /// Resume an interrupted thread with `PTRACE_LISTEN` (it was group-stopped).
    relisten: bool,
    frames: Vec<Frame>,
    /// Records are emitted for this thread.
    emit: bool,
    setup: Setup,
    /// Blocked in vfork until its child execs or exits (it cannot be interrupted then,
    /// and reports `PTRACE_EVENT_VFORK_DONE` before it runs user code again).
    vfork_wait: bool,
    /// We sent it `PTRACE_INTERRUPT` (to hold it during a step) and its interrupt stop
    /// has not been seen yet: a blocking call it was in returns `-ERESTART*` because of
    /// us, and the kernel restarts it.
    held: bool,
    /// The number of a call whose interrupted exit we hid: its restart's entry is hidden.
    hidden_restart: Option<u64>,
    /// The call in flight is a restart (`restart_syscall`) of this one: its exit is
    /// reported under this number.
    restart_of: Option<u64>,
    /// Its `ThreadEnd` records were emitted (at its exit stop), so its disappearance
    /// emits none.
    end_sent: bool,
}

impl Thread {
    fn new(pid: u32, mem: u32, state: TState, emit: bool, setup: Setup) -> Thread {
        Thread {
            pid,
            mem,
            state,
            last: None,
            relisten: false,
            frames: Vec::new(),
            emit,
            setup,
            vfork_wait: false,
            held: false,
            hidden_restart: None,
            restart_of: None,
            end_sent: false,
        }
    }
}

/// Lets a stop request interrupt the tracer thread's blocking `waitpid`.
struct WakeShared {
    target: Mutex<Option<libc::pthread_t>>,
    acked: AtomicBool,
}

struct WakeGuard(Arc<WakeShared>);

impl Drop for WakeGuard {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.target.lock() {
            *g = None;
        }
    }
}

fn install_waker(stop: &StopToken) -> WakeGuard {
    let _ = sys::install_wake_handler(WAKE_SIGNAL);
    let shared = Arc::new(WakeShared {
        target: Mutex::new(Some(sys::pthread_self())),
        acked: AtomicBool::new(false),
    });
    let s = shared.clone();
    // A signal sent just before the tracer blocks in waitpid would be lost, so a helper
    // thread repeats it until the tracer acknowledges the stop or leaves `run`. It only
    // signals while holding the lock and while `target` is set, so it never signals a
    // thread that has left `run`.
    stop.set_waker(Box::new(move || {
        let s = s.clone();
        let kick = move || {
            for _ in 0..2000 {
                if s.acked.load(Ordering::SeqCst) {
                    break;
                }
                match s.target.lock() {
                    Ok(g) => match *g {
                        Some(t) => {
                            let _ = sys::pthread_kill(t, WAKE_SIGNAL);
                        }
                        None => break,
                    },
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let _ = std::thread::Builder::new()
            .name("ptrace-wake".into())
            .spawn(kick);
    }));
    WakeGuard(shared)
}

enum Next {
    Got(u32, i32),
    Interrupted,
    NoChildren,
}

/// All the tracer's state.
pub(crate) struct Core {
    opts: Options,
    main_pid: u32,
    /// When the last event arrived, and whether the next wait should first spin: see
    /// [`Core::next_event`].
    last_event: Option<std::time::Instant>,
    spin: bool,
    procs: HashMap<u32, Proc>,
    threads: HashMap<u32, Thread>,
    /// Wait statuses received while waiting for something else, handled next.
    deferred: VecDeque<(u32, i32)>,
    /// Initial stops of tasks whose parent's fork/clone event has not been seen yet.
    unclaimed: HashMap<u32, i32>,
    /// Threads stopped by `new`, resumed when `run` starts.
    initial: Vec<u32>,
    comms: HashMap<u32, String>,
    /// `(ppid, cpu)` of process leaders, read at their exit stop for end records.
    end_ctx: HashMap<u32, (u32, u32)>,
    images: HashMap<PathBuf, Option<elf::Image>>,
    ids: HashMap<PathBuf, Option<(u64, u64)>>,
    plans: Arc<PlanSet>,
    tx: Option<EventSender>,
    hits: u64,
    failed: Vec<String>,
    ever_installed: HashSet<SiteId>,
    warned: HashSet<String>,
    main_ended: bool,
    ran: bool,
    detached: bool,
    vm_ok: bool,
    no_pads: bool,
    /// The plan set has system call sites: only then is any thread resumed with
    /// `PTRACE_SYSCALL`.
    any_sys: bool,
    /// `(pid, path, bias)` of the executable mappings already announced.
    announced: HashSet<(u32, PathBuf, u64)>,
    /// The thread that made the tracees: the only one ptrace lets drive them.
    tracer_tid: i32,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Finds `prog` the way `execvp` would.
fn resolve_program(prog: &str) -> Result<PathBuf, Error> {
    let not_found = || Error::Exec {
        program: prog.to_string(),
        reason: Errno::ENOENT.desc().to_string(),
    };
    if prog.is_empty() {
        return Err(not_found());
    }
    if prog.contains('/') {
        return Ok(PathBuf::from(prog));
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(prog);
        if let Ok(md) = std::fs::metadata(&cand) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(not_found())
}

fn wait_for(tid: u32) -> Result<i32, Errno> {
    loop {
        match sys::wait_raw(tid as i32, libc::__WALL) {
            Ok((_, st)) => return Ok(st),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Core {
    fn empty(opts: Options, main_pid: u32) -> Core {
        Core {
            opts,
            main_pid,
            last_event: None,
            spin: false,
            procs: HashMap::new(),
            threads: HashMap::new(),
            deferred: VecDeque::new(),
            unclaimed: HashMap::new(),
            initial: Vec::new(),
            comms: HashMap::new(),
            end_ctx: HashMap::new(),
            images: HashMap::new(),
            ids: HashMap::new(),
            plans: Arc::new(PlanSet::default()),
            tx: None,
            hits: 0,
            failed: Vec::new(),
            ever_installed: HashSet::new(),
            warned: HashSet::new(),
            main_ended: false,
            ran: false,
            detached: false,
            vm_ok: true,
            no_pads: false,
            any_sys: false,
            announced: HashSet::new(),
            tracer_tid: nix::unistd::gettid().as_raw(),
        }
    }

    pub(crate) fn force_single_step(&mut self, on: bool) {
        self.no_pads = on;
    }

    pub(crate) fn main_pid(&self) -> u32 {
        self.main_pid
    }

    /// Forks and execs `argv`; returns with the child stopped right after `execve`.
    pub(crate) fn spawn(argv: &[String], opts: Options) -> Result<Core, Error> {
        let prog = argv.first().ok_or(Error::EmptyCommand)?;
        let path = resolve_program(prog)?;
        let bad_arg = || Error::Exec {
            program: prog.clone(),
            reason: "argument contains a NUL byte".into(),
        };
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| bad_arg())?;
        let cargs = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad_arg())?;
        let flags = nix::fcntl::OFlag::O_CLOEXEC;
        let (sync_r, sync_w) = nix::unistd::pipe2(flags).map_err(|e| Error::sys("pipe", e))?;
        let (err_r, err_w) = nix::unistd::pipe2(flags).map_err(|e| Error::sys("pipe", e))?;
        // The child waits on `sync_r` until it is seized, so that its exec is traced.
        let child = sys::fork_exec_on_signal(
            &cpath,
            &cargs,
            sync_r.as_raw_fd(),
            err_w.as_raw_fd(),
            &[sync_w.as_raw_fd(), err_r.as_raw_fd()],
        )
        .map_err(|e| Error::sys("fork", e))?;
        drop(sync_r);
        drop(err_w);
        let c = child as u32;
        if let Err(e) = ptrace::seize(pid(c), trace_options()) {
            let _ = nix::sys::signal::kill(pid(c), nix::sys::signal::Signal::SIGKILL);
            let _ = wait_for(c);
            return Err(Error::sys(format!("cannot trace child {c}"), e));
        }
        let mut sync_w = File::from(sync_w);
        let _ = sync_w.write_all(&[1]);
        drop(sync_w);
        loop {
            let st = wait_for(c).map_err(|e| Error::sys("waitpid", e))?;
            match decode(st) {
                Ev::Event(libc::PTRACE_EVENT_EXEC, _) => break,
                Ev::Event(_, _) | Ev::Syscall => {
                    let _ = sys::cont(child, 0);
                }
                Ev::Signal(sig) => {
                    let _ = sys::cont(child, sig);
                }
                Ev::Exited(_) | Ev::Signaled(..) => {
                    let mut f = File::from(err_r);
                    let mut b = [0u8; 4];
                    let reason = match f.read_exact(&mut b) {
                        Ok(()) => Errno::from_raw(i32::from_ne_bytes(b)).desc().to_string(),
                        Err(_) => "the process ended before it could execute".to_string(),
                    };
                    return Err(Error::Exec {
                        program: prog.clone(),
                        reason,
                    });
                }
                Ev::Other => {}
            }
        }
        let mut core = Core::empty(opts, c);
        core.procs.insert(c, Proc::open(c));
        let mut t = Thread::new(c, c, TState::Stopped, true, Setup::None);
        t.last = None;
        core.threads.insert(c, t);
        core.initial.push(c);
        Ok(core)
    }

    /// Seizes every thread of `p` and stops them all.
    pub(crate) fn attach(p: u32, opts: Options) -> Result<Core, Error> {
        if p == 0 || !Path::new(&format!("/proc/{p}")).exists() {
            return Err(Error::NoSuchProcess(p));
        }
        if p == std::process::id() {
            return Err(Error::Attach {
                pid: p,
                reason: "a tracer cannot trace itself".into(),
                hint: String::new(),
            });
        }
        match procfs::tgid(p) {
            Some(t) if t == p => {}
            Some(t) => {
                return Err(Error::Attach {
                    pid: p,
                    reason: format!("it is a thread of process {t}"),
                    hint: String::new(),
                })
            }
            None => return Err(Error::NoSuchProcess(p)),
        }
        let mut core = Core::empty(opts, p);
        core.detached = true; // Nothing to undo until the main thread is seized.
        let mut seized: HashSet<u32> = HashSet::new();
        let mut waiting: HashSet<u32> = HashSet::new();
        // Seize the main thread first so that threads it creates meanwhile are
        // auto-attached, then the others, until the task list is stable.
        match ptrace::seize(pid(p), trace_options()) {
            Ok(()) => {
                seized.insert(p);
                let _ = ptrace::interrupt(pid(p));
                waiting.insert(p);
            }
            Err(Errno::ESRCH) => return Err(Error::NoSuchProcess(p)),
            Err(e) => {
                let hint = if e == Errno::EPERM {
                    " (is it already traced? see /proc/sys/kernel/yama/ptrace_scope)".to_string()
                } else {
                    String::new()
                };
                return Err(Error::Attach {
                    pid: p,
                    reason: e.desc().to_string(),
                    hint,
                });
            }
        }
        core.detached = false;
        core.procs.insert(p, Proc::open(p));
        core.threads
            .insert(p, Thread::new(p, p, TState::New, true, Setup::None));
        loop {
            let tids = procfs::tasks(p).unwrap_or_default();
            let fresh: Vec<u32> = tids.into_iter().filter(|t| !seized.contains(t)).collect();
            if fresh.is_empty() {
                break;
            }
            for t in fresh {
                seized.insert(t);
                match ptrace::seize(pid(t), trace_options()) {
                    Ok(()) => {
                        let _ = ptrace::interrupt(pid(t));
                        waiting.insert(t);
                    }
                    // Already ours (auto-attached at a clone): its initial stop comes
                    // with or after its parent's clone event.
                    Err(Errno::EPERM) => {
                        continue;
                    }
                    Err(_) => continue,
                }
                core.threads
                    .insert(t, Thread::new(p, p, TState::New, true, Setup::None));
            }
        }
        while !waiting.is_empty() {
            let (t, st) = match sys::wait_raw(-1, WAIT_ALL) {
                Ok((t, st)) => (t as u32, st),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            if waiting.remove(&t) {
                match decode(st) {
                    Ev::Exited(_) | Ev::Signaled(..) => {
                        core.threads.remove(&t);
                        if t == p {
                            core.detach_all();
                            return Err(Error::NoSuchProcess(p));
                        }
                        continue;
                    }
                    Ev::Event(libc::PTRACE_EVENT_STOP, sig) => {
                        if let Some(th) = core.threads.get_mut(&t) {
                            th.state = TState::Stopped;
                            th.last = Some(st);
                            th.relisten = is_group_stop_signal(sig);
                        }
                        core.initial.push(t);
                        continue;
                    }
                    _ => {
                        if let Some(th) = core.threads.get_mut(&t) {
                            th.state = TState::Stopped;
                            th.last = Some(st);
                        }
                    }
                }
            }
            core.deferred.push_back((t, st));
        }
        Ok(core)
    }

    fn warn(&mut self, msg: String) {
        if self.warned.insert(msg.clone()) {
            if let Some(tx) = &self.tx {
                tx.control(Event::Warning(msg));
            }
        }
    }

    /// Runs the session; see [`crate::PtraceBackend::run`].
    pub(crate) fn run(
        &mut self,
        plans: &PlanSet,
        tx: &EventSender,
        stop: &StopToken,
    ) -> Result<RunSummary, Error> {
        if self.ran {
            return Err(Error::AlreadyRan);
        }
        if nix::unistd::gettid().as_raw() != self.tracer_tid {
            return Err(Error::WrongThread);
        }
        self.ran = true;
        let ids_ok = plans
            .sites
            .iter()
            .enumerate()
            .all(|(i, s)| s.id.0 as usize == i);
        let checked = if ids_ok {
            plans.verify()
        } else {
            Err(capture_plan::PlanError(
                "site ids must equal their index in the plan set".into(),
            ))
        };
        if let Err(e) = checked {
            self.detach_all();
            return Err(e.into());
        }
        self.plans = Arc::new(plans.clone());
        self.any_sys = plans
            .sites
            .iter()
            .any(|s| matches!(s.kind, SiteKind::SyscallEntry | SiteKind::SyscallReturn));
        self.tx = Some(tx.clone());
        let wake = install_waker(stop);
        let res = self.run_loop(stop, &wake);
        wake.0.acked.store(true, Ordering::SeqCst);
        self.detach_all();
        drop(wake);
        res?;
        let mut failed = std::mem::take(&mut self.failed);
        for s in &self.plans.sites {
            let reported = |f: &Vec<String>| {
                self.ever_installed.contains(&s.id)
                    || f.iter()
                        .any(|x| x.starts_with(&format!("site {}:", s.id.0)))
            };
            if matches!(s.kind, SiteKind::SyscallEntry | SiteKind::SyscallReturn)
                && !reported(&failed)
            {
                failed.push(format!(
                    "site {}: no traced process ran {}",
                    s.id.0,
                    s.module.display()
                ));
            }
            if matches!(s.kind, SiteKind::Entry | SiteKind::Return { .. }) && !reported(&failed) {
                failed.push(format!(
                    "site {}: {} was never loaded (address {:#x})",
                    s.id.0,
                    s.module.display(),
                    s.addr.0
                ));
            }
        }
        Ok(RunSummary {
            hits: self.hits,
            failed_sites: failed,
        })
    }

    fn run_loop(&mut self, stop: &StopToken, wake: &WakeGuard) -> Result<(), Error> {
        let keys: Vec<u32> = self.procs.keys().copied().collect();
        for k in &keys {
            self.install_sites(*k);
        }
        if let Some(exe) = self.procs.get(&self.main_pid).map(|p| p.exe.clone()) {
            self.process_event(self.main_pid, &exe, true);
        }
        // Attached to a running process: its other threads begin now, for us.
        let mut others: Vec<u32> = self
            .threads
            .iter()
            .filter(|(t, x)| x.pid == self.main_pid && **t != self.main_pid && x.emit)
            .map(|(t, _)| *t)
            .collect();
        others.sort_unstable();
        for t in others {
            self.thread_event(t, true);
        }
        for t in std::mem::take(&mut self.initial) {
            let Some(th) = self.threads.get(&t) else {
                continue;
            };
            if th.state == TState::Stopped {
                if th.relisten {
                    self.listen(t);
                } else {
                    self.resume(t, 0);
                }
            }
        }
        loop {
            if stop.is_requested() {
                wake.0.acked.store(true, Ordering::SeqCst);
                return Ok(());
            }
            if self.main_ended || self.threads.is_empty() {
                return Ok(());
            }
            match self.next_event() {
                Next::Got(t, st) => self.handle(t, st),
                Next::Interrupted => continue,
                Next::NoChildren => {
                    self.threads.clear();
                    return Ok(());
                }
            }
        }
    }

    fn next_event(&mut self) -> Next {
        if let Some((t, st)) = self.deferred.pop_front() {
            return Next::Got(t, st);
        }
        // A blocked tracer is woken by an inter-processor interrupt when the target
        // stops on another CPU, which on a virtual machine costs tens of microseconds
        // per hit. While hits come fast (the previous one less than SPIN ago), poll for
        // up to SPIN first: the next stop is then seen without that wake-up. Sparse
        // hits never spin, so an idle trace costs no CPU.
        const SPIN: Duration = Duration::from_micros(200);
        let now = std::time::Instant::now();
        if self.spin {
            let deadline = now + SPIN;
            loop {
                match sys::wait_raw(-1, WAIT_ALL | libc::WNOHANG) {
                    Ok((0, _)) => {}
                    Ok((t, st)) => return self.got(t as u32, st),
                    Err(Errno::EINTR) => return Next::Interrupted,
                    Err(_) => return Next::NoChildren,
                }
                if std::time::Instant::now() >= deadline {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        match sys::wait_raw(-1, WAIT_ALL) {
            Ok((t, st)) => self.got(t as u32, st),
            Err(Errno::EINTR) => Next::Interrupted,
            Err(_) => Next::NoChildren,
        }
    }

    /// Notes when an event arrived (for the spin decision) and passes it on.
    fn got(&mut self, t: u32, st: i32) -> Next {
        let now = std::time::Instant::now();
        self.spin = self
            .last_event
            .is_some_and(|l| now.duration_since(l) < Duration::from_micros(200));
        self.last_event = Some(now);
        Next::Got(t, st)
    }

    fn resume(&mut self, t: u32, sig: i32) {
        let th = self.threads.get_mut(&t);
        // Threads of images with system call sites also stop at every system call;
        // every other thread runs without that cost.
        let syscalls = self.any_sys
            && th.as_ref().is_some_and(|x| {
                x.emit && self.procs.get(&x.mem).is_some_and(|p| p.traces_syscalls())
            });
        let _ = if syscalls {
            sys::cont_syscall(t as i32, sig)
        } else {
            sys::cont(t as i32, sig)
        };
        if let Some(th) = th {
            th.state = TState::Running;
            th.last = None;
        }
    }

    fn listen(&mut self, t: u32) {
        let _ = sys::listen(t as i32);
        if let Some(th) = self.threads.get_mut(&t) {
            th.state = TState::Listening;
            th.last = None;
        }
    }

    fn handle(&mut self, t: u32, st: i32) {
        let ev = decode(st);
        let Some(th) = self.threads.get_mut(&t) else {
            match ev {
                Ev::Exited(_) | Ev::Signaled(..) => {
                    self.unclaimed.remove(&t);
                }
                // A thread killed by an exec or exit_group elsewhere that we forgot.
                Ev::Event(libc::PTRACE_EVENT_EXIT, _) => {
                    let _ = sys::cont(t as i32, 0);
                }
                Ev::Other => {}
                _ => {
                    self.unclaimed.insert(t, st);
                }
            }
            return;
        };
        if is_stop(st) {
            let was_new = th.state == TState::New;
            th.state = TState::Stopped;
            th.last = Some(st);
            if was_new {
                if !self.start_task(t) {
                    return;
                }
                if let Ev::Event(libc::PTRACE_EVENT_STOP, _) = ev {
                    self.resume(t, 0);
                    return;
                }
            }
        }
        match ev {
            Ev::Exited(code) => self.thread_gone(t, TargetEnd::Exited(code)),
            Ev::Signaled(sig, core) => self.thread_gone(
                t,
                TargetEnd::Signaled {
                    signal: sig,
                    name: signal_name(sig),
                    core,
                },
            ),
            Ev::Event(libc::PTRACE_EVENT_STOP, sig) => {
                if let Some(th) = self.threads.get_mut(&t) {
                    th.held = false;
                }
                if is_group_stop_signal(sig) {
                    self.listen(t);
                } else {
                    self.resume(t, 0);
                }
            }
            Ev::Event(e, _)
                if e == libc::PTRACE_EVENT_CLONE
                    || e == libc::PTRACE_EVENT_FORK
                    || e == libc::PTRACE_EVENT_VFORK =>
            {
                if let Ok(child) = ptrace::getevent(pid(t)) {
                    self.new_task(t, child as u32, e);
                }
                self.resume(t, 0);
                if let Some(th) = self.threads.get_mut(&t) {
                    th.vfork_wait = e == libc::PTRACE_EVENT_VFORK;
                }
            }
            Ev::Event(libc::PTRACE_EVENT_VFORK_DONE, _) => {
                if let Some(th) = self.threads.get_mut(&t) {
                    th.vfork_wait = false;
                }
                self.resume(t, 0);
            }
            Ev::Event(libc::PTRACE_EVENT_EXEC, _) => self.on_exec(t),
            Ev::Event(libc::PTRACE_EVENT_EXIT, _) => {
                if self.threads.get(&t).is_some_and(|x| x.pid == t) {
                    self.remember_for_end(t);
                } else if self.threads.get(&t).is_some_and(|x| x.emit && !x.end_sent) {
                    // Still stopped with its registers: the thread's end is reported
                    // here, where its context can still be read.
                    self.thread_event(t, false);
                    if let Some(x) = self.threads.get_mut(&t) {
                        x.end_sent = true;
                    }
                }
                self.resume(t, 0);
                if let Some(th) = self.threads.get_mut(&t) {
                    th.state = TState::Exiting;
                }
            }
            Ev::Event(_, _) => self.resume(t, 0),
            Ev::Signal(libc::SIGTRAP) => self.on_trap(t),
            Ev::Signal(sig) => self.resume(t, sig),
            Ev::Syscall => self.on_syscall(t),
            Ev::Other => {}
        }
    }

    /// Registers a task announced by its parent's clone/fork/vfork event.
    fn new_task(&mut self, parent: u32, child: u32, event: i32) {
        if self.threads.contains_key(&child) {
            return;
        }
        let Some(pt) = self.threads.get(&parent) else {
            return;
        };
        let (ppid, pmem, pemit) = (pt.pid, pt.mem, pt.emit);
        let follow = self.opts.follow_forks && pemit;
        let is_thread =
            event == libc::PTRACE_EVENT_CLONE && procfs::tgid(child).is_none_or(|g| g == ppid);
        let th = if is_thread {
            Thread::new(ppid, pmem, TState::New, pemit, Setup::None)
        } else if event == libc::PTRACE_EVENT_VFORK {
            Thread::new(child, pmem, TState::New, follow, Setup::Vfork)
        } else {
            // A copy of the parent's address space: same breakpoints (the bytes were
            // copied), same history; the forking thread's pending returns come along.
            let Some(pp) = self.procs.get(&pmem) else {
                return;
            };
            let mut cp = Proc::open(child);
            cp.exe = pp.exe.clone();
            cp.history = pp.history.clone();
            cp.installed = pp.installed.clone();
            cp.rbrk_done = pp.rbrk_done;
            cp.pads = pp.pads.clone();
            cp.slack = pp.slack.clone();
            cp.bps = pp.bps.clone();
            cp.sys_entry = pp.sys_entry.clone();
            cp.sys_exit = pp.sys_exit.clone();
            // The child's copy of each semaphore we raised is raised already.
            cp.sems = pp.sems.clone();
            let mut th = Thread::new(child, child, TState::New, follow, Setup::Fork);
            for bp in cp.bps.values_mut() {
                bp.ret_refs = 0;
            }
            if let Some(pt) = self.threads.get(&parent) {
                for f in &pt.frames {
                    let mut rec = f.rec.clone();
                    rec.pid = child;
                    rec.tid = child;
                    if let Some(bp) = cp.bps.get_mut(&f.ret) {
                        bp.ret_refs += 1;
                    }
                    th.frames.push(Frame {
                        site: f.site,
                        entry_rsp: f.entry_rsp,
                        ret: f.ret,
                        rec,
                    });
                }
            }
            cp.bps.retain(|_, b| !b.unused());
            self.procs.insert(child, cp);
            th
        };
        self.threads.insert(child, th);
        if let Some(st) = self.unclaimed.remove(&child) {
            self.deferred.push_front((child, st));
        }
    }

    /// First stop of a new task. Returns false if the task was detached.
    fn start_task(&mut self, t: u32) -> bool {
        let Some(th) = self.threads.get(&t) else {
            return false;
        };
        match th.setup {
            Setup::None => {
                // A new thread of a traced process (a clone in its thread group).
                if th.emit && th.pid != t {
                    self.thread_event(t, true);
                }
                true
            }
            Setup::Vfork => {
                if th.emit {
                    let memk = th.mem;
                    let exe = self
                        .procs
                        .get(&memk)
                        .map(|p| p.exe.clone())
                        .unwrap_or_default();
                    // It runs in its parent's memory: the same mappings, its own pid.
                    if let Ok(maps) = procfs::read_maps(memk) {
                        self.announce_modules(t, &maps);
                    }
                    self.process_event(t, &exe, true);
                }
                true
            }
            Setup::Fork => {
                let follow = th.emit;
                let Some(p) = self.procs.get(&t) else {
                    return true;
                };
                if follow {
                    p.sync_memory();
                    let exe = p.exe.clone();
                    if let Ok(maps) = procfs::read_maps(t) {
                        self.announce_modules(t, &maps);
                    }
                    self.process_event(t, &exe, true);
                    true
                } else {
                    // Not followed: the child gets the original bytes back and goes;
                    // its copy of each semaphore we raised is lowered again.
                    p.clean_memory();
                    p.restore_semaphores();
                    let _ = sys::detach(t as i32, 0);
                    self.procs.remove(&t);
                    self.threads.remove(&t);
                    self.comms.remove(&t);
                    false
                }
            }
        }
    }

    fn thread_gone(&mut self, t: u32, how: TargetEnd) {
        let Some(th) = self.threads.remove(&t) else {
            return;
        };
        for f in &th.frames {
            self.unref_ret(th.mem, f.ret);
        }
        if t != th.pid {
            if th.emit && !th.end_sent {
                // No exit stop was seen (killed): the end is reported without a plan.
                let exe = self
                    .procs
                    .get(&th.mem)
                    .map(|p| p.exe.clone())
                    .unwrap_or_default();
                self.thread_records(th.pid, t, &exe, false, None);
            }
            self.comms.remove(&t);
            return;
        }
        // The last thread of a process (its leader is reported last).
        if th.emit {
            let exe = self
                .procs
                .get(&th.mem)
                .map(|p| p.exe.clone())
                .unwrap_or_default();
            self.process_event(t, &exe, false);
        }
        self.comms.remove(&t);
        self.end_ctx.remove(&t);
        self.forget_announced(t);
        if th.mem == t {
            self.procs.remove(&t);
            self.threads.retain(|_, x| x.mem != t || x.pid != t);
        }
        if t == self.main_pid && !self.main_ended {
            self.main_ended = true;
            if let Some(tx) = &self.tx {
                tx.control(Event::TargetEnded { pid: t, how });
            }
        }
    }

    fn on_exec(&mut self, t: u32) {
        let former = ptrace::getevent(pid(t)).map(|v| v as u32).unwrap_or(t);
        if former != t {
            if let Some(old) = self.threads.remove(&former) {
                self.threads.insert(t, old);
            }
        }
        let Some(th) = self.threads.get_mut(&t) else {
            let _ = sys::cont(t as i32, 0);
            return;
        };
        th.state = TState::Stopped;
        th.frames.clear();
        th.pid = t;
        let old_mem = th.mem;
        let emit = th.emit;
        th.mem = t;
        if old_mem == t {
            // Every other thread of the process is gone with the old image.
            self.threads
                .retain(|&k, x| k == t || x.mem != t || x.pid != t);
        }
        self.comms.remove(&t);
        self.comms.remove(&former);
        self.forget_announced(t);
        self.forget_announced(former);
        self.procs.insert(t, Proc::open(t));
        if !emit {
            let _ = sys::detach(t as i32, 0);
            self.threads.remove(&t);
            self.procs.remove(&t);
            return;
        }
        self.install_sites(t);
        let exe = self
            .procs
            .get(&t)
            .map(|p| p.exe.clone())
            .unwrap_or_default();
        self.process_event(t, &exe, true);
        self.resume(t, 0);
    }

    fn module_id(&mut self, path: &Path) -> Option<(u64, u64)> {
        *self
            .ids
            .entry(path.to_path_buf())
            .or_insert_with(|| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino())))
    }

    fn same_file(&mut self, a: &Path, b: &Path) -> bool {
        if a == b {
            return true;
        }
        match (self.module_id(a), self.module_id(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    /// The load bias of `module` in a process with these mappings, if it is mapped.
    fn module_bias(&mut self, module: &Path, maps: &[procfs::MapEntry]) -> Option<u64> {
        let id = self.module_id(module);
        let name = module.to_str().unwrap_or("");
        let ms: Vec<&procfs::MapEntry> = maps
            .iter()
            .filter(|m| {
                m.path == name
                    || id.is_some_and(|(dev, ino)| {
                        m.inode != 0
                            && m.inode == ino
                            && nix::sys::stat::makedev(m.dev_major, m.dev_minor) == dev
                    })
            })
            .collect();
        if ms.is_empty() {
            return None;
        }
        let img = self
            .images
            .entry(module.to_path_buf())
            .or_insert_with(|| elf::read_image(module).ok())
            .as_ref()?;
        elf::load_bias(img, &ms)
    }

    fn add_bp(&mut self, memk: u32, addr: u64, u: Use) -> Result<(), String> {
        let p = self
            .procs
            .get_mut(&memk)
            .ok_or_else(|| "process gone".to_string())?;
        if let Some(bp) = p.bps.get_mut(&addr) {
            match u {
                Use::Entry(s) => bp.entry.push(s),
                Use::Ret => bp.ret_refs += 1,
                Use::Rbrk => bp.rbrk = true,
            }
            return Ok(());
        }
        let orig = p
            .peek(addr)
            .ok_or_else(|| format!("cannot read memory at {addr:#x}"))?;
        p.poke(addr, INT3)
            .map_err(|e| format!("cannot write a breakpoint at {addr:#x}: {e}"))?;
        p.history.insert(addr, orig);
        let mut bp = Bp {
            orig,
            entry: Vec::new(),
            ret_refs: 0,
            rbrk: false,
        };
        match u {
            Use::Entry(s) => bp.entry.push(s),
            Use::Ret => bp.ret_refs = 1,
            Use::Rbrk => bp.rbrk = true,
        }
        p.bps.insert(addr, bp);
        Ok(())
    }

    fn unref_ret(&mut self, memk: u32, addr: u64) {
        let Some(p) = self.procs.get_mut(&memk) else {
            return;
        };
        let Some(bp) = p.bps.get_mut(&addr) else {
            return;
        };
        bp.ret_refs = bp.ret_refs.saturating_sub(1);
        if bp.unused() {
            let orig = bp.orig;
            p.bps.remove(&addr);
            let _ = p.poke(addr, orig);
        }
    }

    /// Installs every site whose module is mapped in address space `memk`, forgets the
    /// sites of modules that were unmapped, and watches the dynamic linker for the rest.
    fn install_sites(&mut self, memk: u32) {
        let Ok(maps) = procfs::read_maps(memk) else {
            return;
        };
        let plans = self.plans.clone();
        // Pads in mappings that are gone (dlclose) went with them; a module loaded again
        // at the same place must get new ones.
        let live: HashSet<MapId> = maps
            .iter()
            .filter(|m| m.inode != 0)
            .map(|m| (m.start, m.inode))
            .collect();
        if let Some(p) = self.procs.get_mut(&memk) {
            p.pads
                .retain(|_, v| v.is_none_or(|(_, id)| live.contains(&id)));
            p.slack.retain(|_, (_, id)| live.contains(id));
        }
        // Sites of modules unmapped since (dlclose): their bytes are gone with them.
        let gone: Vec<(SiteId, Option<u64>)> = match self.procs.get(&memk) {
            Some(p) => p
                .installed
                .iter()
                .filter(|(_, (m, _))| {
                    let name = m.to_str().unwrap_or("");
                    !maps.iter().any(|e| e.path == name)
                })
                .map(|(s, (_, a))| (*s, *a))
                .collect(),
            None => return,
        };
        let mut forget = Vec::new();
        for (s, a) in gone {
            let Some(site) = plans.sites.get(s.0 as usize) else {
                continue;
            };
            if self.module_bias(&site.module.clone(), &maps).is_some() {
                continue;
            }
            forget.push((s, a));
        }
        if let Some(p) = self.procs.get_mut(&memk) {
            for (s, a) in forget {
                p.installed.remove(&s);
                let semaphore = plans
                    .sites
                    .get(s.0 as usize)
                    .is_some_and(|x| x.kind == SiteKind::Semaphore);
                if let (true, Some(a)) = (semaphore, a) {
                    // Its memory went with the module: nothing to take off at detach.
                    p.sems.remove(&a);
                    continue;
                }
                if let Some(a) = a {
                    if let Some(bp) = p.bps.get_mut(&a) {
                        bp.entry.retain(|x| *x != s);
                        if bp.unused() {
                            p.bps.remove(&a);
                            p.history.remove(&a);
                        }
                    }
                }
            }
        }
        let mut sys_entry = Vec::new();
        let mut sys_exit = Vec::new();
        for site in &plans.sites {
            match site.kind {
                SiteKind::SyscallEntry | SiteKind::SyscallReturn => {
                    if self.module_bias(&site.module, &maps).is_some() {
                        self.ever_installed.insert(site.id);
                        if site.kind == SiteKind::SyscallEntry {
                            sys_entry.push(site.id);
                        } else {
                            sys_exit.push(site.id);
                        }
                    }
                    continue;
                }
                SiteKind::Entry | SiteKind::Return { .. } | SiteKind::Semaphore => {}
                SiteKind::ProcessBegin
                | SiteKind::ProcessEnd
                | SiteKind::ThreadBegin
                | SiteKind::ThreadEnd => continue,
            }
            if self
                .procs
                .get(&memk)
                .is_none_or(|p| p.installed.contains_key(&site.id))
            {
                continue;
            }
            let Some(bias) = self.module_bias(&site.module, &maps) else {
                continue;
            };
            let addr = bias.wrapping_add(site.addr.0);
            let res = if site.kind == SiteKind::Semaphore {
                match self.procs.get_mut(&memk) {
                    Some(p) => p.sem_up(addr),
                    None => Err("process gone".to_string()),
                }
            } else {
                self.add_bp(memk, addr, Use::Entry(site.id))
            };
            let at = match res {
                Ok(()) => {
                    self.ever_installed.insert(site.id);
                    Some(addr)
                }
                Err(e) => {
                    let msg = format!("site {}: {}", site.id.0, e);
                    if !self.failed.contains(&msg) {
                        self.failed.push(msg.clone());
                    }
                    self.warn(msg);
                    None
                }
            };
            if let Some(p) = self.procs.get_mut(&memk) {
                p.installed.insert(site.id, (site.module.clone(), at));
            }
        }
        if let Some(p) = self.procs.get_mut(&memk) {
            p.sys_entry = sys_entry;
            p.sys_exit = sys_exit;
        }
        self.announce_modules(memk, &maps);
        // Watched even when every site is installed: libraries loaded later must be
        // announced (`ModuleMapped`), and may carry sites of the same module path.
        if self.procs.get(&memk).is_some_and(|p| !p.rbrk_done) {
            if let Some(p) = self.procs.get_mut(&memk) {
                p.rbrk_done = true;
            }
            self.install_rbrk(memk, &maps);
        }
    }

    /// Emits `ModuleMapped` for every executable file mapping of process `p` not yet
    /// announced with the same load bias.
    fn announce_modules(&mut self, p: u32, maps: &[procfs::MapEntry]) {
        let Some(tx) = self.tx.clone() else {
            return;
        };
        let mut seen: HashSet<&str> = HashSet::new();
        for m in maps {
            if !m.perms.contains('x') || !m.path.starts_with('/') || !seen.insert(&m.path) {
                continue;
            }
            let path = PathBuf::from(&m.path);
            // A deleted or unreadable file has no known bias: nothing to announce.
            let Some(bias) = self.module_bias(&path, maps) else {
                continue;
            };
            if self.announced.insert((p, path.clone(), bias)) {
                tx.control(Event::ModuleMapped { pid: p, path, bias });
            }
        }
    }

    /// Forgets what was announced for process `p` (it exec'd or ended).
    fn forget_announced(&mut self, p: u32) {
        self.announced.retain(|(q, _, _)| *q != p);
    }

    /// Puts a breakpoint on the dynamic linker's `_dl_debug_state`, which it calls after
    /// every change to the list of loaded objects (startup, dlopen, dlclose).
    fn install_rbrk(&mut self, memk: u32, maps: &[procfs::MapEntry]) {
        let Some(base) = procfs::auxv_base(memk) else {
            return;
        };
        let Some(m) = maps
            .iter()
            .find(|m| m.start <= base && base < m.end && m.path.starts_with('/'))
        else {
            return;
        };
        let ldso = PathBuf::from(&m.path);
        let Some(sym) = elf::symbol_address(&ldso, "_dl_debug_state") else {
            self.warn(format!(
                "{}: no _dl_debug_state; libraries loaded later will not be probed",
                ldso.display()
            ));
            return;
        };
        let Some(bias) = self.module_bias(&ldso, maps) else {
            return;
        };
        if let Err(e) = self.add_bp(memk, bias.wrapping_add(sym), Use::Rbrk) {
            self.warn(format!("cannot watch library loads: {e}"));
        }
    }

    /// Emits the process begin (or end) records of the sites for `exe`.
    fn process_event(&mut self, p: u32, exe: &Path, begin: bool) {
        let plans = self.plans.clone();
        for site in &plans.sites {
            let want = match site.kind {
                SiteKind::ProcessBegin => begin,
                SiteKind::ProcessEnd => !begin,
                _ => continue,
            };
            if !want || !self.same_file(&site.module, exe) {
                continue;
            }
            let rec = self.new_record(site, p, p, 0);
            self.hits += 1;
            if let Some(tx) = &self.tx {
                tx.record(rec);
            }
        }
    }

    /// Emits the `ThreadBegin` (or `ThreadEnd`) records of thread `t`, which is in a
    /// ptrace-stop: the plans run with its registers.
    fn thread_event(&mut self, t: u32, begin: bool) {
        let Some(th) = self.threads.get(&t) else {
            return;
        };
        let (p, memk) = (th.pid, th.mem);
        let kind = if begin {
            SiteKind::ThreadBegin
        } else {
            SiteKind::ThreadEnd
        };
        if !self.plans.sites.iter().any(|s| s.kind == kind) {
            return;
        }
        let exe = self
            .procs
            .get(&memk)
            .map(|x| x.exe.clone())
            .unwrap_or_default();
        let regs = ptrace::getregs(pid(t)).ok();
        self.thread_records(p, t, &exe, begin, regs.as_ref());
    }

    /// Emits the thread begin or end records of the sites for `exe`; without
    /// registers (a thread already gone) the plans are not run.
    fn thread_records(
        &mut self,
        p: u32,
        t: u32,
        exe: &Path,
        begin: bool,
        regs: Option<&libc::user_regs_struct>,
    ) {
        let plans = self.plans.clone();
        let memk = self.threads.get(&t).map_or(p, |x| x.mem);
        for site in &plans.sites {
            let want = match site.kind {
                SiteKind::ThreadBegin => begin,
                SiteKind::ThreadEnd => !begin,
                _ => continue,
            };
            if !want || !self.same_file(&site.module, exe) {
                continue;
            }
            let mut rec = self.new_record(site, p, t, regs.map_or(0, |r| r.rip));
            if let (Some(regs), Some(pr)) = (regs, self.procs.get(&memk)) {
                let mut acc = Access {
                    tid: t,
                    regs,
                    mem: pr.mem.as_ref(),
                    bps: &pr.bps,
                    vm_ok: &mut self.vm_ok,
                    sys_nr: None,
                    ahead: None,
                };
                execute(&site.plan, &mut acc, &mut rec);
            }
            self.hits += 1;
            if let Some(tx) = &self.tx {
                tx.record(rec);
            }
        }
    }

    /// Reads, while the process still exists, the context its end records may need.
    fn remember_for_end(&mut self, t: u32) {
        let needs = self
            .plans
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::ProcessEnd)
            .fold((false, false), |a, s| {
                (a.0 || s.needs.comm, a.1 || s.needs.ppid || s.needs.cpu)
            });
        if needs.0 {
            if let Some(c) = procfs::comm(t) {
                self.comms.insert(t, c);
            }
        }
        if needs.1 {
            if let Some(pc) = procfs::ppid_cpu(t) {
                self.end_ctx.insert(t, pc);
            }
        }
    }

    fn new_record(&mut self, site: &ProbeSite, p: u32, t: u32, ip: u64) -> Record {
        let mut rec = Record::new(site.id, p, t, now_ns(), ip);
        if site.needs.comm {
            rec.comm = self
                .comms
                .entry(t)
                .or_insert_with(|| procfs::comm(t).unwrap_or_default())
                .clone();
        }
        if site.needs.ppid || site.needs.cpu {
            let ctx = match self.end_ctx.get(&t) {
                Some(c) => Some(*c),
                None => procfs::ppid_cpu(t),
            };
            if let Some((pp, cpu)) = ctx {
                if site.needs.ppid {
                    rec.ppid = pp;
                }
                if site.needs.cpu {
                    rec.cpu = cpu;
                }
            }
        }
        rec
    }

    /// A system call entry or exit stop: runs the image's syscall sites of that kind.
    ///
    /// A blocking call that our own `PTRACE_INTERRUPT` broke (see `Thread::held`) exits
    /// with `-ERESTART*` and is restarted by the kernel; that exit and the restart's
    /// entry are hidden, and a `restart_syscall` reports the original number, so the
    /// records show the call once, as if we had not been there.
    fn on_syscall(&mut self, t: u32) {
        let Some(th) = self.threads.get(&t) else {
            return;
        };
        let (p, memk, emit) = (th.pid, th.mem, th.emit);
        let kind = match self.procs.get(&memk) {
            Some(pr) if emit && pr.traces_syscalls() => sys::syscall_stop_kind(t as i32).ok(),
            _ => None,
        };
        let entry = match kind {
            Some(libc::PTRACE_SYSCALL_INFO_ENTRY) => true,
            Some(libc::PTRACE_SYSCALL_INFO_EXIT) => false,
            _ => {
                self.resume(t, 0);
                return;
            }
        };
        let Ok(regs) = ptrace::getregs(pid(t)) else {
            self.resume(t, 0);
            return;
        };
        let Some(th) = self.threads.get_mut(&t) else {
            return;
        };
        let nr = if entry {
            th.restart_of = None;
            if let Some(n) = th.hidden_restart.take() {
                if regs.orig_rax == n || regs.orig_rax == SYS_RESTART_SYSCALL {
                    if regs.orig_rax != n {
                        th.restart_of = Some(n);
                    }
                    self.resume(t, 0);
                    return;
                }
            }
            regs.orig_rax
        } else {
            let n = th.restart_of.take().unwrap_or(regs.orig_rax);
            if th.held && is_erestart(regs.rax) {
                th.hidden_restart = Some(n);
                self.resume(t, 0);
                return;
            }
            n
        };
        let sites = match self.procs.get(&memk) {
            Some(pr) if entry => pr.sys_entry.clone(),
            Some(pr) => pr.sys_exit.clone(),
            None => Vec::new(),
        };
        let plans = self.plans.clone();
        for sid in sites {
            let Some(site) = plans.sites.get(sid.0 as usize) else {
                continue;
            };
            let mut rec = self.new_record(site, p, t, regs.rip);
            if let Some(pr) = self.procs.get(&memk) {
                let mut acc = Access {
                    tid: t,
                    regs: &regs,
                    mem: pr.mem.as_ref(),
                    bps: &pr.bps,
                    vm_ok: &mut self.vm_ok,
                    sys_nr: Some(nr),
                    ahead: None,
                };
                execute(&site.plan, &mut acc, &mut rec);
            }
            self.hits += 1;
            if let Some(tx) = &self.tx {
                tx.record(rec);
            }
        }
        self.resume(t, 0);
    }

    fn on_trap(&mut self, t: u32) {
        let Some(memk) = self.threads.get(&t).map(|x| x.mem) else {
            return;
        };
        let Ok(mut regs) = ptrace::getregs(pid(t)) else {
            return;
        };
        let addr = regs.rip.wrapping_sub(1);
        let Some(p) = self.procs.get(&memk) else {
            self.resume(t, libc::SIGTRAP);
            return;
        };
        if p.bps.contains_key(&addr) {
            regs.rip = addr;
            self.on_breakpoint(t, memk, addr, regs);
            return;
        }
        // A breakpoint removed while this thread was already trapping on it.
        let removed = p.history.contains_key(&addr)
            && p.peek(addr) != Some(INT3)
            && ptrace::getsiginfo(pid(t)).is_ok_and(|si| si.si_code == SI_KERNEL);
        if removed {
            regs.rip = addr;
            let _ = ptrace::setregs(pid(t), regs);
            self.resume(t, 0);
        } else {
            self.resume(t, libc::SIGTRAP);
        }
    }

    fn on_breakpoint(&mut self, t: u32, memk: u32, addr: u64, regs: libc::user_regs_struct) {
        let plans = self.plans.clone();
        let Some(th) = self.threads.get(&t) else {
            return;
        };
        let (p, emit) = (th.pid, th.emit);
        // Returns: frames of this thread whose function has returned (rsp above the
        // entry rsp). The one returning here with rsp == entry rsp + 8 completes its
        // record; deeper ones were skipped by longjmp or unwinding and are dropped.
        while let Some(th) = self.threads.get_mut(&t) {
            let Some(top) = th.frames.last() else {
                break;
            };
            if regs.rsp <= top.entry_rsp {
                break;
            }
            let Some(f) = th.frames.pop() else {
                break;
            };
            if f.ret == addr && regs.rsp == f.entry_rsp.wrapping_add(8) && emit {
                if let Some(SiteKind::Return { return_plan }) =
                    plans.sites.get(f.site.0 as usize).map(|s| &s.kind)
                {
                    let mut rec = f.rec;
                    rec.ip = addr;
                    rec.time_ns = now_ns();
                    if let Some(pr) = self.procs.get(&memk) {
                        let mut acc = Access {
                            tid: t,
                            regs: &regs,
                            mem: pr.mem.as_ref(),
                            bps: &pr.bps,
                            vm_ok: &mut self.vm_ok,
                            sys_nr: None,
                            ahead: None,
                        };
                        execute(return_plan, &mut acc, &mut rec);
                    }
                    self.hits += 1;
                    if let Some(tx) = &self.tx {
                        tx.record(rec);
                    }
                }
            }
            self.unref_ret(memk, f.ret);
        }
        let (entry, rbrk) = match self.procs.get(&memk).and_then(|pr| pr.bps.get(&addr)) {
            Some(bp) => (bp.entry.clone(), bp.rbrk),
            None => (Vec::new(), false),
        };
        if rbrk {
            self.install_sites(memk);
        }
        if emit {
            for sid in entry {
                let Some(site) = plans.sites.get(sid.0 as usize) else {
                    continue;
                };
                let mut rec = self.new_record(site, p, t, addr);
                let mut ret_addr = None;
                if let Some(pr) = self.procs.get(&memk) {
                    let mut acc = Access {
                        tid: t,
                        regs: &regs,
                        mem: pr.mem.as_ref(),
                        bps: &pr.bps,
                        vm_ok: &mut self.vm_ok,
                        sys_nr: None,
                        ahead: None,
                    };
                    execute(&site.plan, &mut acc, &mut rec);
                    if let SiteKind::Return { .. } = site.kind {
                        let mut b = [0u8; 8];
                        if acc.read(regs.rsp, &mut b).is_ok() {
                            ret_addr = Some(u64::from_le_bytes(b));
                        }
                    }
                }
                match site.kind {
                    SiteKind::Return { .. } => {
                        let Some(ret) = ret_addr else {
                            self.warn(format!(
                                "site {}: cannot read the return address at {:#x}",
                                sid.0, regs.rsp
                            ));
                            continue;
                        };
                        if let Err(e) = self.add_bp(memk, ret, Use::Ret) {
                            self.warn(format!("site {}: {e}", sid.0));
                            continue;
                        }
                        if let Some(th) = self.threads.get_mut(&t) {
                            th.frames.push(Frame {
                                site: sid,
                                entry_rsp: regs.rsp,
                                ret,
                                rec,
                            });
                        }
                    }
                    _ => {
                        self.hits += 1;
                        if let Some(tx) = &self.tx {
                            tx.record(rec);
                        }
                    }
                }
            }
        }
        let still = self
            .procs
            .get(&memk)
            .is_some_and(|pr| pr.bps.contains_key(&addr));
        let mut regs = regs;
        if still {
            if let Some(pad) = self.pad_for(memk, addr, t) {
                regs.rip = pad;
                if ptrace::setregs(pid(t), regs).is_ok() {
                    self.resume(t, 0);
                }
                return;
            }
            // A `ret` (the dynamic linker's `_dl_debug_state` is one) cannot run out of
            // line, but its effect is only on registers: pop rip.
            if let Some(ret) = self.emulated_ret(memk, addr, t, &regs) {
                regs.rip = ret;
                regs.rsp = regs.rsp.wrapping_add(8);
                if ptrace::setregs(pid(t), regs).is_ok() {
                    self.resume(t, 0);
                }
                return;
            }
        }
        if ptrace::setregs(pid(t), regs).is_err() {
            return;
        }
        if let Some(th) = self.threads.get_mut(&t) {
            // rip is rewound: nothing to fix at detach any more.
            th.last = None;
        }
        if self
            .procs
            .get(&memk)
            .is_some_and(|pr| pr.bps.contains_key(&addr))
        {
            self.step_over(t, memk, addr);
        } else {
            self.resume(t, 0);
        }
    }

    /// The return address a `ret` at `addr` would jump to, if the original instruction
    /// there is a plain `ret`.
    fn emulated_ret(
        &mut self,
        memk: u32,
        addr: u64,
        t: u32,
        regs: &libc::user_regs_struct,
    ) -> Option<u64> {
        if self.no_pads {
            return None;
        }
        let p = self.procs.get(&memk)?;
        if p.bps.get(&addr)?.orig != 0xC3 {
            return None;
        }
        let mut b = [0u8; 8];
        read_mem(t, p.mem.as_ref(), &p.bps, regs.rsp, &mut b, &mut self.vm_ok).ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// The out-of-line pad for the breakpoint at `addr`, made at its first hit.
    fn pad_for(&mut self, memk: u32, addr: u64, t: u32) -> Option<u64> {
        if self.no_pads {
            return None;
        }
        if let Some(p) = self.procs.get(&memk).and_then(|p| p.pads.get(&addr)) {
            return p.map(|(a, _)| a);
        }
        let pad = self.make_pad(memk, addr, t);
        if let Some(p) = self.procs.get_mut(&memk) {
            p.pads.insert(addr, pad);
        }
        pad.map(|(a, _)| a)
    }

    fn make_pad(&mut self, memk: u32, addr: u64, t: u32) -> Option<(u64, MapId)> {
        let maps = procfs::read_maps(memk).ok()?;
        let m = maps
            .iter()
            .find(|m| m.start <= addr && addr < m.end && m.path.starts_with('/'))?;
        let map_end = m.end;
        let path = PathBuf::from(&m.path);
        let bias = self.module_bias(&path, &maps)?;
        let img = self.images.get(&path)?.as_ref()?;
        let (s, e) = elf::exec_slack(img, addr.wrapping_sub(bias))?;
        let (rs, re) = (s.wrapping_add(bias), e.wrapping_add(bias));
        let holder = maps
            .iter()
            .find(|m| m.start <= rs && re <= m.end && rs < re && m.perms.contains('x'))?;
        let id = (holder.start, holder.inode);
        let mut vm_ok = self.vm_ok;
        let p = self.procs.get_mut(&memk)?;
        let next = p.slack.get(&rs).map_or(rs, |s| s.0);
        let at = next.checked_add(15)? & !15;
        if at.checked_add(pad::PAD_SIZE)? > re {
            return None;
        }
        let mut code = [0u8; 16];
        let n = (map_end - addr).min(16) as usize;
        read_mem(t, p.mem.as_ref(), &p.bps, addr, &mut code[..n], &mut vm_ok).ok()?;
        let bytes = pad::build_pad(&code[..n], addr, at)?;
        p.poke_bytes(at, &bytes).ok()?;
        p.slack.insert(rs, (at + pad::PAD_SIZE, id));
        Some((at, id))
    }

    /// Stops the given running threads; returns those stopped by our interrupt alone
    /// (other reports are deferred and their threads stay stopped until handled).
    fn stop_threads(&mut self, list: &[u32]) -> Vec<u32> {
        let mut waiting: HashSet<u32> = HashSet::new();
        for &o in list {
            if ptrace::interrupt(pid(o)).is_ok() {
                waiting.insert(o);
                if let Some(th) = self.threads.get_mut(&o) {
                    th.held = true;
                }
            }
        }
        let mut pure = Vec::new();
        while !waiting.is_empty() {
            let (o, st) = match sys::wait_raw(-1, WAIT_ALL) {
                Ok((o, st)) => (o as u32, st),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            let mine = waiting.remove(&o);
            if let Some(th) = self.threads.get_mut(&o) {
                if is_stop(st) && th.state != TState::New {
                    if mine {
                        if let Ev::Event(libc::PTRACE_EVENT_STOP, sig) = decode(st) {
                            th.state = TState::Stopped;
                            th.last = Some(st);
                            th.relisten = is_group_stop_signal(sig);
                            th.held = false;
                            pure.push(o);
                            continue;
                        }
                    }
                    th.state = TState::Stopped;
                    th.last = Some(st);
                }
            }
            self.deferred.push_back((o, st));
        }
        pure
    }

    fn resume_interrupted(&mut self, list: Vec<u32>) {
        for o in list {
            let relisten = self.threads.get(&o).is_some_and(|x| x.relisten);
            if relisten {
                self.listen(o);
            } else {
                self.resume(o, 0);
            }
        }
    }

    /// Executes the original instruction at `addr` in thread `t` (stopped there, rip
    /// rewound) and puts the breakpoint back; other threads sharing the memory are held
    /// meanwhile.
    fn step_over(&mut self, t: u32, memk: u32, addr: u64) {
        let others: Vec<u32> = self
            .threads
            .iter()
            .filter(|(&k, x)| {
                k != t
                    && x.mem == memk
                    && !x.vfork_wait
                    && matches!(x.state, TState::Running | TState::Listening)
            })
            .map(|(&k, _)| k)
            .collect();
        let held = if others.is_empty() {
            Vec::new()
        } else {
            self.stop_threads(&others)
        };
        let Some(orig) = self
            .procs
            .get(&memk)
            .and_then(|p| p.bps.get(&addr))
            .map(|b| b.orig)
        else {
            self.resume(t, 0);
            self.resume_interrupted(held);
            return;
        };
        if let Some(p) = self.procs.get(&memk) {
            let _ = p.poke(addr, orig);
        }
        // Signals that arrive during the step are held back and delivered afterwards,
        // so the handler never runs with the breakpoint removed.
        let mut signals: Vec<i32> = Vec::new();
        let mut finished = true;
        let mut stray_stops = 0;
        let tgid = self.threads.get(&t).map(|x| x.pid).unwrap_or(t);
        loop {
            if sys::step(t as i32, 0).is_err() {
                finished = false;
                break;
            }
            let Ok(st) = wait_for(t) else {
                finished = false;
                break;
            };
            match decode(st) {
                Ev::Signal(libc::SIGTRAP) => break,
                // A leftover interrupt (this thread was interrupted while it already
                // had a stop to report): it traps before executing anything.
                Ev::Event(libc::PTRACE_EVENT_STOP, _) => {
                    stray_stops += 1;
                    if stray_stops > 16 {
                        self.defer_stop(t, st);
                        finished = false;
                        break;
                    }
                }
                Ev::Signal(sig) => {
                    let faulted = matches!(
                        sig,
                        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                    ) && ptrace::getsiginfo(pid(t)).is_ok_and(|si| si.si_code > 0)
                        && ptrace::getregs(pid(t)).is_ok_and(|r| r.rip == addr);
                    if faulted || signals.len() > 64 {
                        // The instruction itself faults: deliver the fault as usual.
                        self.defer_stop(t, st);
                        finished = false;
                        break;
                    }
                    signals.push(sig);
                }
                _ => {
                    // An exit or a ptrace event (the instruction was a syscall):
                    // handled later; the instruction is under way, so the breakpoint
                    // can go back now.
                    self.defer_stop(t, st);
                    finished = false;
                    break;
                }
            }
        }
        if let Some(p) = self.procs.get(&memk) {
            if p.bps.contains_key(&addr) {
                let _ = p.poke(addr, INT3);
            }
        }
        let mut rest = signals.as_slice();
        if finished {
            let first = rest.first().copied().unwrap_or(0);
            rest = rest.get(1..).unwrap_or(&[]);
            self.resume(t, first);
        }
        for &s in rest {
            let _ = sys::tgkill(tgid as i32, t as i32, s);
        }
        self.resume_interrupted(held);
    }

    fn defer_stop(&mut self, t: u32, st: i32) {
        if let Some(th) = self.threads.get_mut(&t) {
            th.state = TState::Stopped;
            th.last = Some(st);
        }
        self.deferred.push_front((t, st));
    }

    /// Event handling while detaching: only keeps the thread table true.
    fn cleanup_event(&mut self, t: u32, st: i32) {
        let ev = decode(st);
        if !self.threads.contains_key(&t) {
            if is_stop(st) {
                self.unclaimed.insert(t, st);
            } else {
                self.unclaimed.remove(&t);
            }
            return;
        }
        match ev {
            Ev::Exited(code) => self.thread_gone(t, TargetEnd::Exited(code)),
            Ev::Signaled(sig, core) => self.thread_gone(
                t,
                TargetEnd::Signaled {
                    signal: sig,
                    name: signal_name(sig),
                    core,
                },
            ),
            Ev::Other => {}
            _ => {
                if let Some(th) = self.threads.get_mut(&t) {
                    th.state = TState::Stopped;
                    th.last = Some(st);
                    if th.setup == Setup::Fork {
                        // Not followed any more: it only needs cleaning, like the rest.
                        th.setup = Setup::None;
                    }
                }
                match ev {
                    Ev::Event(e, _)
                        if e == libc::PTRACE_EVENT_CLONE
                            || e == libc::PTRACE_EVENT_FORK
                            || e == libc::PTRACE_EVENT_VFORK =>
                    {
                        if let Ok(child) = ptrace::getevent(pid(t)) {
                            self.new_task(t, child as u32, e);
                        }
                    }
                    Ev::Event(libc::PTRACE_EVENT_EXEC, _) => {
                        let former = ptrace::getevent(pid(t)).map(|v| v as u32).unwrap_or(t);
                        if former != t {
                            if let Some(old) = self.threads.remove(&former) {
                                self.threads.insert(t, old);
                            }
                        }
                        if let Some(th) = self.threads.get_mut(&t) {
                            th.state = TState::Stopped;
                            th.last = Some(st);
                            th.frames.clear();
                            let old_mem = th.mem;
                            th.mem = t;
                            th.pid = t;
                            if old_mem == t {
                                self.threads
                                    .retain(|&k, x| k == t || x.mem != t || x.pid != t);
                            }
                        }
                        // A fresh image has none of our bytes.
                        self.procs.insert(t, Proc::open(t));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Stops everything, removes every breakpoint from every address space, rewinds
    /// threads caught on one, and detaches with pending signals preserved.
    pub(crate) fn detach_all(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        let mut interrupted: HashSet<u32> = HashSet::new();
        for _round in 0..100_000 {
            while let Some((t, st)) = self.deferred.pop_front() {
                self.cleanup_event(t, st);
            }
            let mut pending = false;
            let ids: Vec<(u32, TState, u32, bool)> = self
                .threads
                .iter()
                .map(|(&k, x)| (k, x.state, x.pid, x.vfork_wait))
                .collect();
            for (k, state, p, vfork_wait) in ids {
                match state {
                    // Released only once its child (which we hold) execs or exits:
                    // detached after the others, below.
                    TState::Running if vfork_wait => {}
                    TState::Running | TState::Listening => {
                        pending = true;
                        if interrupted.insert(k) && ptrace::interrupt(pid(k)).is_err() {
                            // Gone already: its exit report will come.
                        }
                    }
                    TState::New => pending = true,
                    // An exiting leader waits for its other threads, which we hold:
                    // only non-leaders are waited for.
                    TState::Exiting if k != p => pending = true,
                    _ => {}
                }
            }
            if !pending {
                break;
            }
            match sys::wait_raw(-1, WAIT_ALL) {
                Ok((t, st)) => self.cleanup_event(t as u32, st),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        for p in self.procs.values() {
            p.clean_memory();
            p.restore_semaphores();
        }
        let threads: Vec<(u32, u32, Option<i32>, TState)> = self
            .threads
            .iter()
            .map(|(&k, x)| (k, x.mem, x.last, x.state))
            .collect();
        for (t, memk, last, state) in threads {
            if state != TState::Stopped {
                continue;
            }
            let sig = self.settle_for_detach(t, memk, last);
            let _ = sys::detach(t as i32, sig);
        }
        for (t, _) in std::mem::take(&mut self.unclaimed) {
            let _ = sys::detach(t as i32, 0);
        }
        self.detach_vfork_parents();
        self.threads.clear();
        self.procs.clear();
    }

    /// Waits (bounded) for threads blocked in vfork to be released by their children,
    /// now detached, and detaches them at their `PTRACE_EVENT_VFORK_DONE` stop.
    fn detach_vfork_parents(&mut self) {
        let mut waiting: HashSet<u32> = self
            .threads
            .iter()
            .filter(|(_, x)| x.vfork_wait && x.state == TState::Running)
            .map(|(&k, _)| k)
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !waiting.is_empty() && std::time::Instant::now() < deadline {
            match sys::wait_raw(-1, WAIT_ALL | libc::WNOHANG) {
                Ok((0, _)) => std::thread::sleep(Duration::from_millis(2)),
                Ok((t, st)) => {
                    let t = t as u32;
                    if is_stop(st) {
                        let sig = match self.threads.get(&t) {
                            Some(th) if waiting.contains(&t) => {
                                let memk = th.mem;
                                self.settle_for_detach(t, memk, Some(st))
                            }
                            _ => 0,
                        };
                        let _ = sys::detach(t as i32, sig);
                    }
                    waiting.remove(&t);
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// Decides the signal to detach thread `t` with, rewinding it if it is caught on one
    /// of our (now removed) breakpoints.
    fn settle_for_detach(&mut self, t: u32, memk: u32, last: Option<i32>) -> i32 {
        let in_history = |s: &Self, a: u64| {
            s.procs
                .get(&memk)
                .is_some_and(|p| p.history.contains_key(&a))
        };
        let mut last = last;
        for _ in 0..8 {
            match last.map(decode) {
                Some(Ev::Signal(libc::SIGTRAP)) => {
                    let ours = ptrace::getsiginfo(pid(t)).is_ok_and(|si| si.si_code == SI_KERNEL);
                    if let Ok(mut regs) = ptrace::getregs(pid(t)) {
                        if ours && in_history(self, regs.rip.wrapping_sub(1)) {
                            regs.rip -= 1;
                            let _ = ptrace::setregs(pid(t), regs);
                            return 0;
                        }
                    }
                    return libc::SIGTRAP;
                }
                Some(Ev::Signal(sig)) => return sig,
                // Detached at a system call stop, the call simply goes on (or returns).
                Some(Ev::Syscall) => return 0,
                _ => {
                    // Interrupted right after trapping on a breakpoint: the SIGTRAP is
                    // still queued. Let the thread take it (our bytes are out), then
                    // rewind it.
                    let Ok(regs) = ptrace::getregs(pid(t)) else {
                        return 0;
                    };
                    if !(in_history(self, regs.rip.wrapping_sub(1))
                        && procfs::thread_signal_pending(t, libc::SIGTRAP))
                    {
                        return 0;
                    }
                    if sys::cont(t as i32, 0).is_err() {
                        return 0;
                    }
                    match wait_for(t) {
                        Ok(st) if is_stop(st) => last = Some(st),
                        _ => return 0,
                    }
                }
            }
        }
        0
    }
}
