//! Out-of-line execution pads: how a thread gets past a breakpoint without a second
//! stop and without removing the `int3`.
//!
//! The instruction under a breakpoint is copied, relocated with iced-x86 (rip-relative
//! operands are re-encoded for the new address), into a small pad in the slack at the
//! end of the module's executable segment, followed by an absolute jump back to the
//! next original instruction. At a hit the thread's rip is pointed at the pad and it is
//! simply continued: one ptrace stop per hit instead of two (breakpoint + single-step),
//! and since the `int3` never leaves memory, other threads need not be stopped.
//! Control-flow instructions (calls, jumps, returns) are not relocated: those sites fall
//! back to single-stepping. Pads are never freed or reused while the image lives (a
//! thread may still be inside one) and are left in place at detach: they lie beyond the
//! end of the segment, where the program never looks, and a thread stopped inside one
//! carries on correctly through it after we are gone.

use iced_x86::{Decoder, DecoderOptions, Encoder, FlowControl};

/// Size reserved for one pad: the longest instruction (15) + the jump back (14), rounded.
pub const PAD_SIZE: u64 = 32;

/// Builds the pad for the instruction whose original bytes start `code` (at `addr`), to
/// be placed at `pad`. Returns the pad bytes, or `None` when the instruction cannot run
/// out of line (control flow, undecodable, rip-relative target out of range).
pub fn build_pad(code: &[u8], addr: u64, pad: u64) -> Option<Vec<u8>> {
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let ins = d.decode();
    if ins.is_invalid() || ins.flow_control() != FlowControl::Next {
        return None;
    }
    let mut enc = Encoder::new(64);
    enc.encode(&ins, pad).ok()?;
    let mut bytes = enc.take_buffer();
    let back = addr.checked_add(ins.len() as u64)?;
    // jmp qword ptr [rip+0]; dq back
    bytes.extend_from_slice(&[0xFF, 0x25, 0, 0, 0, 0]);
    bytes.extend_from_slice(&back.to_le_bytes());
    if bytes.len() as u64 > PAD_SIZE {
        return None;
    }
    Some(bytes)
}
