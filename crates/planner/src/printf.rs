//! The part of stap's format syntax the planner needs: which `printf` arguments are
//! `%m`/`%M` addresses, and how many bytes each conversion shows.
//!
//! The runtime parses formats fully (`runtime::format`); this scanner follows the same
//! rules (one optional flag, `*` width and precision taking an argument each, an
//! optional `l`, a lone `%` at the end being literal) so that argument positions agree.

/// Largest precision honoured, as the runtime clamps it (stap clamps to its print
/// buffer size).
pub(crate) const MAX_MEMORY_BYTES: u32 = 8192;

/// How many bytes a memory conversion shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemLen {
    /// A literal precision, or 1 when there is none (stap's default).
    Bytes(u32),
    /// `%.*m`: the precision is the argument at this index.
    Arg(usize),
}

/// One `%m` or `%M` of a format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemConv {
    /// `m` (raw bytes) or `M` (hex).
    pub conv: char,
    /// Index of the address among the arguments after the format.
    pub arg: usize,
    /// The byte count.
    pub len: MemLen,
}

/// The memory conversions of `fmt`, in order; empty when there are none or when the
/// format is malformed (the runtime reports that in stap's words).
pub(crate) fn memory_conversions(fmt: &str) -> Vec<MemConv> {
    let b = fmt.as_bytes();
    let mut out = Vec::new();
    let mut arg = 0usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        if i + 1 == b.len() || b[i + 1] == b'%' {
            i += 2;
            continue;
        }
        i += 1;
        if matches!(b[i], b'-' | b'+' | b' ' | b'#' | b'0') {
            i += 1;
        }
        // Width: `*` takes an argument; digits do not.
        if b.get(i) == Some(&b'*') {
            arg += 1;
            i += 1;
        } else {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        let mut len = MemLen::Bytes(1);
        if b.get(i) == Some(&b'.') {
            i += 1;
            if b.get(i) == Some(&b'*') {
                len = MemLen::Arg(arg);
                arg += 1;
                i += 1;
            } else {
                let s = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                // A precision of 0 counts as none; larger ones are clamped.
                let n = fmt[s..i]
                    .parse::<u64>()
                    .map_or(u64::from(MAX_MEMORY_BYTES), |n| {
                        n.min(u64::from(MAX_MEMORY_BYTES))
                    });
                if s != i && n > 0 {
                    len = MemLen::Bytes(n as u32);
                }
            }
        }
        if b.get(i) == Some(&b'l') {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return Vec::new();
        };
        i += 1;
        match c {
            b'm' | b'M' => out.push(MemConv {
                conv: c as char,
                arg,
                len,
            }),
            b'd' | b'i' | b'u' | b'x' | b'X' | b'o' | b's' | b'c' | b'p' | b'b' => {}
            _ => return Vec::new(),
        }
        arg += 1;
    }
    out
}
