//! What every backend shares: the plan interpreter, the bounded event queue, the stop token.
//!
//! Overview: a backend installs [`capture_plan::ProbeSite`]s in its target and, at each
//! hit, calls [`execute`] with a [`TargetAccess`] view of the stopped target; the
//! resulting [`capture_plan::Record`] goes into an [`EventSender`] (bounded, counting
//! drops). The driver reads [`Event`]s from the [`EventReceiver`] and asks the backend to
//! stop through a [`StopToken`]. Backends never see script code or DWARF.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use capture_plan::{CapturePlan, DwarfReg, FieldStatus, Op, Record};

#[cfg(test)]
mod tests;

/// Read-only access to a stopped target: registers and memory. No write path exists.
pub trait TargetAccess {
    /// The value of a DWARF-numbered register, or `None` if the target has no such one.
    fn reg(&mut self, reg: DwarfReg) -> Option<u64>;
    /// Fill `buf` from target memory at `addr`; `Err(addr_that_failed)` if any byte
    /// cannot be read.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), u64>;
}

/// Executes `plan` against `target`, appending one [`FieldStatus`] per field (and the
/// bytes) to `rec`. A fault aborts only the field it happened in.
///
/// A return plan runs on the record its entry plan filled, so that
/// [`Op::EntryField`] reads the values saved at the function's entry.
///
/// The plan must have passed [`CapturePlan::verify`] (a return plan
/// [`CapturePlan::verify_return`]); a malformed one still cannot panic here (stack
/// underflow reads as zero, a missing entry field is a fault at address 0).
pub fn execute(plan: &CapturePlan, target: &mut dyn TargetAccess, rec: &mut Record) {
    let mut stack: Vec<u64> = Vec::with_capacity(8);
    for field in &plan.fields {
        stack.clear();
        let status = run_field(&field.ops, &mut stack, target, rec);
        rec.fields.push(status);
    }
}

/// The value of an earlier field of `rec` (little-endian, zero-extended), or its
/// status when it has no bytes.
fn entry_value(rec: &Record, i: u32) -> Result<u64, FieldStatus> {
    let bytes = rec.field(i as usize)?;
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    Ok(u64::from_le_bytes(b))
}

fn run_field(
    ops: &[Op],
    stack: &mut Vec<u64>,
    t: &mut dyn TargetAccess,
    rec: &mut Record,
) -> FieldStatus {
    let start = rec.data.len();
    macro_rules! pop {
        () => {
            stack.pop().unwrap_or(0)
        };
    }
    for op in ops {
        match op {
            Op::Reg(r) => match t.reg(*r) {
                Some(v) => stack.push(v),
                None => return FieldStatus::NoRegister(r.0),
            },
            Op::Const(c) => stack.push(*c),
            Op::EntryField(i) => match entry_value(rec, *i) {
                Ok(v) => stack.push(v),
                Err(status) => {
                    rec.data.truncate(start);
                    return status;
                }
            },
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::And
            | Op::Or
            | Op::Xor
            | Op::Shl
            | Op::Shr
            | Op::Sar => {
                let b = pop!();
                let a = pop!();
                stack.push(match op {
                    Op::Add => a.wrapping_add(b),
                    Op::Sub => a.wrapping_sub(b),
                    Op::Mul => a.wrapping_mul(b),
                    Op::And => a & b,
                    Op::Or => a | b,
                    Op::Xor => a ^ b,
                    Op::Shl => a << (b & 63),
                    Op::Shr => a >> (b & 63),
                    _ => ((a as i64) >> (b & 63)) as u64,
                });
            }
            Op::Neg => {
                let a = pop!();
                stack.push(a.wrapping_neg());
            }
            Op::Not => {
                let a = pop!();
                stack.push(!a);
            }
            Op::SignExtend(bits) => {
                let a = pop!();
                let sh = 64 - u32::from((*bits).clamp(1, 64));
                stack.push((((a << sh) as i64) >> sh) as u64);
            }
            Op::Deref(n) => {
                let addr = pop!();
                let n = usize::from(*n).min(8);
                let mut b = [0u8; 8];
                if let Err(a) = t.read(addr, &mut b[..n]) {
                    return FieldStatus::Fault { addr: a };
                }
                stack.push(u64::from_le_bytes(b));
            }
            Op::EmitValue(n) => {
                let v = pop!();
                let n = usize::from(*n).min(8);
                rec.data.extend_from_slice(&v.to_le_bytes()[..n]);
            }
            Op::EmitBytes(len) => {
                let addr = pop!();
                rec.data.resize(start + *len as usize, 0);
                if let Err(a) = t.read(addr, &mut rec.data[start..]) {
                    rec.data.truncate(start);
                    return FieldStatus::Fault { addr: a };
                }
            }
            Op::EmitString(max) => {
                let addr = pop!();
                if let Err(a) = read_cstring(t, addr, *max as usize, &mut rec.data) {
                    rec.data.truncate(start);
                    return FieldStatus::Fault { addr: a };
                }
            }
        }
    }
    FieldStatus::Ok {
        offset: start as u32,
        len: (rec.data.len() - start) as u32,
    }
}

