//! `printf`-style formatting with stap's conversions and flags, and string escaping.
//!
//! stap's formatter (`runtime/vsprintf.c`) derives from the Linux kernel's: `%#x` prints
//! `0x` even for zero, `%#o` prints a leading `0`, and since stap 1.3 `%p` is `%#x`.
//! Formats are parsed once at elaboration into [`Piece`]s.

use std::fmt::Write as _;

/// Largest width or precision honoured (stap clamps to its print buffer size).
const MAX_FIELD: i32 = 8192;

/// `-` flag.
pub(crate) const LEFT: u8 = 1;
/// `+` flag.
pub(crate) const PLUS: u8 = 2;
/// ` ` flag.
pub(crate) const SPACE: u8 = 4;
/// `#` flag.
pub(crate) const SPECIAL: u8 = 8;
/// `0` flag.
pub(crate) const ZEROPAD: u8 = 16;

/// A width or precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Num {
    /// Not given.
    None,
    /// A literal number.
    Lit(i32),
    /// `*`: taken from the next argument.
    Star,
}

/// The conversion character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conv {
    /// `%d` / `%i`
    Dec,
    /// `%u`
    Unsigned,
    /// `%x`
    Hex,
    /// `%X`
    HexUpper,
    /// `%o`
    Oct,
    /// `%s`
    Str,
    /// `%c`
    Char,
    /// `%p`
    Pointer,
    /// `%b`: the value's bytes.
    Binary,
    /// `%m`: target memory, raw. Its argument is the bytes the probe copied, as the
    /// hex text of [`hex_bytes`] (a capture of the address expression).
    Mem,
    /// `%M`: target memory in hex, two lowercase digits a byte.
    MemHex,
}

impl Conv {
    /// Whether the conversion takes a string argument.
    pub(crate) fn wants_string(self) -> bool {
        matches!(self, Conv::Str | Conv::Mem | Conv::MemHex)
    }

    /// Whether the conversion shows target memory (`%m`, `%M`).
    pub(crate) fn is_memory(self) -> bool {
        matches!(self, Conv::Mem | Conv::MemHex)
    }
}

/// One piece of a parsed format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text (`%%` already folded in).
    Lit(String),
    /// A conversion.
    Spec {
        /// Flag bits.
        flags: u8,
        /// Field width.
        width: Num,
        /// Precision.
        prec: Num,
        /// Conversion.
        conv: Conv,
    },
}

/// Parses a stap format string the way stap's `print_format::string_to_components`
/// does, including its quirks: at most one flag character (`%-05d` is `-` with width 5,
/// `%+-d` is an error), a width or precision of 0 counts as none (stap drops it when it
/// rebuilds the format), a single optional `l` modifier, and a lone `%` at the end is
/// literal. Errors are stap's parse-error messages.
pub(crate) fn parse_format(f: &str) -> Result<Vec<Piece>, String> {
    const INVALID: &str = "invalid or missing conversion specifier";
    const TRAILING: &str = "trailing incomplete print format conversion";
    let mut out = Vec::new();
    let mut lit = String::new();
    let b = f.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            let start = i;
            while i < b.len() && b[i] != b'%' {
                i += 1;
            }
            lit.push_str(&f[start..i]);
            continue;
        }
        if i + 1 == b.len() || b[i + 1] == b'%' {
            lit.push('%');
            i += 2;
            continue;
        }
        i += 1;
        let flags = match b[i] {
            b'-' => LEFT,
            b'+' => PLUS,
            b' ' => SPACE,
            b'#' => SPECIAL,
            b'0' => ZEROPAD,
            _ => 0,
        };
        if flags != 0 {
            i += 1;
        }
        let num = |i: &mut usize| -> Num {
            if *i < b.len() && b[*i] == b'*' {
                *i += 1;
                return Num::Star;
            }
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            match f[s..*i].parse::<i64>() {
                Ok(0) => Num::None,
                Ok(n) => Num::Lit(n.min(i64::from(MAX_FIELD)) as i32),
                Err(_) if s == *i => Num::None,
                Err(_) => Num::Lit(MAX_FIELD),
            }
        };
        let width = num(&mut i);
        let mut prec = Num::None;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            if i == b.len() {
                return Err(TRAILING.into());
            }
            prec = num(&mut i);
        }
        if i < b.len() && b[i] == b'l' {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return Err(TRAILING.into());
        };
        i += 1;
        let conv = match c {
            b'd' | b'i' => Conv::Dec,
            b'u' => Conv::Unsigned,
            b'x' => Conv::Hex,
            b'X' => Conv::HexUpper,
            b'o' => Conv::Oct,
            b's' => Conv::Str,
            b'c' => Conv::Char,
            b'p' => Conv::Pointer,
            b'b' => Conv::Binary,
            b'm' => Conv::Mem,
            b'M' => Conv::MemHex,
            _ => return Err(INVALID.into()),
        };
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        out.push(Piece::Spec {
            flags,
            width,
            prec,
            conv,
        });
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// One argument value for [`format`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    /// A long.
    L(i64),
    /// A string.
    S(&'a str),
}

