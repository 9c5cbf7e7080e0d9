//! A scripted in-process RSP stub on a loopback socket: it answers from a small model
//! (registers per thread, memory regions, breakpoints) and replays a list of stops, and
//! logs every packet it receives so tests can check what the client sent.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conn::Conn;
use crate::packet::{encode_packet, parse_hex_u64, to_hex, Frame};

/// The fixed x86_64 order of the first 17 registers in `g`.
pub const G_ORDER: [&str; 17] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip",
];

/// Register values of a thread, by name in [`G_ORDER`].
pub type Regs = [u64; 17];

/// Sets a register by name.
pub fn set(r: &mut Regs, name: &str, v: u64) {
    let i = G_ORDER
        .iter()
        .position(|n| *n == name)
        .expect("register name");
    r[i] = v;
}

/// One stop the stub reports on a continue: the thread and its registers then.
#[derive(Clone, Debug)]
pub struct ScriptStop {
    pub tid: u64,
    pub regs: Regs,
}

/// What happens when the script runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Reply `W00`.
    Exit,
    /// Run until the client interrupts.
    WaitInterrupt,
    /// Close the connection (the VM is gone).
    Close,
}

#[derive(Clone, Debug)]
pub struct StubConfig {
    pub supported: String,
    pub files: HashMap<String, String>,
    pub mem: Vec<(u64, Vec<u8>)>,
    pub script: Vec<ScriptStop>,
    pub initial_stop: bool,
    pub z0_supported: bool,
    /// gdbserver-like: a step at a breakpoint does not execute the instruction.
    pub int3: bool,
    pub end: End,
    pub pid: u64,
    pub auxv: Vec<u8>,
    /// Memory that appears at the first scripted stop (paging switched on).
    pub mem_later: Vec<(u64, Vec<u8>)>,
    /// The first continue stops with this signal (not at a breakpoint).
    pub signal_stop: Option<u8>,
    /// Breakpoints present before the client connected (left by a dead client).
    pub stale_bps: Vec<u64>,
}

impl StubConfig {
    /// A QEMU-like stub: initial stop, features and no description.
    pub fn qemu_like() -> StubConfig {
        StubConfig {
            supported: "PacketSize=1000;qXfer:features:read+;multiprocess+;vContSupported+".into(),
            files: HashMap::new(),
            mem: Vec::new(),
            script: Vec::new(),
            initial_stop: true,
            z0_supported: true,
            int3: false,
            end: End::WaitInterrupt,
            pid: 1,
            auxv: Vec::new(),
            mem_later: Vec::new(),
            signal_stop: None,
            stale_bps: Vec::new(),
        }
    }
}

/// A running stub: its address, the packet log, the join handle.
pub struct Stub {
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Stub {
    pub fn start(cfg: StubConfig) -> Stub {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let handle = std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                let conn = Conn::from_stream(s).expect("stream");
                serve(conn, cfg, log2);
            }
        });
        Stub {
            addr,
            log,
            handle: Some(handle),
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// Waits for the stub thread to finish (the client detached or closed).
    pub fn join(mut self) -> Vec<String> {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.log()
    }
}

struct Model {
    cfg: StubConfig,
    regs: HashMap<u64, Regs>,
    cur: u64,
    bps: BTreeSet<(u8, u64)>,
    next: usize,
    /// The current thread stopped at a breakpoint and has not moved since.
    at_bp: bool,
}

impl Model {
    fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        for (base, bytes) in &self.cfg.mem {
            if addr >= *base && addr < base + bytes.len() as u64 {
                let off = (addr - base) as usize;
                let end = (off + len).min(bytes.len());
                return Some(bytes[off..end].to_vec());
            }
        }
        None
    }

    fn stop_reply(&self, sig: u8) -> String {
        format!("T{sig:02x}thread:p{:x}.{:x};", self.cfg.pid, self.cur)
    }

    fn pc(&self) -> u64 {
        self.regs.get(&self.cur).map(|r| r[16]).unwrap_or(0)
    }

    fn has_bp(&self, addr: u64) -> bool {
        self.bps.contains(&(0, addr)) || self.bps.contains(&(1, addr))
    }

    /// The reply to a continue; `None` means "keep running".
    fn cont(&mut self) -> Option<String> {
        if let Some(sig) = self.cfg.signal_stop.take() {
            return Some(self.stop_reply(sig));
        }
        if self.at_bp && self.has_bp(self.pc()) {
            // QEMU re-stops at once when continued from a breakpoint.
            return Some(self.stop_reply(5));
        }
        loop {
            let Some(st) = self.cfg.script.get(self.next).cloned() else {
                return match self.cfg.end {
                    End::Exit => Some("W00".into()),
                    _ => None,
                };
            };
            self.next += 1;
            let later = std::mem::take(&mut self.cfg.mem_later);
            self.cfg.mem.extend(later);
            self.cur = st.tid;
            self.regs.insert(st.tid, st.regs);
            // A scripted stop at an address without a breakpoint is skipped: the
            // target would have run through it.
            if self.has_bp(st.regs[16]) {
                self.at_bp = true;
                return Some(self.stop_reply(5));
            }
        }
    }
}

