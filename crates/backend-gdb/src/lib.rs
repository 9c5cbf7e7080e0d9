//! A backend speaking the GDB Remote Serial Protocol: probes kernels running in QEMU
//! (through its gdbstub) and remote Linux processes (through gdbserver).
//!
//! Overview: [`GdbBackend::connect`] opens the TCP connection, drains the stub's
//! unsolicited stop reply, negotiates features (`qSupported`, no-ack mode, `vCont`) and
//! reads the target description to learn where the registers are. [`GdbBackend::run`]
//! checks, for every probe site, that the target's bytes equal the module file's (so a
//! kernel that does not match its debug file is refused), inserts `Z0` breakpoints,
//! continues, and at each stop reads the registers, runs the capture plan through
//! [`backend::execute`] with `m` memory reads, emits the record and steps over the
//! breakpoint. On every exit path it removes all its breakpoints and detaches, so the
//! target runs on with nothing left behind.
//!
//! Layout: `packet` is the sans-IO framing codec, `conn` the only module touching a
//! socket, `commands/*` one module per packet family, `session` the request/stop state
//! machine, `elf` the module file, `tracer` the probing loop.
//!
//! Targets: a stub that offers `qXfer:auxv:read` is a process (gdbserver): records carry
//! its pid and Linux tid, breakpoints are stepped over by remove/step/reinsert, and
//! signals the process receives are passed back to it. Any other stub is a machine
//! (QEMU): records carry pid 0, tid = the gdb thread id and cpu = tid - 1, and the
//! probed instruction is stepped with its breakpoint in place (checked on the first hit,
//! falling back to remove/step/reinsert if the stub does not execute it).
//!
//! Cost: one hit is `c`, `g`, one `m` per distinct memory range the plan reads, and `s`
//! (plus `z0`/`Z0` on gdbserver). Measured with `examples/hitrate.rs` (debug build, this
//! 2-core host): QEMU 7.2 TCG + GNU Mach, `mach_msg_trap` in a loop: 290-350 hits/s,
//! 3.0 packets per hit (each resume flushes QEMU's translation cache, ~2 ms); gdbserver
//! 13 on a -O0 loop: ~1150 hits/s, 5.0 packets per hit.
//!
//! Debugging: `SNAPTAP_GDB_TRACE=1` prints every packet to stderr.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use backend::{EventSender, RunSummary, StopToken};
use capture_plan::PlanSet;

pub mod commands;
pub mod conn;
pub mod elf;
pub mod packet;
pub mod session;
mod tracer;

#[cfg(test)]
mod tests;

pub use tracer::Stats;

/// How to reach the stub and what is being probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GdbOptions {
    /// `host:port` of the gdbstub (QEMU `-s` is `localhost:1234`) or gdbserver.
    pub addr: String,
    /// Bound on the TCP connect and on every request's reply.
    pub connect_timeout: Duration,
    /// The ELF whose sites are installed (a kernel such as `gnumach.dbg`, or the
    /// program gdbserver runs); sites of any other module are reported as failed.
    pub module: PathBuf,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No stub listens there (or the connection failed).
    #[error("{0}")]
    Connect(String),
    /// The stub answered something we cannot use.
    #[error("gdb remote protocol: {0}")]
    Protocol(String),
    /// The stub did not answer in time.
    #[error("the gdbstub did not answer in time ({0})")]
    Timeout(String),
    /// The connection was closed by the stub (the VM or gdbserver is gone).
    #[error("the gdbstub closed the connection")]
    Disconnected,
    /// The module file cannot be used.
    #[error("{0}")]
    Module(String),
    /// The plan set failed verification.
    #[error("invalid capture plan: {0}")]
    Plan(#[from] capture_plan::PlanError),
    /// `run` was called twice (the first run detached).
    #[error("the backend has already run")]
    AlreadyRan,
}

/// A connected gdb remote target.
#[derive(Debug)]
pub struct GdbBackend {
    core: tracer::Core,
}

impl GdbBackend {
    /// Connects and prepares the session (drains the initial stop reply, `qSupported`,
    /// no-ack mode, `vCont?`, target description). The target is left stopped.
    /// Errors read like "no gdbstub at localhost:1234: Connection refused".
    pub fn connect(opts: GdbOptions) -> Result<GdbBackend, Error> {
        Ok(GdbBackend {
            core: tracer::Core::connect(opts)?,
        })
    }

    /// Installs the sites, runs the target and emits records until `stop` is requested
    /// or the target ends (process exit, connection closed); then removes every
    /// breakpoint and detaches. Returns with no breakpoint left on every path the
    /// connection allows.
    pub fn run(
        &mut self,
        plans: &PlanSet,
        tx: &EventSender,
        stop: &StopToken,
    ) -> Result<RunSummary, Error> {
        self.core.run(plans, tx, stop)
    }

    /// Deferred verification: a site whose address the target cannot read yet (a VM
    /// started with `-S` has no paging at the reset vector) gets its breakpoint anyway
    /// and its bytes are compared at its first hit (a mismatch then removes it and
    /// reports the site as failed). Off by default: such sites are refused.
    pub fn defer_unreadable_sites(&mut self, on: bool) {
        self.core.defer_unreadable = on;
    }

    /// Counters of the last run (hits, stops, packets, elapsed time).
    pub fn stats(&self) -> Stats {
        self.core.stats.clone()
    }

    /// The target's register set is x86_64 (else i386).
    pub fn is_x86_64(&self) -> bool {
        self.core.map.arch == commands::regs::Arch::X86_64
    }

    /// The target is a whole machine (QEMU: records carry pid 0 and the vCPU) rather than
    /// a process (gdbserver: it offers the auxiliary vector).
    pub fn is_machine(&self) -> bool {
        self.core.machine
    }
}
