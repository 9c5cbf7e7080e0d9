//! General queries: `qSupported`, `QStartNoAckMode`, `qXfer` objects (target
//! description with its includes, auxv, libraries-svr4, exec-file), `qOffsets`.

use crate::packet::{parse_hex_u64, to_hex};
use crate::session::{Features, Session};
use crate::Error;

/// What we announce: multiprocess thread ids, and that we understand the stop reasons
/// and vCont.
/// `xmlRegisters=i386` makes gdbserver send a full x86 description rather than an
/// empty one.
const OUR_FEATURES: &[u8] =
    b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386";

/// Parses a `qSupported` reply into [`Features`].
pub fn parse_supported(r: &[u8]) -> Features {
    let mut f = Features {
        packet_size: 400,
        ..Features::default()
    };
    for item in r.split(|&b| b == b';') {
        if let Some(v) = item.strip_prefix(b"PacketSize=") {
            if let Some(n) = parse_hex_u64(v) {
                f.packet_size = (n as usize).clamp(64, 1 << 20);
            }
        }
        match item {
            b"qXfer:features:read+" => f.xfer_features = true,
            b"qXfer:libraries-svr4:read+" => f.xfer_svr4 = true,
            b"qXfer:auxv:read+" => f.xfer_auxv = true,
            b"qXfer:exec-file:read+" => f.xfer_exec_file = true,
            b"qXfer:threads:read+" => f.xfer_threads = true,
            b"multiprocess+" => f.multiprocess = true,
            b"QStartNoAckMode+" => f.no_ack = true,
            b"vContSupported+" => f.vcont = true,
            _ => {}
        }
    }
    f
}

impl Session {
    /// Negotiates features, then no-ack mode if the stub offers it.
    pub fn negotiate(&mut self) -> Result<(), Error> {
        let r = self.request(OUR_FEATURES)?;
        self.features = parse_supported(&r);
        if self.features.no_ack {
            let r = self.request(b"QStartNoAckMode")?;
            if r == b"OK" {
                self.conn.no_ack = true;
            }
        }
        Ok(())
    }

    /// Reads a whole `qXfer` object (`m`/`l` chunks). `Ok(None)` if the stub does not
    /// have it (empty or `E` reply).
    pub fn read_xfer(&mut self, object: &str, annex: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut out = Vec::new();
        let len = self.features.packet_size.saturating_sub(16).max(64);
        loop {
            let pkt = format!("qXfer:{object}:read:{annex}:{:x},{len:x}", out.len());
            let r = self.request(pkt.as_bytes())?;
            match r.first() {
                Some(b'l') => {
                    out.extend_from_slice(&r[1..]);
                    return Ok(Some(out));
                }
                Some(b'm') if r.len() > 1 => out.extend_from_slice(&r[1..]),
                _ => return Ok(None),
            }
            if out.len() > (16 << 20) {
                return Err(Error::Protocol(format!("qXfer:{object} is too large")));
            }
        }
    }

    /// `qOffsets`: the text relocation the stub reports (`Text=` or `TextSeg=`).
    pub fn text_offset(&mut self) -> Result<Option<u64>, Error> {
        let r = self.request(b"qOffsets")?;
        Ok(r.split(|&b| b == b';').find_map(|i| {
            i.strip_prefix(b"Text=")
                .or_else(|| i.strip_prefix(b"TextSeg="))
                .and_then(parse_hex_u64)
        }))
    }

    /// The auxiliary vector entry `key` (e.g. 9 = AT_ENTRY) of the target process.
    pub fn auxv_entry(&mut self, key: u64, word: usize) -> Result<Option<u64>, Error> {
        let Some(auxv) = self.read_xfer("auxv", "")? else {
            return Ok(None);
        };
        let word = if word == 4 { 4 } else { 8 };
        for pair in auxv.chunks_exact(2 * word) {
            let get = |b: &[u8]| {
                let mut v = [0u8; 8];
                v[..word].copy_from_slice(b);
                u64::from_le_bytes(v)
            };
            if get(&pair[..word]) == key {
                return Ok(Some(get(&pair[word..])));
            }
        }
        Ok(None)
    }

    /// Runs a monitor command (`qRcmd`); the reply as text.
    pub fn monitor(&mut self, cmd: &str) -> Result<Vec<u8>, Error> {
        self.request(format!("qRcmd,{}", to_hex(cmd.as_bytes())).as_bytes())
    }
}

/// The `(thread id, name)` pairs of a `qXfer:threads:read` list.
pub fn parse_threads(xml: &str) -> Vec<(crate::commands::run::ThreadId, String)> {
    crate::commands::regs::tags(xml)
        .into_iter()
        .filter(|t| t.name == "thread")
        .filter_map(|t| {
            let id = crate::commands::run::ThreadId::parse(t.attr("id")?.as_bytes())?;
            Some((id, t.attr("name").unwrap_or_default()))
        })
        .collect()
}

/// One `<library>` of a `libraries-svr4` list: its name and `l_addr` (load bias).
pub fn parse_svr4(xml: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for tag in crate::commands::regs::tags(xml) {
        if tag.name == "library" {
            let name = tag.attr("name").unwrap_or_default();
            let l_addr = tag
                .attr("l_addr")
                .and_then(|a| parse_hex_u64(a.trim_start_matches("0x").as_bytes()));
            if let Some(a) = l_addr {
                out.push((name, a));
            }
        }
    }
    out
}
