//! The one chokepoint for raw system calls that need `unsafe`: forking the target, the
//! wake-up signal handler, waiting, and the ptrace requests that carry raw signal numbers.
//!
//! nix's typed wrappers cannot carry real-time signal numbers (its `Signal` enum has no
//! SIGRTMIN+n) and its `waitpid` fails on such a status after consuming it, so resume and
//! wait requests go through libc here with plain integers.

use std::ffi::CString;
use std::os::fd::RawFd;

use nix::errno::Errno;

/// Forks a child that waits for one byte (or EOF) on `sync_r`, then `execv`s `path` with
/// `argv`. If the exec fails the child writes its errno (4 bytes, native endian) to
/// `err_w` and exits with status 127. `close_in_child` are the parent's pipe ends.
pub fn fork_exec_on_signal(
    path: &CString,
    argv: &[CString],
    sync_r: RawFd,
    err_w: RawFd,
    close_in_child: &[RawFd],
) -> Result<i32, Errno> {
    // Everything the child touches is prepared before the fork: after it, a child of a
    // multi-threaded parent may only call async-signal-safe functions.
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let closes: Vec<RawFd> = close_in_child.to_vec();
    // SAFETY: fork has no memory-safety preconditions; the child branch below only calls
    // async-signal-safe functions (sigprocmask, signal, close, read, execv, write, _exit)
    // on memory allocated before the fork, and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Errno::last());
    }
    if pid == 0 {
        // SAFETY: see above; all pointers are valid for the duration of these calls
        // (argv/path CStrings and the pointer vector live in the parent's copied heap).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            // Rust ignores SIGPIPE; an ignored disposition would survive exec.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            for fd in &closes {
                libc::close(*fd);
            }
            let mut b = [0u8; 1];
            libc::read(sync_r, b.as_mut_ptr().cast(), 1);
            libc::execv(path.as_ptr(), ptrs.as_ptr());
            let e = (*libc::__errno_location()).to_ne_bytes();
            libc::write(err_w, e.as_ptr().cast(), 4);
            libc::_exit(127);
        }
    }
    Ok(pid)
}

extern "C" fn wake_noop(_sig: libc::c_int) {}

/// Installs a do-nothing handler for `sig` without `SA_RESTART`, so that a blocking
/// `waitpid` in the thread that receives it returns `EINTR`.
pub fn install_wake_handler(sig: i32) -> Result<(), Errno> {
    // SAFETY: the sigaction struct is zero-initialised then filled with a valid handler
    // (which does nothing and is therefore async-signal-safe) and an empty mask.
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = wake_noop as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    Errno::result(r).map(drop)
}

/// `waitpid(pid, flags)` returning the raw status. `EINTR` is returned as an error.
pub fn wait_raw(pid: i32, flags: i32) -> Result<(i32, i32), Errno> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable int for the duration of the call.
    let r = unsafe { libc::waitpid(pid, &mut status, flags) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok((r, status))
}

fn ptrace_sig(req: libc::c_uint, tid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: CONT, SYSCALL, SINGLESTEP, DETACH and LISTEN take no pointer arguments: `addr` is
    // ignored and `data` is a signal number passed by value.
    let r = unsafe {
        libc::ptrace(
            req,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            sig as libc::c_long as *mut libc::c_void,
        )
    };
    Errno::result(r).map(drop)
}

/// `PTRACE_CONT` delivering signal number `sig` (0 for none).
pub fn cont(tid: i32, sig: i32) -> Result<(), Errno> {
    ptrace_sig(libc::PTRACE_CONT, tid, sig)
}

/// `PTRACE_SYSCALL` delivering signal number `sig` (0 for none): like `cont`, but the
/// thread also stops at the next system call entry or exit.
pub fn cont_syscall(tid: i32, sig: i32) -> Result<(), Errno> {
    ptrace_sig(libc::PTRACE_SYSCALL, tid, sig)
}

/// What kind of system call stop thread `tid` is in, from `PTRACE_GET_SYSCALL_INFO`:
/// `PTRACE_SYSCALL_INFO_ENTRY` (1), `_EXIT` (2), `_SECCOMP` (3) or `_NONE` (0).
pub fn syscall_stop_kind(tid: i32) -> Result<u8, Errno> {
    // Only the first byte (`op`) is wanted; the kernel copies at most the size we give,
    // so the buffer is small and needs no layout of the whole structure.
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes, the size passed in
    // `addr`; the kernel writes no more than that.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            tid,
            buf.len() as *mut libc::c_void,
            buf.as_mut_ptr().cast::<libc::c_void>(),
        )
    };
    Errno::result(r)?;
    Ok(buf[0])
}

/// `PTRACE_SINGLESTEP` delivering signal number `sig` (0 for none).
pub fn step(tid: i32, sig: i32) -> Result<(), Errno> {
    ptrace_sig(libc::PTRACE_SINGLESTEP, tid, sig)
}

/// `PTRACE_DETACH` delivering signal number `sig` (0 for none).
pub fn detach(tid: i32, sig: i32) -> Result<(), Errno> {
    ptrace_sig(libc::PTRACE_DETACH, tid, sig)
}

/// `PTRACE_LISTEN`: leave a group-stopped tracee stopped but let it report SIGCONT.
pub fn listen(tid: i32) -> Result<(), Errno> {
    ptrace_sig(libc::PTRACE_LISTEN, tid, 0)
}

/// `tgkill(tgid, tid, sig)`: re-queues a signal we had to hold back during a step.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: a plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    Errno::result(r).map(drop)
}

/// The calling thread's pthread handle.
pub fn pthread_self() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() }
}

/// Sends `sig` to thread `t` of this process. The caller guarantees `t` is alive.
pub fn pthread_kill(t: libc::pthread_t, sig: i32) -> Result<(), Errno> {
    // SAFETY: `t` is a live thread of this process (the caller holds the lock that the
    // thread clears before it leaves the code that may be signalled).
    let r = unsafe { libc::pthread_kill(t, sig) };
    if r != 0 {
        return Err(Errno::from_raw(r));
    }
    Ok(())
}
