//! Sans-IO framing codec of the GDB Remote Serial Protocol: bytes in, frames out.
//!
//! Wire format (every packet, in both directions):
//!
//! ```text
//!   '$' payload... '#' hex hex        a packet; the two hex digits are the sum of the
//!   |   |             \______/        raw payload bytes modulo 256
//!   |   |                 checksum
//!   |   +-- '}' X  : the byte X ^ 0x20 (escapes '$', '#', '}', '*')
//!   |   +-- c '*' N: the previous byte c repeated N - 29 more times (run-length
//!   |                encoding; only stubs use it, in replies)
//!   '%' payload... '#' hex hex        an asynchronous notification (non-stop mode);
//!                                     never acknowledged
//!   '+' / '-'                         acknowledgement / request to retransmit (absent
//!                                     once QStartNoAckMode was accepted)
//!   0x03                              interrupt request (client to stub, out of band)
//! ```
//!
//! Bytes outside a frame are skipped; an oversized or malformed frame is reported as
//! [`Frame::Bad`] and the decoder resynchronises on the next `$`/`%`. Nothing here panics
//! on any input.

/// Longest decoded payload accepted; a longer frame is dropped as bad.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// One thing decoded from the byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `+`: the last packet arrived intact.
    Ack,
    /// `-`: the last packet arrived damaged; resend it.
    Nack,
    /// A `$` packet with a correct checksum: its decoded (unescaped, expanded) payload.
    Packet(Vec<u8>),
    /// A `%` notification with a correct checksum: its decoded payload.
    Notification(Vec<u8>),
    /// The out-of-band interrupt byte 0x03.
    Interrupt,
    /// A frame whose checksum did not match, or which was too long or malformed.
    Bad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// Inside a payload; `notif` tells `%` from `$`.
    Body { notif: bool },
    /// After `#`, waiting for the first checksum digit.
    Sum1 { notif: bool },
    /// After the first checksum digit.
    Sum2 { notif: bool, hi: u8 },
}

/// Incremental decoder: feed it whatever the socket gave, take frames out.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    raw: Vec<u8>,
    overflow: bool,
    out: std::collections::VecDeque<Frame>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Decoder {
    /// A decoder between frames.
    pub fn new() -> Decoder {
        Decoder {
            state: State::Idle,
            raw: Vec::new(),
            overflow: false,
            out: std::collections::VecDeque::new(),
        }
    }

    /// Consumes bytes; complete frames become available through [`Decoder::next_frame`].
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push_byte(b);
        }
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    fn start(&mut self, notif: bool) {
        self.raw.clear();
        self.overflow = false;
        self.state = State::Body { notif };
    }

    fn push_byte(&mut self, b: u8) {
        match self.state {
            State::Idle => match b {
                b'+' => self.out.push_back(Frame::Ack),
                b'-' => self.out.push_back(Frame::Nack),
                0x03 => self.out.push_back(Frame::Interrupt),
                b'$' => self.start(false),
                b'%' => self.start(true),
                // Line noise between frames (stray newlines, console output) is skipped.
                _ => {}
            },
            State::Body { notif } => match b {
                b'#' => self.state = State::Sum1 { notif },
                // A new start marker inside a payload means the previous frame was cut
                // short; report it and resynchronise on the new one.
                b'$' => {
                    self.out.push_back(Frame::Bad);
                    self.start(false);
                }
                _ => {
                    if self.raw.len() >= MAX_PAYLOAD {
                        self.overflow = true;
                    } else {
                        self.raw.push(b);
                    }
                }
            },
            State::Sum1 { notif } => match hex_val(b) {
                Some(hi) => self.state = State::Sum2 { notif, hi },
                None => self.bad_then(b),
            },
            State::Sum2 { notif, hi } => match hex_val(b) {
                Some(lo) => {
                    let want = (hi << 4) | lo;
                    let sum = checksum(&self.raw);
                    let frame = if sum != want || self.overflow {
                        Frame::Bad
                    } else {
                        match decode_payload(&self.raw) {
                            Some(p) if notif => Frame::Notification(p),
                            Some(p) => Frame::Packet(p),
                            None => Frame::Bad,
                        }
                    };
                    self.out.push_back(frame);
                    self.raw.clear();
                    self.state = State::Idle;
                }
                None => self.bad_then(b),
            },
        }
    }

    /// Reports the current frame as bad and treats `b` as the first byte after it.
    fn bad_then(&mut self, b: u8) {
        self.out.push_back(Frame::Bad);
        self.raw.clear();
        self.state = State::Idle;
        self.push_byte(b);
    }
}

/// Sum of the bytes modulo 256, as the protocol's checksum.
pub fn checksum(raw: &[u8]) -> u8 {
    raw.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Undoes `}` escapes and `*` run-length encoding in wire order (an escaped byte can be
/// repeated; a repeat count is never escaped). `None` if malformed or too long.
pub fn decode_payload(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'}' => {
                out.push(*raw.get(i + 1)? ^ 0x20);
                i += 2;
            }
            b'*' => {
                let n = *raw.get(i + 1)?;
                let last = *out.last()?;
                let count = usize::from(n.checked_sub(29)?);
                if out.len() + count > MAX_PAYLOAD {
                    return None;
                }
                out.extend(std::iter::repeat_n(last, count));
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Frames `payload` as a `$` packet, escaping the bytes that would break framing.
pub fn encode_packet(payload: &[u8]) -> Vec<u8> {
    encode(b'$', payload)
}

/// Frames `payload` as a `%` notification (used by test peers).
pub fn encode_notification(payload: &[u8]) -> Vec<u8> {
    encode(b'%', payload)
}

fn encode(start: u8, payload: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(payload.len() + 4);
    for &b in payload {
        if matches!(b, b'$' | b'#' | b'}' | b'*' | b'%') {
            raw.push(b'}');
            raw.push(b ^ 0x20);
        } else {
            raw.push(b);
        }
    }
    let sum = checksum(&raw);
    let mut out = Vec::with_capacity(raw.len() + 4);
    out.push(start);
    out.extend_from_slice(&raw);
    out.push(b'#');
    out.extend_from_slice(format!("{sum:02x}").as_bytes());
    out
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Bytes of an even-length hex string; `None` if it is not one.
pub fn from_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|c| Some((hex_val(c[0])? << 4) | hex_val(c[1])?))
        .collect()
}

/// A hex number (at most 16 digits), as in addresses and thread ids.
pub fn parse_hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter()
        .try_fold(0u64, |a, &b| Some((a << 4) | u64::from(hex_val(b)?)))
}