/// Appends the NUL-terminated string at `addr` (at most `max` bytes, NUL excluded) to
/// `out`, reading page by page so that a string ending just before an unmapped page is
/// still read whole.
fn read_cstring(
    t: &mut dyn TargetAccess,
    addr: u64,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), u64> {
    const PAGE: u64 = 4096;
    let mut cur = addr;
    let mut left = max;
    let mut buf = [0u8; 256];
    while left > 0 {
        let to_page_end = (PAGE - (cur % PAGE)) as usize;
        let n = left.min(to_page_end).min(buf.len());
        if t.read(cur, &mut buf[..n]).is_err() {
            // The chunk may straddle the end of readable memory although the string
            // ends before it: retry byte by byte up to the first NUL or fault.
            for i in 0..n {
                let mut b = [0u8; 1];
                if t.read(cur + i as u64, &mut b).is_err() {
                    return Err(cur + i as u64);
                }
                if b[0] == 0 {
                    return Ok(());
                }
                out.push(b[0]);
            }
            cur = cur.wrapping_add(n as u64);
            left -= n;
            continue;
        }
        if let Some(z) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..z]);
            return Ok(());
        }
        out.extend_from_slice(&buf[..n]);
        cur = cur.wrapping_add(n as u64);
        left -= n;
    }
    Ok(())
}

/// Why a traced process (or machine) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetEnd {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal (number, name, core dumped).
    Signaled {
        /// Signal number.
        signal: i32,
        /// Signal name such as `SIGSEGV`.
        name: String,
        /// A core was dumped.
        core: bool,
    },
}

/// What a backend tells the driver.
#[derive(Clone, Debug)]
pub enum Event {
    /// A probe hit (or process begin/end).
    Record(Record),
    /// The main target (the `-c` command or the `-x` process) ended; the session ends.
    TargetEnded {
        /// Its pid.
        pid: u32,
        /// How.
        how: TargetEnd,
    },
    /// An executable file is mapped in a traced process at this load bias (link-time
    /// address + bias = runtime address). Lets the driver symbolise and unwind stacks.
    ModuleMapped {
        /// Process id.
        pid: u32,
        /// Canonical path of the file.
        path: std::path::PathBuf,
        /// Load bias.
        bias: u64,
    },
    /// A non-fatal problem worth a warning (a site that could not be installed, a
    /// process that could not be followed).
    Warning(String),
}

/// Counters shared by the two ends of the queue.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Records offered to the queue.
    pub sent: AtomicU64,
    /// Records dropped because the queue was full (or the receiver gone).
    pub dropped: AtomicU64,
}

/// The producing end of the bounded event queue.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: SyncSender<Event>,
    stats: Arc<QueueStats>,
}

/// The consuming end of the bounded event queue.
#[derive(Debug)]
pub struct EventReceiver {
    rx: Receiver<Event>,
    stats: Arc<QueueStats>,
}

/// Creates a queue holding at most `capacity` events.
pub fn event_queue(capacity: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let stats = Arc::new(QueueStats::default());
    (
        EventSender {
            tx,
            stats: stats.clone(),
        },
        EventReceiver { rx, stats },
    )
}

impl EventSender {
    /// Offers a record without blocking; a full queue drops it and counts the drop.
    pub fn record(&self, rec: Record) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Event::Record(rec)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends a control event (target ended, warning), waiting for room: these are never
    /// dropped while the receiver lives.
    pub fn control(&self, ev: Event) {
        let _ = self.tx.send(ev);
    }
}

impl EventReceiver {
    /// Waits up to `timeout` for the next event; `Ok(None)` on timeout, `Err(())` once
    /// every sender is gone and the queue is empty.
    #[allow(clippy::result_unit_err)]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Event>, ()> {
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(()),
        }
    }

    /// Takes an event if one is ready.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Records offered so far.
    pub fn sent(&self) -> u64 {
        self.stats.sent.load(Ordering::Relaxed)
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }
}

type Waker = Box<dyn Fn() + Send>;

/// Asks a running backend to detach and return. Cloneable; `request` is idempotent.
#[derive(Clone, Default)]
pub struct StopToken {
    flag: Arc<AtomicBool>,
    waker: Arc<std::sync::Mutex<Option<Waker>>>,
}

impl std::fmt::Debug for StopToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopToken")
            .field("requested", &self.is_requested())
            .finish()
    }
}

impl StopToken {
    /// A token not yet triggered.
    pub fn new() -> StopToken {
        StopToken::default()
    }

    /// Requests the stop and wakes the backend if it registered a waker.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                w();
            }
        }
    }

    /// True once a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Registers how to interrupt the backend's blocking wait (e.g. signal its thread).
    pub fn set_waker(&self, w: Box<dyn Fn() + Send>) {
        if let Ok(mut g) = self.waker.lock() {
            *g = Some(w);
        }
    }
}

/// Summary a backend returns after it detached.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Probe hits seen (records offered).
    pub hits: u64,
    /// Sites that could not be installed, with the reason.
    pub failed_sites: Vec<String>,
}