/// Formats `pieces` with `args` into `out`. Argument counts and types were checked at
/// elaboration; a missing argument prints nothing rather than panicking.
pub(crate) fn format(out: &mut Vec<u8>, pieces: &[Piece], args: &[Arg<'_>]) {
    let mut ai = 0usize;
    let mut next = || {
        let a = args.get(ai).copied();
        ai += 1;
        a
    };
    for p in pieces {
        match p {
            Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
            Piece::Spec {
                flags,
                width,
                prec,
                conv,
            } => {
                let mut flags = *flags;
                let mut w: i32 = match width {
                    Num::None => -1,
                    Num::Lit(n) => *n,
                    Num::Star => match next() {
                        Some(Arg::L(v)) => v.clamp(-(MAX_FIELD as i64), MAX_FIELD as i64) as i32,
                        _ => -1,
                    },
                };
                if w < -1 {
                    // A negative `*` width means left alignment, as in C.
                    flags |= LEFT;
                    w = w.saturating_neg();
                }
                let pr: i32 = match prec {
                    Num::None => -1,
                    Num::Lit(n) => *n,
                    Num::Star => match next() {
                        Some(Arg::L(v)) => v.clamp(0, MAX_FIELD as i64) as i32,
                        _ => 0,
                    },
                };
                let a = next();
                match conv {
                    Conv::Str => {
                        let s = match a {
                            Some(Arg::S(s)) => s,
                            _ => "",
                        };
                        let escaped;
                        let s = if flags & SPECIAL != 0 {
                            escaped = escape(s);
                            escaped.as_str()
                        } else {
                            s
                        };
                        let s = if pr >= 0 { truncate(s, pr as usize) } else { s };
                        pad_str(out, s.as_bytes(), w, flags);
                        if flags & ZEROPAD != 0 {
                            // stap's _stp_vsprint_memory ends a `%0s` field with a NUL.
                            out.push(0);
                        }
                    }
                    Conv::Char => {
                        let v = match a {
                            Some(Arg::L(v)) => v,
                            _ => 0,
                        };
                        let c = v as u8;
                        // `%#c` escapes what is not printable ASCII, and quote/backslash.
                        let esc;
                        let bytes: &[u8] = if flags & SPECIAL != 0
                            && (!(0x20..=0x7e).contains(&c) || c == b'\'' || c == b'\\')
                        {
                            esc = escape_char(c);
                            esc.as_bytes()
                        } else {
                            std::slice::from_ref(&c)
                        };
                        pad_str(out, bytes, w, flags);
                    }
                    Conv::Mem | Conv::MemHex => {
                        let hex = match a {
                            Some(Arg::S(s)) => s,
                            _ => "",
                        };
                        memory(out, hex, *conv, w, pr, flags);
                    }
                    Conv::Binary => {
                        let v = match a {
                            Some(Arg::L(v)) => v,
                            _ => 0,
                        };
                        binary(out, v, w, pr, flags);
                    }
                    _ => {
                        let v = match a {
                            Some(Arg::L(v)) => v,
                            _ => 0,
                        };
                        number(out, v, *conv, w, pr, flags);
                    }
                }
            }
        }
    }
}

/// The longest prefix of `s` with at most `n` bytes that ends on a character boundary.
pub(crate) fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut e = n;
    while !s.is_char_boundary(e) {
        e -= 1;
    }
    &s[..e]
}

fn pad_str(out: &mut Vec<u8>, s: &[u8], w: i32, flags: u8) {
    let pad = (w.max(0) as usize).saturating_sub(s.len());
    if flags & LEFT == 0 {
        out.extend(std::iter::repeat_n(b' ', pad));
    }
    out.extend_from_slice(s);
    if flags & LEFT != 0 {
        out.extend(std::iter::repeat_n(b' ', pad));
    }
}