fn serve(mut conn: Conn, cfg: StubConfig, log: Arc<Mutex<Vec<String>>>) {
    let mut m = Model {
        regs: HashMap::new(),
        cur: 1,
        bps: BTreeSet::new(),
        next: 0,
        at_bp: false,
        cfg,
    };
    m.regs.insert(1, [0; 17]);
    for a in m.cfg.stale_bps.clone() {
        m.bps.insert((0, a));
    }
    let send = |c: &mut Conn, p: &str| c.send_raw(&encode_packet(p.as_bytes())).is_ok();
    if m.cfg.initial_stop && !send(&mut conn, &m.stop_reply(2)) {
        return;
    }
    let mut running = false;
    loop {
        let f = match conn.recv_frame(Duration::from_secs(30)) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        let p = match f {
            Frame::Packet(p) => p,
            Frame::Interrupt => {
                log.lock().expect("log").push("^C".into());
                if running {
                    running = false;
                    if !send(&mut conn, &m.stop_reply(2)) {
                        return;
                    }
                }
                continue;
            }
            _ => continue,
        };
        if conn.send_raw(b"+").is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&p).into_owned();
        log.lock().expect("log").push(text.clone());
        let reply: Option<String> = if text.starts_with("qSupported") {
            Some(m.cfg.supported.clone())
        } else if let Some(rest) = text.strip_prefix("qXfer:features:read:") {
            let r = xfer(rest, |annex| {
                m.cfg.files.get(annex).map(|s| s.as_bytes().to_vec())
            });
            if conn.send_raw(&encode_packet(&r)).is_err() {
                return;
            }
            continue;
        } else if let Some(rest) = text.strip_prefix("qXfer:auxv:read:") {
            let a = m.cfg.auxv.clone();
            let r = xfer(rest, |_| Some(a.clone()));
            if conn.send_raw(&encode_packet(&r)).is_err() {
                return;
            }
            continue;
        } else if text == "?" {
            Some(m.stop_reply(5))
        } else if text == "vCont?" {
            Some("vCont;c;C;s;S".into())
        } else if text == "g" {
            let r = m.regs.get(&m.cur).copied().unwrap_or([0; 17]);
            let mut s = String::new();
            for v in r {
                s.push_str(&to_hex(&v.to_le_bytes()));
            }
            // eflags and the segment registers, unused.
            s.push_str(&"0".repeat(8 * 7));
            Some(s)
        } else if let Some(rest) = text.strip_prefix('m') {
            let mut it = rest.split(',');
            let a = it.next().and_then(|x| parse_hex_u64(x.as_bytes()));
            let n = it.next().and_then(|x| parse_hex_u64(x.as_bytes()));
            match (a, n) {
                (Some(a), Some(n)) => Some(match m.read(a, n as usize) {
                    Some(b) => to_hex(&b),
                    None => "E14".into(),
                }),
                _ => Some("E01".into()),
            }
        } else if let Some(rest) = text.strip_prefix('Z').or_else(|| text.strip_prefix('z')) {
            let insert = text.starts_with('Z');
            let ty = rest.as_bytes().first().map(|b| b - b'0').unwrap_or(9);
            let addr = rest
                .get(2..)
                .and_then(|r| r.split(',').next())
                .and_then(|x| parse_hex_u64(x.as_bytes()))
                .unwrap_or(0);
            if (ty == 0 && !m.cfg.z0_supported) || ty > 1 {
                Some(String::new())
            } else {
                if insert {
                    m.bps.insert((ty, addr));
                } else {
                    m.bps.remove(&(ty, addr));
                }
                Some("OK".into())
            }
        } else if text == "c"
            || text == "vCont;c"
            || text.starts_with("vCont;C")
            || text.starts_with('C')
        {
            match m.cont() {
                Some(r) => Some(r),
                None => {
                    running = true;
                    None
                }
            }
        } else if text == "s" || text.starts_with("vCont;s") {
            let pc = m.pc();
            if !(m.cfg.int3 && m.has_bp(pc)) {
                if let Some(r) = m.regs.get_mut(&m.cur) {
                    r[16] = pc + 1;
                }
                m.at_bp = false;
            }
            Some(m.stop_reply(5))
        } else if text == "D" || text.starts_with("D;") {
            let _ = send(&mut conn, "OK");
            conn.shutdown();
            return;
        } else if text.starts_with('H') {
            Some("OK".into())
        } else {
            Some(String::new())
        };
        if let Some(r) = reply {
            if !send(&mut conn, &r) {
                return;
            }
        } else if m.cfg.end == End::Close {
            conn.shutdown();
            return;
        }
    }
}

fn xfer(rest: &str, get: impl Fn(&str) -> Option<Vec<u8>>) -> Vec<u8> {
    // rest is "annex:off,len"
    let Some((annex, range)) = rest.rsplit_once(':') else {
        return b"E00".to_vec();
    };
    let Some((off, len)) = range.split_once(',') else {
        return b"E00".to_vec();
    };
    let (Some(off), Some(len)) = (parse_hex_u64(off.as_bytes()), parse_hex_u64(len.as_bytes()))
    else {
        return b"E00".to_vec();
    };
    let Some(data) = get(annex) else {
        return b"E00".to_vec();
    };
    let off = (off as usize).min(data.len());
    let end = (off + len as usize).min(data.len());
    let mut out = vec![if end == data.len() { b'l' } else { b'm' }];
    out.extend_from_slice(&data[off..end]);
    out
}
