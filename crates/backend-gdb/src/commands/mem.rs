//! Memory reads: `m addr,len`, chunked to the stub's packet size and to pages, an `E`
//! reply meaning "cannot read here" (a fault at that chunk's address).

use crate::packet::from_hex;
use crate::session::Session;
use crate::Error;

const PAGE: u64 = 4096;

/// Why a read did not fill the buffer.
#[derive(Debug)]
pub enum MemError {
    /// The target could not read this address (an `E` or empty reply).
    Fault(u64),
    /// The connection failed.
    Fatal(Error),
}

impl Session {
    /// Largest number of bytes one `m` reply can carry.
    pub fn mem_chunk(&self) -> usize {
        // The reply is hex (two characters a byte) inside `$...#xx`.
        (self.features.packet_size.saturating_sub(8) / 2).clamp(16, 4096)
    }

    /// Fills `buf` from target memory at `addr`. Chunks never cross a page, so a fault
    /// is reported at the first page that cannot be read (or at the exact byte when the
    /// stub returns a short reply).
    pub fn read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let chunk = self.mem_chunk() as u64;
        let mut done = 0usize;
        while done < buf.len() {
            let cur = addr.wrapping_add(done as u64);
            let to_page = PAGE - (cur % PAGE);
            let n = ((buf.len() - done) as u64).min(chunk).min(to_page) as usize;
            let r = self
                .request(format!("m{cur:x},{n:x}").as_bytes())
                .map_err(MemError::Fatal)?;
            if r.is_empty() || (r[0] == b'E' && r.len() == 3) {
                return Err(MemError::Fault(cur));
            }
            let Some(bytes) = from_hex(&r) else {
                return Err(MemError::Fault(cur));
            };
            if bytes.is_empty() || bytes.len() > n {
                return Err(MemError::Fault(cur));
            }
            buf[done..done + bytes.len()].copy_from_slice(&bytes);
            done += bytes.len();
        }
        Ok(())
    }
}
