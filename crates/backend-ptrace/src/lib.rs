//! The Linux-process backend: ptrace on x86_64, software breakpoints, capture plans
//! executed while the target thread is stopped.
//!
//! Overview: [`PtraceBackend::new`] spawns a command (stopped right after its `execve`)
//! or attaches to every thread of a running process; [`PtraceBackend::run`] installs the
//! [`capture_plan::PlanSet`]'s sites as `int3` bytes, lets the target run, turns each hit
//! into a [`capture_plan::Record`] through [`backend::execute`], and on every exit path
//! (target exit, stop request, error) removes all its breakpoints and detaches, so that
//! the target runs on unharmed. The backend never sees DWARF or script code.
//!
//! Getting past a breakpoint: the probed instruction is copied (relocated with iced-x86)
//! into a pad in the unused tail of its module's executable segment, followed by a jump
//! back, and the thread continues there: one ptrace stop per hit, and the `int3` never
//! leaves memory, so other threads are never stopped. Instructions that cannot run out
//! of line (jumps, calls; a `ret` is emulated) are single-stepped with every other thread
//! of the address space held by `PTRACE_INTERRUPT`. On this project's machines (a VM
//! where one ptrace stop round trip costs ~35 µs) a hit copying 3 fields costs 25-35 µs,
//! the single-step path ~80 µs; the `bench_ns_per_hit` test prints both. A traced
//! system call (two stops: entry and exit) costs 30-70 µs there (`bench_ns_per_syscall`).
//!
//! System call sites (`process.syscall`, `.return`) resume the threads of the images
//! that map their module with `PTRACE_SYSCALL` (the others keep `PTRACE_CONT`); USDT
//! semaphores are raised while the session runs and lowered at detach; every executable
//! mapping is announced with `backend::Event::ModuleMapped`. The `tracer` module docs
//! list exactly what the backend writes into a target.
//!
//! Layout: `tracer` holds the state machine; `sys` is the only module with `unsafe`
//! (raw syscalls); `procfs` and `elf` read /proc files and ELF headers; `pad` builds the
//! out-of-line pads.

use std::fmt;

use backend::{EventSender, RunSummary, StopToken};
use capture_plan::PlanSet;

mod elf;
mod pad;
mod procfs;
mod sys;
mod tracer;

#[cfg(test)]
mod tests;

/// How the target is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Run a command (`argv[0]` is looked up in `PATH` when it has no `/`).
    Spawn {
        /// The command and its arguments.
        argv: Vec<String>,
    },
    /// Attach to every thread of a running process.
    Attach {
        /// Its pid.
        pid: u32,
    },
}

/// Backend options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Trace the children the target forks (otherwise they are cleaned and detached).
    pub follow_forks: bool,
}

/// What can go wrong while starting or running the backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pid to attach to does not exist.
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    /// `PTRACE_SEIZE` was refused.
    #[error("cannot attach to {pid}: {reason}{hint}")]
    Attach {
        /// The process.
        pid: u32,
        /// The system's reason, e.g. `Operation not permitted`.
        reason: String,
        /// A hint for the user (may be empty).
        hint: String,
    },
    /// The command could not be executed.
    #[error("cannot execute '{program}': {reason}")]
    Exec {
        /// The program as given.
        program: String,
        /// The system's reason, e.g. `No such file or directory`.
        reason: String,
    },
    /// `Launch::Spawn` with an empty argument vector.
    #[error("no command to execute")]
    EmptyCommand,
    /// The plan set failed verification.
    #[error("invalid capture plan: {0}")]
    Plan(#[from] capture_plan::PlanError),
    /// `run` was called twice.
    #[error("the backend has already run")]
    AlreadyRan,
    /// `run` was called on another thread than `new` (ptrace ties tracees to a thread).
    #[error("the ptrace backend must run on the thread that created it")]
    WrongThread,
    /// A system call failed in a way the backend cannot recover from.
    #[error("{what}: {reason}")]
    Sys {
        /// What was being done.
        what: String,
        /// The system's reason.
        reason: String,
    },
}

impl Error {
    pub(crate) fn sys(what: impl fmt::Display, e: impl fmt::Display) -> Error {
        Error::Sys {
            what: what.to_string(),
            reason: e.to_string(),
        }
    }
}

/// The ptrace backend for one target process (and, with `follow_forks`, its children).
pub struct PtraceBackend {
    core: tracer::Core,
}

impl fmt::Debug for PtraceBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PtraceBackend")
            .field("pid", &self.pid())
            .finish()
    }
}

impl PtraceBackend {
    /// Spawns the command (fork, then `execv` once the child is seized; it stays stopped
    /// after the exec, before its first instruction) or attaches to every thread in
    /// /proc/PID/task with `PTRACE_SEIZE`. Must be called on the thread that will call
    /// [`PtraceBackend::run`]: ptrace ties tracees to the tracing thread.
    pub fn new(launch: Launch, opts: Options) -> Result<PtraceBackend, Error> {
        let core = match launch {
            Launch::Spawn { argv } => tracer::Core::spawn(&argv, opts)?,
            Launch::Attach { pid } => tracer::Core::attach(pid, opts)?,
        };
        Ok(PtraceBackend { core })
    }

    /// The main target's pid.
    pub fn pid(&self) -> u32 {
        self.core.main_pid()
    }

    /// Testing aid: never execute probed instructions out of line, always single-step
    /// them (the slower path that stops the other threads of the process).
    #[doc(hidden)]
    pub fn force_single_step(&mut self, on: bool) {
        self.core.force_single_step(on);
    }

    /// Installs the sites, lets the target run and emits records until the main target
    /// ends or `stop` is requested; then removes every breakpoint from every traced
    /// process and detaches. Returns on every path (errors included) with all
    /// breakpoints removed.
    pub fn run(
        &mut self,
        plans: &PlanSet,
        tx: &EventSender,
        stop: &StopToken,
    ) -> Result<RunSummary, Error> {
        self.core.run(plans, tx, stop)
    }
}
