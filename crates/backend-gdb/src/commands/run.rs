//! Execution control: `c`/`s`/`vCont`, stop replies (`T`, `S`, `W`, `X`, `N`), thread ids.

use crate::packet::{from_hex, parse_hex_u64};
use crate::session::{RunState, Session};
use crate::Error;

/// A thread as the stub names it: `TID`, or `pPID.TID` in multiprocess mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadId {
    /// The process, when the stub said (multiprocess).
    pub pid: Option<u64>,
    /// The thread (QEMU: vCPU index + 1; gdbserver: the Linux tid). `u64::MAX` is "all".
    pub tid: u64,
}

fn parse_id(s: &[u8]) -> Option<u64> {
    if s == b"-1" {
        Some(u64::MAX)
    } else {
        parse_hex_u64(s)
    }
}

impl ThreadId {
    /// Parses `TID`, `pPID`, `pPID.TID` (hex, `-1` meaning all).
    pub fn parse(s: &[u8]) -> Option<ThreadId> {
        if let Some(rest) = s.strip_prefix(b"p") {
            let mut it = rest.splitn(2, |&b| b == b'.');
            let pid = parse_id(it.next()?)?;
            let tid = match it.next() {
                Some(t) => parse_id(t)?,
                None => u64::MAX,
            };
            Some(ThreadId {
                pid: Some(pid),
                tid,
            })
        } else {
            Some(ThreadId {
                pid: None,
                tid: parse_id(s)?,
            })
        }
    }

    /// The wire form, as the stub sent it.
    pub fn to_wire(&self) -> String {
        let t = if self.tid == u64::MAX {
            "-1".to_string()
        } else {
            format!("{:x}", self.tid)
        };
        match self.pid {
            Some(p) => format!("p{p:x}.{t}"),
            None => t,
        }
    }
}

/// What a stop reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReply {
    /// `S`/`T`: stopped with a signal (5 = SIGTRAP for breakpoints and steps).
    Signal {
        /// The signal number (GDB numbering).
        signal: u8,
        /// The `thread:` the stop happened in, if given.
        thread: Option<ThreadId>,
        /// Expedited registers: (stub register number, raw little-endian bytes).
        regs: Vec<(u32, Vec<u8>)>,
        /// The `core:` the thread stopped on, if given (gdbserver).
        core: Option<u32>,
    },
    /// `W`: the process exited with this code.
    Exited {
        /// Exit status.
        code: u8,
        /// `;process:PID` when given.
        pid: Option<u64>,
    },
    /// `X`: the process was killed by this signal.
    Killed {
        /// Signal number.
        signal: u8,
        /// `;process:PID` when given.
        pid: Option<u64>,
    },
    /// `N`: no thread left to resume.
    NoResumed,
}

/// Parses a stop reply; `None` if `p` is not one.
pub fn parse_stop(p: &[u8]) -> Option<StopReply> {
    let (&kind, rest) = p.split_first()?;
    match kind {
        b'S' | b'T' => {
            let signal = u8::try_from(parse_hex_u64(rest.get(..2)?)?).ok()?;
            let mut thread = None;
            let mut regs = Vec::new();
            let mut core = None;
            if kind == b'T' {
                for item in rest[2..].split(|&b| b == b';') {
                    let mut kv = item.splitn(2, |&b| b == b':');
                    let (Some(k), Some(v)) = (kv.next(), kv.next()) else {
                        continue;
                    };
                    if k == b"thread" {
                        thread = ThreadId::parse(v);
                    } else if k == b"core" {
                        core = parse_hex_u64(v).and_then(|c| u32::try_from(c).ok());
                    } else if let Some(n) = parse_hex_u64(k).filter(|_| k.len() <= 4) {
                        if let Some(bytes) = from_hex(v) {
                            regs.push((n as u32, bytes));
                        }
                    }
                }
            }
            Some(StopReply::Signal {
                signal,
                thread,
                regs,
                core,
            })
        }
        b'W' | b'X' => {
            // gdbserver sends `W0;process:PID`: the status is not always two digits.
            let mut items = rest.split(|&b| b == b';');
            let code = u8::try_from(parse_hex_u64(items.next()?)?).ok()?;
            let pid = items.find_map(|i| i.strip_prefix(b"process:").and_then(parse_hex_u64));
            Some(if kind == b'W' {
                StopReply::Exited { code, pid }
            } else {
                StopReply::Killed { signal: code, pid }
            })
        }
        b'N' if rest.is_empty() => Some(StopReply::NoResumed),
        _ => None,
    }
}

impl Session {
    /// Asks `vCont?` whether continue and step actions are available.
    pub fn probe_vcont(&mut self) -> Result<(), Error> {
        let r = self.request(b"vCont?")?;
        let acts: Vec<&[u8]> = r.split(|&b| b == b';').collect();
        self.features.vcont =
            r.starts_with(b"vCont") && acts.contains(&&b"c"[..]) && acts.contains(&&b"s"[..]);
        Ok(())
    }

    /// Resumes every thread (`vCont;c` or `c`).
    pub fn cont(&mut self) -> Result<(), Error> {
        let pkt: &[u8] = if self.features.vcont {
            b"vCont;c"
        } else {
            b"c"
        };
        self.send(pkt)?;
        self.state = RunState::Running;
        Ok(())
    }

    /// Resumes every thread, delivering `signal` to `thread` (a process target's own
    /// signal that the stop intercepted must not be lost).
    pub fn cont_with_signal(&mut self, signal: u8, thread: Option<ThreadId>) -> Result<(), Error> {
        let pkt = match (self.features.vcont, thread) {
            (true, Some(t)) => format!("vCont;C{signal:02x}:{};c", t.to_wire()),
            _ => format!("C{signal:02x}"),
        };
        self.send(pkt.as_bytes())?;
        self.state = RunState::Running;
        Ok(())
    }

    /// Steps one instruction in `thread` (the others stay stopped under vCont).
    pub fn step(&mut self, thread: Option<ThreadId>) -> Result<(), Error> {
        let pkt = match (self.features.vcont, thread) {
            (true, Some(t)) => format!("vCont;s:{}", t.to_wire()),
            _ => "s".to_string(),
        };
        self.send(pkt.as_bytes())?;
        self.state = RunState::Running;
        Ok(())
    }

    /// Detaches (`D`, or `D;PID` in multiprocess mode) so the target runs on freely.
    pub fn detach(&mut self, pid: Option<u64>) -> Result<(), Error> {
        let pkt = match (self.features.multiprocess, pid) {
            (true, Some(p)) => format!("D;{p:x}"),
            _ => "D".to_string(),
        };
        let r = self.request(pkt.as_bytes())?;
        if r == b"OK" || r.is_empty() {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "detach refused: {}",
                String::from_utf8_lossy(&r)
            )))
        }
    }
}