/// stap's `%b`: the value's low `precision` bytes (1, 2, 4 or 8), NUL-padded to the
/// width; an unspecified width or precision defaults to the other, else to 8.
fn binary(out: &mut Vec<u8>, v: i64, width: i32, prec: i32, flags: u8) {
    let valid = |p: i32| if matches!(p, 1 | 2 | 4 | 8) { p } else { -1 };
    let mut prec = valid(prec);
    let mut width = width;
    if width == -1 {
        if prec == -1 {
            width = 8;
            prec = 8;
        } else {
            width = prec;
        }
    } else if prec == -1 {
        prec = valid(width);
        if prec == -1 {
            prec = 8;
        }
    }
    let pad = (width - prec).max(0) as usize;
    if flags & LEFT == 0 {
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend_from_slice(&v.to_le_bytes()[..prec as usize]);
    if flags & LEFT != 0 {
        out.extend(std::iter::repeat_n(0u8, pad));
    }
}

/// The hex text standing for captured bytes (see [`Conv::Mem`]).
pub(crate) fn hex_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// stap's `%m`/`%M` (`_stp_vsprint_memory`): `precision` bytes (1 when none), raw or
/// as hex, space-padded to the width like a string, a NUL after a `0`-flagged field.
/// `hex` is the copy the probe made (never shorter than the precision unless the
/// format and the capture disagree; then what there is is shown).
fn memory(out: &mut Vec<u8>, hex: &str, conv: Conv, width: i32, prec: i32, flags: u8) {
    let len = if prec > 0 { prec as usize } else { 1 };
    let raw: Vec<u8> = hex
        .as_bytes()
        .chunks_exact(2)
        .take(len)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect();
    if conv == Conv::MemHex {
        pad_str(out, hex_bytes(&raw).as_bytes(), width, flags);
    } else {
        pad_str(out, &raw, width, flags);
    }
    if flags & ZEROPAD != 0 {
        out.push(0);
    }
}

/// One character escaped as `%#c` does: C escapes, else three octal digits.
fn escape_char(c: u8) -> String {
    match c {
        0x07 => "\\a".into(),
        0x08 => "\\b".into(),
        0x0c => "\\f".into(),
        b'\n' => "\\n".into(),
        b'\r' => "\\r".into(),
        b'\t' => "\\t".into(),
        0x0b => "\\v".into(),
        b'\'' => "\\'".into(),
        b'\\' => "\\\\".into(),
        _ => format!("\\{c:03o}"),
    }
}

/// The kernel-style `number()` conversion stap uses for integers.
fn number(out: &mut Vec<u8>, v: i64, conv: Conv, width: i32, prec: i32, mut flags: u8) {
    let (base, upper, signed) = match conv {
        Conv::Dec => (10u64, false, true),
        Conv::Unsigned => (10, false, false),
        Conv::Hex => (16, false, false),
        Conv::HexUpper => (16, true, false),
        Conv::Oct => (8, false, false),
        Conv::Pointer => (16, false, false),
        _ => (10, false, true),
    };
    let mut size = width;
    let mut prec = prec;
    if conv == Conv::Pointer {
        flags |= SPECIAL;
    }
    if flags & LEFT != 0 {
        flags &= !ZEROPAD;
    }
    let mut sign: Option<u8> = None;
    let mut num = v as u64;
    if signed {
        if v < 0 {
            sign = Some(b'-');
            num = v.unsigned_abs();
            size -= 1;
        } else if flags & PLUS != 0 {
            sign = Some(b'+');
            size -= 1;
        } else if flags & SPACE != 0 {
            sign = Some(b' ');
            size -= 1;
        }
    }
    if flags & SPECIAL != 0 {
        if base == 16 {
            size -= 2;
        } else if base == 8 {
            size -= 1;
        }
    }
    let mut digits = [0u8; 66];
    let mut n = 0usize;
    let table: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    if num == 0 {
        digits[0] = b'0';
        n = 1;
    } else {
        while num != 0 {
            digits[n] = table[(num % base) as usize];
            num /= base;
            n += 1;
        }
    }
    if n as i32 > prec {
        prec = n as i32;
    }
    size -= prec;
    if flags & (ZEROPAD | LEFT) == 0 {
        while size > 0 {
            out.push(b' ');
            size -= 1;
        }
    }
    if let Some(s) = sign {
        out.push(s);
    }
    if flags & SPECIAL != 0 {
        if base == 8 {
            out.push(b'0');
        } else if base == 16 {
            out.push(b'0');
            out.push(if upper { b'X' } else { b'x' });
        }
    }
    if flags & LEFT == 0 {
        let c = if flags & ZEROPAD != 0 { b'0' } else { b' ' };
        while size > 0 {
            out.push(c);
            size -= 1;
        }
    }
    while (n as i32) < prec {
        out.push(b'0');
        prec -= 1;
    }
    for i in (0..n).rev() {
        out.push(digits[i]);
    }
    while size > 0 {
        out.push(b' ');
        size -= 1;
    }
}

/// Escapes a string the way stap's `text_str` and `%#s` do (without quotes), with no
/// length limit.
pub(crate) fn escape(s: &str) -> String {
    text_str(s, 0, 0, false, usize::MAX)
}

/// stap's `_stp_text_str` (`runtime/stp_string.c`): printable ASCII stays, `"` and `\`
/// and the C control characters get a backslash escape, other bytes three octal
/// digits, UTF-8 sequences `\uXXXX` or `\UXXXXXXXX`. At most `inlen` input bytes are
/// read and `outlen` bytes written (0 or out of range: `maxstringlen - 1`); an escape
/// that does not fit ends the output. `quoted` adds double quotes and, when the input
/// did not fit, ends with `"...` instead (the total staying within `outlen`).
pub(crate) fn text_str(
    input: &str,
    inlen: i64,
    outlen: i64,
    quoted: bool,
    maxstringlen: usize,
) -> String {
    let max = i64::try_from(maxstringlen)
        .unwrap_or(i64::MAX)
        .saturating_sub(1);
    let mut inlen = if inlen <= 0 || inlen > max {
        max
    } else {
        inlen
    };
    let mut outlen = if outlen <= 0 || outlen > max {
        max
    } else {
        outlen
    };
    let mut out: Vec<u8> = Vec::new();
    if quoted {
        outlen = outlen.max(5) - 2;
        out.push(b'"');
    }
    let bytes = input.as_bytes();
    let mut i = 0usize;
    let mut c: u32 = 0;
    while inlen > 0 {
        // Decode one character: a UTF-8 sequence only if it lies within `inlen`.
        let b = bytes.get(i).copied().unwrap_or(0);
        // (After a sequence cut by `inlen`, `i` may sit inside a character: its bytes
        // then go out one by one, as stap's decoder returns them verbatim.)
        let (code, n) = match input.get(i..).and_then(|r| r.chars().next()) {
            Some(ch) if ch.len_utf8() > 1 && (ch.len_utf8() as i64) <= inlen => {
                (ch as u32, ch.len_utf8())
            }
            _ => (u32::from(b), 1),
        };
        c = code;
        if c == 0 || outlen <= 0 {
            break;
        }
        i += n;
        inlen -= n as i64;
        let num: i64;
        if n > 1 {
            num = if c <= 0xffff { 6 } else { 10 };
            if outlen < num {
                break;
            }
            let _ = if c <= 0xffff {
                write!(Bytes(&mut out), "\\u{c:04X}")
            } else {
                write!(Bytes(&mut out), "\\U{c:08X}")
            };
        } else if (0x20..0x7f).contains(&c) && c != u32::from(b'"') && c != u32::from(b'\\') {
            num = 1;
            out.push(c as u8);
        } else {
            let short = match c as u8 {
                0x07 => Some(b'a'),
                0x08 => Some(b'b'),
                0x0c => Some(b'f'),
                b'\n' => Some(b'n'),
                b'\r' => Some(b'r'),
                b'\t' => Some(b't'),
                0x0b => Some(b'v'),
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                _ => None,
            };
            num = if short.is_some() { 2 } else { 4 };
            if outlen < num {
                break;
            }
            out.push(b'\\');
            match short {
                Some(e) => out.push(e),
                None => {
                    let v = c as u8;
                    out.extend_from_slice(&[
                        b'0' + (v >> 6),
                        b'0' + ((v >> 3) & 7),
                        b'0' + (v & 7),
                    ]);
                }
            }
        }
        outlen -= num;
    }
    if quoted {
        if c != 0 && inlen > 0 {
            // stap backs up over what it wrote so that `"...` fits in the limit.
            let keep = (out.len() as i64 + outlen - 3).max(1) as usize;
            out.truncate(keep);
            out.extend_from_slice(b"\"...");
        } else {
            out.push(b'"');
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// `fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `"..."` with [`escape`]d contents.
pub(crate) fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// A character as `%#c` shows it: printable ASCII as is, else escaped.
pub(crate) fn char_escaped(c: u8) -> String {
    if (0x20..=0x7e).contains(&c) && c != b'\'' && c != b'\\' {
        (c as char).to_string()
    } else {
        escape_char(c)
    }
}
