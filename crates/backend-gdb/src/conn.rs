//! The TCP connection to the stub: the only module that touches a socket.
//!
//! It frames packets through [`crate::packet`], handles `+`/`-` acknowledgements (until
//! no-ack mode is on), and never blocks longer than a short poll interval so that callers
//! can check their stop token between reads.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::packet::{encode_packet, Decoder, Frame};

/// How long one socket read may block before the caller gets control back.
pub const POLL: Duration = Duration::from_millis(20);

/// How often a damaged packet is retransmitted before giving up.
const MAX_RETRANSMIT: u32 = 5;

/// What can go wrong on the connection.
#[derive(Debug)]
pub enum ConnError {
    /// The peer closed the connection (or it was reset).
    Closed,
    /// Nothing arrived in time.
    Timeout,
    /// Any other socket error.
    Io(io::Error),
    /// The peer keeps rejecting our packet.
    Rejected,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Closed => f.write_str("the gdbstub closed the connection"),
            ConnError::Timeout => f.write_str("the gdbstub did not answer in time"),
            ConnError::Io(e) => write!(f, "{}", clean_io(e)),
            ConnError::Rejected => f.write_str("the gdbstub keeps rejecting a packet"),
        }
    }
}

/// An I/O error's message without the "(os error N)" suffix.
pub fn clean_io(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// One framed connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    dec: Decoder,
    /// Packets that arrived while we waited for something else (an ack).
    pending: VecDeque<Vec<u8>>,
    /// Acknowledgements are off (QStartNoAckMode accepted).
    pub no_ack: bool,
    /// Bytes sent and received, for diagnostics.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Print every packet to stderr (`SNAPTAP_GDB_TRACE=1`), for debugging a stub.
    trace: bool,
}

impl Conn {
    /// Connects to `addr` (`host:port`), trying each resolved address within `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn, String> {
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| format!("no gdbstub at {addr}: {}", clean_io(&e)))?
            .collect();
        let mut last = format!("no gdbstub at {addr}: the name has no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => return Conn::from_stream(s).map_err(|e| format!("{addr}: {e}")),
                Err(e) => last = format!("no gdbstub at {addr}: {}", clean_io(&e)),
            }
        }
        Err(last)
    }

    /// Wraps an open stream (tests use this for the stub side too).
    pub fn from_stream(stream: TcpStream) -> Result<Conn, String> {
        // Round trips dominate the cost of a hit: never let Nagle delay a small packet.
        stream.set_nodelay(true).map_err(|e| clean_io(&e))?;
        stream
            .set_read_timeout(Some(POLL))
            .map_err(|e| clean_io(&e))?;
        Ok(Conn {
            stream,
            dec: Decoder::new(),
            pending: VecDeque::new(),
            no_ack: false,
            bytes_out: 0,
            bytes_in: 0,
            trace: std::env::var_os("SNAPTAP_GDB_TRACE").is_some(),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.bytes_out += bytes.len() as u64;
        self.stream.write_all(bytes).map_err(|e| {
            if is_closed(&e) {
                ConnError::Closed
            } else {
                ConnError::Io(e)
            }
        })
    }

    /// Sends raw bytes (the 0x03 interrupt, or acks from a test peer).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.write_all(bytes)
    }

    /// Reads once (at most [`POLL`]) and feeds the decoder. `Ok(false)` on a timeout.
    fn fill(&mut self) -> Result<bool, ConnError> {
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) => Err(ConnError::Closed),
            Ok(n) => {
                self.bytes_in += n as u64;
                self.dec.push(&buf[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) if is_closed(&e) => Err(ConnError::Closed),
            Err(e) => Err(ConnError::Io(e)),
        }
    }

    /// Sends one packet and, in ack mode, waits for its `+` (resending on `-`).
    pub fn send_packet(&mut self, payload: &[u8], timeout: Duration) -> Result<(), ConnError> {
        let frame = encode_packet(payload);
        if self.trace {
            eprintln!("gdb-> {}", String::from_utf8_lossy(payload));
        }
        self.write_all(&frame)?;
        if self.no_ack {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let mut tries = 0;
        loop {
            while let Some(f) = self.dec.next_frame() {
                match f {
                    Frame::Ack => return Ok(()),
                    Frame::Nack => {
                        tries += 1;
                        if tries > MAX_RETRANSMIT {
                            return Err(ConnError::Rejected);
                        }
                        self.write_all(&frame)?;
                    }
                    Frame::Packet(p) => {
                        // A reply can overtake a lost ack; keep it, acknowledge it.
                        self.write_all(b"+")?;
                        self.pending.push_back(p);
                    }
                    Frame::Bad => self.write_all(b"-")?,
                    Frame::Notification(_) | Frame::Interrupt => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(ConnError::Timeout);
            }
            self.fill()?;
        }
    }

    /// The next packet, waiting at most `wait` (`Ok(None)` when nothing came). Good
    /// packets are acknowledged and damaged ones nacked (in ack mode).
    pub fn recv_packet(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, ConnError> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(Some(p));
        }
        let deadline = Instant::now() + wait;
        loop {
            while let Some(f) = self.dec.next_frame() {
                match f {
                    Frame::Packet(p) => {
                        if !self.no_ack {
                            self.write_all(b"+")?;
                        }
                        if self.trace {
                            let n = p.len().min(200);
                            eprintln!("gdb<- {}", String::from_utf8_lossy(&p[..n]));
                        }
                        return Ok(Some(p));
                    }
                    Frame::Bad => {
                        if !self.no_ack {
                            self.write_all(b"-")?;
                        }
                    }
                    // Stray acks, notifications (non-stop mode, which we never enable)
                    // and interrupts (client-to-stub only) carry nothing for us.
                    Frame::Ack | Frame::Nack | Frame::Notification(_) | Frame::Interrupt => {}
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Like [`Conn::recv_packet`] but also returns interrupts and raw frames: what a
    /// stub needs. Test peers use it.
    pub fn recv_frame(&mut self, wait: Duration) -> Result<Option<Frame>, ConnError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(f) = self.dec.next_frame() {
                return Ok(Some(f));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Closes both directions.
    pub fn shutdown(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
