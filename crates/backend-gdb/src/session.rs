//! The protocol session: request/reply exchanges, the stopped/running state, no-ack
//! mode, interrupts.
//!
//! The stub is either stopped (it answers requests) or running (it answers nothing
//! until a stop reply). Requests are only sent while stopped; [`Session::wait_stop`]
//! polls the socket in short slices so a stop request from another thread is noticed
//! within [`crate::conn::POLL`] and turned into an interrupt (0x03).

use std::time::{Duration, Instant};

use backend::StopToken;

use crate::commands::run::{parse_stop, StopReply};
use crate::conn::{Conn, ConnError};
use crate::Error;

/// What the stub said it supports (its `qSupported` reply).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Largest packet the stub accepts (`PacketSize`, hex in the reply).
    pub packet_size: usize,
    /// `qXfer:features:read` (target description).
    pub xfer_features: bool,
    /// `qXfer:libraries-svr4:read` (shared library list with load addresses).
    pub xfer_svr4: bool,
    /// `qXfer:auxv:read`: the target is a process (gdbserver), not a machine.
    pub xfer_auxv: bool,
    /// `qXfer:exec-file:read`.
    pub xfer_exec_file: bool,
    /// `qXfer:threads:read` (thread list with names).
    pub xfer_threads: bool,
    /// `multiprocess`: thread ids are `pPID.TID` and detach takes `;PID`.
    pub multiprocess: bool,
    /// `QStartNoAckMode`.
    pub no_ack: bool,
    /// `vContSupported`: the stub advertises vCont (confirmed by `vCont?`).
    pub vcont: bool,
}

/// Whether the target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Stopped: requests are answered.
    Stopped,
    /// Running: only a stop reply (or console output) can come.
    Running,
}

/// One connection to a stub and what was negotiated on it.
#[derive(Debug)]
pub struct Session {
    /// The framed connection.
    pub conn: Conn,
    /// How long a request may wait for its reply.
    pub timeout: Duration,
    /// Negotiated features.
    pub features: Features,
    /// Stopped or running.
    pub state: RunState,
    /// Packets exchanged (requests and resumes), for the measurement.
    pub round_trips: u64,
}

impl Session {
    /// A session over `conn`, assumed stopped until told otherwise.
    pub fn new(conn: Conn, timeout: Duration) -> Session {
        Session {
            conn,
            timeout,
            features: Features {
                packet_size: 400,
                ..Features::default()
            },
            state: RunState::Stopped,
            round_trips: 0,
        }
    }

    fn conn_err(&self, e: ConnError, what: &str) -> Error {
        match e {
            ConnError::Closed => Error::Disconnected,
            ConnError::Timeout => Error::Timeout(what.to_string()),
            other => Error::Protocol(format!("{what}: {other}")),
        }
    }

    /// Sends `payload` without waiting for a reply (resumes).
    pub fn send(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.round_trips += 1;
        let t = self.timeout;
        self.conn
            .send_packet(payload, t)
            .map_err(|e| self.conn_err(e, &String::from_utf8_lossy(payload)))
    }

    /// Sends `payload` and returns the reply. Console output packets (`O...`) that a
    /// stub may interleave (e.g. under `qRcmd`) are not replies and are skipped only
    /// when the request is `qRcmd`.
    pub fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.send(payload)?;
        let deadline = Instant::now() + self.timeout;
        let what = String::from_utf8_lossy(&payload[..payload.len().min(40)]).into_owned();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(what));
            }
            match self.conn.recv_packet(left) {
                Ok(Some(p)) => {
                    if payload.starts_with(b"qRcmd") && p.first() == Some(&b'O') && p != b"OK" {
                        continue;
                    }
                    return Ok(p);
                }
                Ok(None) => {}
                Err(e) => return Err(self.conn_err(e, &what)),
            }
        }
    }

    /// Drains whatever the stub sent unprompted (QEMU's stop reply on connect) for at
    /// most `wait`; returns the last stop reply seen.
    pub fn drain(&mut self, wait: Duration) -> Result<Option<StopReply>, Error> {
        let deadline = Instant::now() + wait;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(last);
            }
            match self.conn.recv_packet(left.min(crate::conn::POLL)) {
                Ok(Some(p)) => {
                    if let Some(s) = parse_stop(&p) {
                        last = Some(s);
                    }
                }
                Ok(None) => {
                    if last.is_some() {
                        return Ok(last);
                    }
                }
                Err(e) => return Err(self.conn_err(e, "initial stop reply")),
            }
        }
    }

    /// Sends the interrupt byte.
    pub fn interrupt(&mut self) -> Result<(), Error> {
        self.conn
            .send_raw(&[0x03])
            .map_err(|e| self.conn_err(e, "interrupt"))
    }

    /// Waits for the stop reply after a resume. When `stop` is requested while waiting,
    /// sends one interrupt and keeps waiting for the stop it causes (or for a stop that
    /// crossed it). `max_wait` bounds the wait (a step must end quickly; a continue may
    /// run forever).
    pub fn wait_stop(
        &mut self,
        stop: &StopToken,
        max_wait: Option<Duration>,
    ) -> Result<StopReply, Error> {
        let start = Instant::now();
        let mut interrupted: Option<Instant> = None;
        loop {
            if interrupted.is_none() && stop.is_requested() {
                self.interrupt()?;
                interrupted = Some(Instant::now());
            }
            if let Some(t) = interrupted {
                if t.elapsed() > self.timeout {
                    return Err(Error::Timeout("stop reply after an interrupt".into()));
                }
            }
            if let Some(m) = max_wait {
                if start.elapsed() > m {
                    return Err(Error::Timeout("stop reply".into()));
                }
            }
            match self.conn.recv_packet(crate::conn::POLL) {
                Ok(Some(p)) => {
                    if let Some(s) = parse_stop(&p) {
                        self.state = RunState::Stopped;
                        return Ok(s);
                    }
                    // `O` console output while running, or a reply we cannot use:
                    // keep waiting for the stop.
                }
                Ok(None) => {}
                Err(e) => return Err(self.conn_err(e, "waiting for a stop")),
            }
        }
    }
}
