//! The interpreter: runs compiled handlers against the session state, with a record
//! (or none, for begin/end/timer probes) as context.
//!
//! Evaluation is split by type (`ev_l` for longs, `ev_s` for strings) so that the hot
//! paths — `c[tid()]++`, `h <<< $len` — touch no strings and allocate nothing.

use std::io::Write;

use capture_plan::{Decode, FieldStatus, PrettyPart, Record};

use crate::format::{self, Arg};
use crate::ir::*;
use crate::map::{Key, KeyPart, Table};
use crate::stats::{print_histogram, HistSpec, Stat};

/// A runtime error: stap's message and the token it happened near.
#[derive(Debug)]
pub(crate) struct RtErr {
    pub(crate) msg: String,
    pub(crate) tok: Tok,
}

/// Non-local control flow, carried in the `Err` side of results.
#[derive(Debug)]
pub(crate) enum Ctl {
    Err(Box<RtErr>),
    Next,
    Return,
    Break,
    Continue,
}

type R<T> = Result<T, Ctl>;

fn fail<T>(msg: impl Into<String>, tok: Tok) -> R<T> {
    Err(Ctl::Err(Box::new(RtErr {
        msg: msg.into(),
        tok,
    })))
}

/// Locals of one function or handler invocation.
#[derive(Default)]
pub(crate) struct Frame {
    l: Vec<i64>,
    s: Vec<String>,
}

impl Frame {
    fn reset(&mut self, size: FrameSize) {
        self.l.clear();
        self.l.resize(size.longs as usize, 0);
        for s in self.s.iter_mut() {
            s.clear();
        }
        self.s.resize(size.strs as usize, String::new());
    }
}

/// One global array's contents.
pub(crate) enum ArrayData {
    L(Table<i64>),
    S(Table<String>),
    St(Table<Stat>),
}

impl ArrayData {
    /// The keys in insertion order, whatever the values' type.
    fn ordered_keys(&self) -> Vec<&Key> {
        fn keys<V>(t: &Table<V>) -> Vec<&Key> {
            t.ordered().into_iter().map(|(k, _)| k).collect()
        }
        match self {
            ArrayData::L(t) => keys(t),
            ArrayData::S(t) => keys(t),
            ArrayData::St(t) => keys(t),
        }
    }
}

/// A site binding prepared for fast lookups.
pub(crate) struct BindRt {
    pub(crate) probe: u32,
    pub(crate) pp: String,
    /// `pn()` (stap's script-level point: the resolved one, or an alias as written).
    pub(crate) pn: String,
    pub(crate) function: String,
    /// Decode of each dense capture slot at this site.
    pub(crate) caps: Vec<Option<Decode>>,
}

/// What a handler runs with.
pub(crate) struct Cx<'r> {
    pub(crate) rec: Option<&'r Record>,
    pub(crate) bind: Option<&'r BindRt>,
    pub(crate) pp: &'r str,
}

/// Numeric limits in force.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) maxaction: i64,
    pub(crate) maxaction_interruptible: i64,
    pub(crate) maxmapentries: usize,
    pub(crate) maxstringlen: usize,
    pub(crate) maxerrors: u64,
    pub(crate) maxnesting: usize,
    /// Skipped probes tolerated before the session stops (`-D MAXSKIPPED`).
    pub(crate) maxskipped: u64,
    /// Frames of a user backtrace (`-D MAXBACKTRACE`).
    pub(crate) maxbacktrace: usize,
    /// How histograms are drawn (`-D HIST_WIDTH`, `-D HIST_ELISION`).
    pub(crate) hist: crate::stats::HistLayout,
}

/// Facts about snaptap itself, used as the context of begin/end/timer probes.
pub(crate) struct SelfCtx {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) comm: String,
    pub(crate) target: u32,
}

/// Everything that changes while the session runs.
pub(crate) struct State {
    pub(crate) glong: Vec<i64>,
    pub(crate) gstr: Vec<String>,
    pub(crate) gstat: Vec<Stat>,
    pub(crate) arrays: Vec<ArrayData>,
    frames: Vec<Frame>,
    depth: usize,
    pub(crate) actions_left: i64,
    pub(crate) out: Vec<u8>,
    pub(crate) err: Box<dyn Write>,
    ret_l: i64,
    ret_s: String,
    pub(crate) exit_requested: bool,
    /// `abort()` was called: no more handlers of any kind.
    pub(crate) aborted: bool,
    pub(crate) limits: Limits,
    pub(crate) me: SelfCtx,
    tokenize_rest: Option<String>,
    last_match: Vec<Option<String>>,
    rng: u64,
    /// `thread_indent` / `indent` state: depth and first timestamp per thread.
    indent: crate::map::FxMap<i64, (i64, i64)>,
    /// The driver's unwinder and symboliser for user stacks, if any.
    pub(crate) stacks: Option<Box<dyn crate::ustack::Stacks>>,
    /// `tz_gmtoff()` and `tz_name()`: seconds west of UTC and the zone's abbreviation.
    pub(crate) tz: (i64, String),
    /// Commands `system()` asked for in the running handler, started after it.
    pub(crate) system_cmds: Vec<String>,
    /// Command lines and environments read from `/proc` (see [`crate::tapfns`]).
    procs: crate::tapfns::ProcCache,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn cmp_holds<T: PartialOrd>(c: Cmp, a: T, b: T) -> bool {
    match c {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b,
        Cmp::Lt => a < b,
        Cmp::Le => a <= b,
        Cmp::Gt => a > b,
        Cmp::Ge => a >= b,
    }
}

/// Reads `size` little-endian bytes (fewer if the field is shorter).
fn le(bytes: &[u8], size: u8) -> u64 {
    let n = (size as usize).min(8).min(bytes.len());
    let mut w = [0u8; 8];
    w[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(w)
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    if bits == 0 || bits >= 64 {
        return v as i64;
    }
    let sh = 64 - bits;
    ((v << sh) as i64) >> sh
}

/// Decodes an integer capture.
pub(crate) fn decode_long(rec: &Record, d: &Decode) -> Result<i64, FieldStatus> {
    match d {
        Decode::Int {
            field,
            size,
            signed,
        } => {
            let b = rec.field(*field as usize)?;
            let v = le(b, *size);
            Ok(if *signed {
                sign_extend(v, u32::from(*size) * 8)
            } else {
                v as i64
            })
        }
        Decode::Bitfield {
            field,
            size,
            signed,
            bit_offset,
            bit_size,
        } => {
            let b = rec.field(*field as usize)?;
            let unit = le(b, *size);
            let bits = u32::from(*bit_size).min(64);
            let v = unit.checked_shr(u32::from(*bit_offset)).unwrap_or(0);
            let v = if bits >= 64 {
                v
            } else {
                v & ((1u64 << bits) - 1)
            };
            Ok(if *signed {
                sign_extend(v, bits)
            } else {
                v as i64
            })
        }
        Decode::Str { .. }
        | Decode::Bytes { .. }
        | Decode::Pretty(_)
        | Decode::Backtrace { .. } => Ok(0),
    }
}

/// Decodes a string capture (bytes up to the first NUL, lossily, truncated).
pub(crate) fn decode_str(rec: &Record, d: &Decode, max: usize) -> Result<String, FieldStatus> {
    match d {
        Decode::Str { field } => {
            let b = rec.field(*field as usize)?;
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            let s = String::from_utf8_lossy(&b[..end]);
            Ok(format::truncate(&s, max).to_string())
        }
        // `%m`/`%M` bytes travel as hex text, whole: the precision bounded the copy.
        Decode::Bytes { field } => Ok(format::hex_bytes(rec.field(*field as usize)?)),
        Decode::Pretty(parts) => {
            let mut o = String::new();
            for p in parts {
                match p {
                    PrettyPart::Text(t) => o.push_str(t),
                    PrettyPart::Dec(d) => match decode_long(rec, d) {
                        Ok(v) => o.push_str(&v.to_string()),
                        Err(_) => o.push('?'),
                    },
                    PrettyPart::Hex(d) => match decode_long(rec, d) {
                        Ok(v) => o.push_str(&format!("{v:#x}")),
                        Err(_) => o.push('?'),
                    },
                    PrettyPart::Quoted(d) => match decode_str(rec, d, max) {
                        Ok(s) => o.push_str(&format::quote(&s)),
                        Err(_) => o.push('?'),
                    },
                    PrettyPart::Char(d) => match decode_long(rec, d) {
                        Ok(v) => {
                            o.push('\'');
                            o.push_str(&format::char_escaped(v as u8));
                            o.push('\'');
                        }
                        Err(_) => o.push('?'),
                    },
                }
            }
            Ok(format::truncate(&o, max).to_string())
        }
        Decode::Int { .. } | Decode::Bitfield { .. } => Ok(decode_long(rec, d)?.to_string()),
        // User stacks are unwound by the caller, which has the unwinder.
        Decode::Backtrace { .. } => Ok(String::new()),
    }
}

/// stap's `ctime(epochsecs)`: `Wed Jun 30 21:49:08 1993`, in UTC; a time that does not
/// fit a 32-bit time_t is the error tapset/linux/ctime.stp raises.
fn ctime_checked(secs: i64, tok: Tok) -> R<String> {
    if secs > i64::from(i32::MAX) {
        return fail("Time too far in the future to be converted", tok);
    }
    if secs < i64::from(i32::MIN) {
        return fail("Time too far in the past to be converted", tok);
    }
    Ok(ctime(secs))
}

/// [`ctime_checked`] for a time already known to be in range.
fn ctime(secs: i64) -> String {
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let wd = WD[days.rem_euclid(7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{wd} {} {d:2} {:02}:{:02}:{:02} {y}",
        MON[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// C `strtol` on a script string: leading blanks, sign, optional base prefix.
fn strtol(s: &str, base: i64) -> i64 {
    let b = s.trim_start().as_bytes();
    let mut i = 0;
    let mut neg = false;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        neg = b[i] == b'-';
        i += 1;
    }
    let mut base = base as u32;
    if (base == 0 || base == 16) && b.len() > i + 1 && b[i] == b'0' && (b[i + 1] | 0x20) == b'x' {
        base = 16;
        i += 2;
    } else if base == 0 && i < b.len() && b[i] == b'0' {
        base = 8;
    } else if base == 0 {
        base = 10;
    }
    if !(2..=36).contains(&base) {
        return 0;
    }
    let mut v: i64 = 0;
    while i < b.len() {
        let Some(d) = (b[i] as char).to_digit(base) else {
            break;
        };
        v = v.wrapping_mul(base as i64).wrapping_add(d as i64);
        i += 1;
    }
    if neg {
        v.wrapping_neg()
    } else {
        v
    }
}

impl State {
    pub(crate) fn new(prog: &Program, limits: Limits, me: SelfCtx, err: Box<dyn Write>) -> State {
        let arrays = prog
            .arrays
            .iter()
            .map(|a| match a.val {
                Ty::Long => ArrayData::L(Table::default()),
                Ty::Str => ArrayData::S(Table::default()),
                Ty::Stats => ArrayData::St(Table::default()),
            })
            .collect();
        let mut st = State {
            glong: vec![0; prog.n_glong as usize],
            gstr: vec![String::new(); prog.n_gstr as usize],
            gstat: prog.stats.iter().map(|m| Stat::new(&m.hist)).collect(),
            arrays,
            frames: Vec::new(),
            depth: 0,
            actions_left: limits.maxaction,
            out: Vec::with_capacity(1 << 16),
            err,
            ret_l: 0,
            ret_s: String::new(),
            exit_requested: false,
            aborted: false,
            limits,
            me,
            stacks: None,
            tokenize_rest: None,
            last_match: Vec::new(),
            rng: now_ns() | 1,
            indent: Default::default(),
            tz: crate::tz::local_timezone((now_ns() / 1_000_000_000) as i64),
            system_cmds: Vec::new(),
            procs: Default::default(),
        };
        for i in &prog.inits {
            match i {
                Init::L(s, v) => st.glong[*s as usize] = *v,
                Init::S(s, v) => st.gstr[*s as usize] = v.clone(),
            }
        }
        st
    }

    fn maxstr(&self) -> usize {
        self.limits.maxstringlen.saturating_sub(1).max(1)
    }

    fn trunc(&self, mut s: String) -> String {
        let m = self.maxstr();
        if s.len() > m {
            let t = format::truncate(&s, m).len();
            s.truncate(t);
        }
        s
    }

    /// Runs one handler from the top. Returns the error that escaped it, if any.
    pub(crate) fn run_handler(
        &mut self,
        prog: &Program,
        h: &Handler,
        cx: &Cx<'_>,
    ) -> Option<RtErr> {
        self.depth = 0;
        if self.frames.is_empty() {
            self.frames.push(Frame::default());
        }
        self.frames[0].reset(h.frame);
        self.actions_left = match h.kind {
            ProbeKind::Begin | ProbeKind::End | ProbeKind::Error => {
                self.limits.maxaction_interruptible
            }
            _ => self.limits.maxaction,
        };
        if let Some(c) = &h.cond {
            match self.ev_l(prog, cx, c) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(Ctl::Err(e)) => return Some(*e),
                Err(_) => return None,
            }
        }
        match self.exec(prog, cx, &h.body) {
            Err(Ctl::Err(e)) => Some(*e),
            _ => None,
        }
    }

    #[inline]
    fn tick(&mut self, tok: Tok) -> R<()> {
        self.actions_left -= 1;
        if self.actions_left <= 0 {
            return fail("MAXACTION exceeded", tok);
        }
        Ok(())
    }

    fn set_l(&mut self, v: VarRef, x: i64) {
        match v {
            VarRef::Local(i) => {
                if let Some(s) = self.frames[self.depth].l.get_mut(i as usize) {
                    *s = x;
                }
            }
            VarRef::Global(i) => {
                if let Some(s) = self.glong.get_mut(i as usize) {
                    *s = x;
                }
            }
        }
    }

    fn set_s(&mut self, v: VarRef, x: String) {
        match v {
            VarRef::Local(i) => {
                if let Some(s) = self.frames[self.depth].s.get_mut(i as usize) {
                    *s = x;
                }
            }
            VarRef::Global(i) => {
                if let Some(s) = self.gstr.get_mut(i as usize) {
                    *s = x;
                }
            }
        }
    }

    fn get_l(&self, v: VarRef) -> i64 {
        match v {
            VarRef::Local(i) => self.frames[self.depth]
                .l
                .get(i as usize)
                .copied()
                .unwrap_or(0),
            VarRef::Global(i) => self.glong.get(i as usize).copied().unwrap_or(0),
        }
    }

    fn get_s(&self, v: VarRef) -> &str {
        match v {
            VarRef::Local(i) => self.frames[self.depth]
                .s
                .get(i as usize)
                .map_or("", |s| s.as_str()),
            VarRef::Global(i) => self.gstr.get(i as usize).map_or("", |s| s.as_str()),
        }
    }

    fn key(&mut self, p: &Program, cx: &Cx<'_>, keys: &[(Ex, Ty)]) -> R<Key> {
        if let [(e, t)] = keys {
            return Ok(match t {
                Ty::Str => Key::S(self.ev_s(p, cx, e)?),
                _ => Key::L(self.ev_l(p, cx, e)?),
            });
        }
        let mut parts = Vec::with_capacity(keys.len());
        for (e, t) in keys {
            parts.push(match t {
                Ty::Str => KeyPart::S(self.ev_s(p, cx, e)?),
                _ => KeyPart::L(self.ev_l(p, cx, e)?),
            });
        }
        Ok(Key::from_parts(parts))
    }

    /// The long slot of an array element, created (with overflow check) if absent.
    fn elem_l(&mut self, p: &Program, arr: u32, k: Key, tok: Tok) -> R<&mut i64> {
        let max = p.arrays[arr as usize].max;
        let ArrayData::L(t) = &mut self.arrays[arr as usize] else {
            return fail("internal error: array type", tok);
        };
        if !t.contains(&k) {
            if t.len() >= max {
                return overflow(p, arr, tok);
            }
            return Ok(t.insert_new(k, 0));
        }
        match t.get_mut(&k) {
            Some(v) => Ok(v),
            None => fail("internal error: array entry vanished", tok),
        }
    }

    fn agg_mut(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        agg: &AggRef,
        tok: Tok,
    ) -> R<(&mut Stat, HistSpec, u32)> {
        match agg {
            AggRef::Scalar(i) => {
                let m = &p.stats[*i as usize];
                Ok((&mut self.gstat[*i as usize], m.hist, m.shift))
            }
            AggRef::Elem { arr, keys } => {
                let k = self.key(p, cx, keys)?;
                let m = &p.arrays[*arr as usize];
                let (spec, shift, max) = (m.hist, m.shift, m.max);
                let ArrayData::St(t) = &mut self.arrays[*arr as usize] else {
                    return fail("internal error: array type", tok);
                };
                if !t.contains(&k) {
                    if t.len() >= max {
                        return overflow(p, *arr, tok);
                    }
                    return Ok((t.insert_new(k, Stat::new(&spec)), spec, shift));
                }
                match t.get_mut(&k) {
                    Some(v) => Ok((v, spec, shift)),
                    None => fail("internal error: array entry vanished", tok),
                }
            }
        }
    }

    /// A read-only view of an aggregate (None: absent element).
    fn agg_get(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        agg: &AggRef,
    ) -> R<Option<(&Stat, HistSpec, u32)>> {
        match agg {
            AggRef::Scalar(i) => {
                let m = &p.stats[*i as usize];
                Ok(Some((&self.gstat[*i as usize], m.hist, m.shift)))
            }
            AggRef::Elem { arr, keys } => {
                let k = self.key(p, cx, keys)?;
                let m = &p.arrays[*arr as usize];
                let ArrayData::St(t) = &self.arrays[*arr as usize] else {
                    return Ok(None);
                };
                Ok(t.get(&k).map(|s| (s, m.hist, m.shift)))
            }
        }
    }

    fn capture_err(&mut self, st: FieldStatus, fault: FaultKind, tok: Tok) -> RtErr {
        let msg = match st {
            FieldStatus::Fault { addr } => match fault {
                FaultKind::UserString | FaultKind::Warn => {
                    format!("user string copy fault -14 at 0x{addr:016x} [man error::fault]")
                }
                FaultKind::KernelString => {
                    format!("kernel string copy fault at 0x{addr:016x} [man error::fault]")
                }
                FaultKind::Wide(_, false) => {
                    format!("user string copy fault at 0x{addr:x} [man error::fault]")
                }
                FaultKind::Wide(_, true) => {
                    format!("kernel string copy fault at 0x{addr:x} [man error::fault]")
                }
                FaultKind::Deref | FaultKind::UserRead | FaultKind::WarnRead(_) => {
                    format!("read fault [man error::fault] at 0x{addr:016x}")
                }
            },
            FieldStatus::NoRegister(r) => {
                format!("internal error: DWARF register {r} is not available at this probe")
            }
            FieldStatus::Ok { .. } => "internal error: captured field out of range".to_string(),
        };
        RtErr { msg, tok }
    }

    fn missing_capture(&self, p: &Program, cap: u32, tok: Tok) -> Ctl {
        let id = p.capture_ids.get(cap as usize).copied().unwrap_or(0);
        Ctl::Err(Box::new(RtErr {
            msg: format!("internal error: expression #{id} was not captured at this probe site"),
            tok,
        }))
    }

    fn warn(&mut self, msg: &str) {
        let _ = self.flush_out_only();
        let nl = if msg.ends_with('\n') { "" } else { "\n" };
        let _ = write!(self.err, "WARNING: {msg}{nl}");
    }

    fn flush_out_only(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// The record and decode of capture `cap` at the current site, or the internal
    /// error saying it was not captured (the planner and the runtime disagree).
    fn captured<'c>(
        &self,
        p: &Program,
        cx: &Cx<'c>,
        cap: u32,
        tok: Tok,
    ) -> R<(&'c Record, &'c Decode)> {
        let d = cx
            .bind
            .and_then(|b| b.caps.get(cap as usize))
            .and_then(|d| d.as_ref());
        match (cx.rec, d) {
            (Some(rec), Some(d)) => Ok((rec, d)),
            _ => Err(self.missing_capture(p, cap, tok)),
        }
    }

    fn cap_l(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        cap: u32,
        tok: Tok,
        fault: FaultKind,
        fb: &Option<Box<Ex>>,
    ) -> R<i64> {
        let (rec, d) = self.captured(p, cx, cap, tok)?;
        match decode_long(rec, d) {
            Ok(v) => Ok(v),
            Err(st) => {
                if fault == FaultKind::UserRead {
                    return Ok(0);
                }
                if let (FaultKind::WarnRead(what), FieldStatus::Fault { addr }) = (fault, &st) {
                    self.warn(&format!("user {what} 0x{addr:016x} [man error::fault]"));
                    return Ok(0);
                }
                if let Some(f) = fb {
                    if fault == FaultKind::Warn {
                        let e = self.capture_err(st, fault, tok);
                        self.warn(&e.msg);
                    }
                    return self.ev_l(p, cx, f);
                }
                Err(Ctl::Err(Box::new(self.capture_err(st, fault, tok))))
            }
        }
    }

    fn cap_s(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        cap: u32,
        tok: Tok,
        fault: FaultKind,
        fb: &Option<Box<Ex>>,
    ) -> R<String> {
        let (rec, d) = self.captured(p, cx, cap, tok)?;
        if let (FaultKind::Wide(unit, _), Decode::Bytes { field }) = (fault, d) {
            let max = self.maxstr();
            let r = rec
                .field(*field as usize)
                .map(|b| crate::tapfns::decode_wide(b, usize::from(unit), max));
            return match r {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(c)) => match fb {
                    Some(f) => self.ev_s(p, cx, f),
                    // stap's words (it adds the address, which the copy does not keep).
                    None => fail(
                        format!("invalid UTF-{} character U+{c:X}", u32::from(unit) * 8),
                        tok,
                    ),
                },
                Err(st) => match fb {
                    Some(f) => self.ev_s(p, cx, f),
                    None => Err(Ctl::Err(Box::new(self.capture_err(st, fault, tok)))),
                },
            };
        }
        match decode_str(rec, d, self.maxstr()) {
            Ok(v) => Ok(v),
            Err(st) => {
                if let Some(f) = fb {
                    if fault == FaultKind::Warn {
                        let e = self.capture_err(st, fault, tok);
                        self.warn(&e.msg);
                    }
                    return self.ev_s(p, cx, f);
                }
                Err(Ctl::Err(Box::new(self.capture_err(st, fault, tok))))
            }
        }
    }

    fn call(&mut self, p: &Program, cx: &Cx<'_>, func: u32, args: &[(Ex, Ty)], tok: Tok) -> R<()> {
        let f = &p.funcs[func as usize];
        if self.depth >= self.limits.maxnesting {
            return fail("MAXNESTING exceeded", tok);
        }
        let mut ls: [i64; 8] = [0; 8];
        let mut lv: Vec<i64> = Vec::new();
        let mut sv: Vec<String> = Vec::new();
        for (i, (e, t)) in args.iter().enumerate() {
            match t {
                Ty::Str => sv.push(self.ev_s(p, cx, e)?),
                _ => {
                    let v = self.ev_l(p, cx, e)?;
                    if i < 8 {
                        ls[i] = v;
                    }
                    lv.push(v);
                }
            }
        }
        self.depth += 1;
        if self.frames.len() <= self.depth {
            self.frames.push(Frame::default());
        }
        self.frames[self.depth].reset(f.frame);
        let (mut li, mut si) = (0usize, 0usize);
        for (slot, t) in &f.params {
            match t {
                Ty::Str => {
                    let v = std::mem::take(&mut sv[si]);
                    si += 1;
                    self.frames[self.depth].s[*slot as usize] = v;
                }
                _ => {
                    self.frames[self.depth].l[*slot as usize] = lv[li];
                    li += 1;
                }
            }
        }
        self.ret_l = 0;
        self.ret_s.clear();
        let r = self.exec(p, cx, &f.body);
        self.depth -= 1;
        match r {
            Ok(()) | Err(Ctl::Return) | Err(Ctl::Break) | Err(Ctl::Continue) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn stat_val(&mut self, p: &Program, cx: &Cx<'_>, f: StatFn, agg: &AggRef, tok: Tok) -> R<i64> {
        let s = self.agg_get(p, cx, agg)?;
        let (count, sum, min, max, avg, var) = match s {
            Some((s, _, _)) => {
                let var = match f {
                    StatFn::Variance(sh) => s.variance(sh),
                    _ => 0,
                };
                (s.count, s.sum, s.min, s.max, s.avg(), var)
            }
            None => (0, 0, 0, 0, 0, 0),
        };
        match f {
            StatFn::Count => Ok(count),
            StatFn::Sum => Ok(sum),
            _ if count == 0 => fail("empty aggregate", tok),
            StatFn::Min => Ok(min),
            StatFn::Max => Ok(max),
            StatFn::Avg => Ok(avg),
            StatFn::Variance(_) => Ok(var),
        }
    }

    fn print_args(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        kind: PrintKind,
        args: &[(Ex, Ty)],
        dst: &mut Vec<u8>,
    ) -> R<()> {
        let (delim, rest) = match kind {
            PrintKind::Printd | PrintKind::Printdln => match args.split_first() {
                Some(((d, _), rest)) => (Some(self.ev_s(p, cx, d)?), rest),
                None => (None, args),
            },
            _ => (None, args),
        };
        for (i, (e, t)) in rest.iter().enumerate() {
            if i > 0 {
                if let Some(d) = &delim {
                    dst.extend_from_slice(d.as_bytes());
                }
            }
            match t {
                Ty::Str => {
                    let s = self.ev_s(p, cx, e)?;
                    dst.extend_from_slice(s.as_bytes());
                }
                _ => {
                    let v = self.ev_l(p, cx, e)?;
                    dst.extend_from_slice(v.to_string().as_bytes());
                }
            }
        }
        if matches!(kind, PrintKind::Println | PrintKind::Printdln) {
            dst.push(b'\n');
        }
        Ok(())
    }

    fn printf(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        fmt: &[format::Piece],
        args: &[(Ex, Ty)],
        dst: &mut Vec<u8>,
    ) -> R<()> {
        let mut ls: Vec<i64> = Vec::with_capacity(args.len());
        let mut ss: Vec<String> = Vec::new();
        for (e, t) in args {
            match t {
                Ty::Str => ss.push(self.ev_s(p, cx, e)?),
                _ => ls.push(self.ev_l(p, cx, e)?),
            }
        }
        let (mut li, mut si) = (0, 0);
        let vals: Vec<Arg<'_>> = args
            .iter()
            .map(|(_, t)| match t {
                Ty::Str => {
                    si += 1;
                    Arg::S(ss[si - 1].as_str())
                }
                _ => {
                    li += 1;
                    Arg::L(ls[li - 1])
                }
            })
            .collect();
        format::format(dst, fmt, &vals);
        Ok(())
    }

    pub(crate) fn ev_l(&mut self, p: &Program, cx: &Cx<'_>, e: &Ex) -> R<i64> {
        Ok(match e {
            Ex::Num(n) => *n,
            Ex::Var(v) => self.get_l(*v),
            Ex::Index { arr, keys } => {
                let k = self.key(p, cx, keys)?;
                match &self.arrays[*arr as usize] {
                    ArrayData::L(t) => t.get(&k).copied().unwrap_or(0),
                    _ => 0,
                }
            }
            Ex::HistBucket {
                agg,
                spec,
                idx,
                tok,
            } => {
                let i = self.ev_l(p, cx, idx)?;
                let n = spec.buckets() as i64;
                match self.agg_get(p, cx, agg)? {
                    None => return fail("aggregate element not found", *tok),
                    Some(_) if i < 0 || i >= n => {
                        return fail("histogram index out of range", *tok)
                    }
                    Some((st, _, _)) => st.hist.get(i as usize).copied().unwrap_or(0),
                }
            }
            Ex::InSlice { arr, keys } => {
                let want = self.slice_want(p, cx, keys)?;
                i64::from(!self.slice_matches(*arr, &want).is_empty())
            }
            Ex::In { arr, keys } => {
                let k = self.key(p, cx, keys)?;
                let present = match &self.arrays[*arr as usize] {
                    ArrayData::L(t) => t.contains(&k),
                    ArrayData::S(t) => t.contains(&k),
                    ArrayData::St(t) => t.contains(&k),
                };
                i64::from(present)
            }
            Ex::Capture {
                cap,
                tok,
                fault,
                fallback,
            } => self.cap_l(p, cx, *cap, *tok, *fault, fallback)?,
            Ex::UStack { f, cap, arg, tok } => {
                let s = self.ustack(p, cx, *f, *cap, arg, *tok)?;
                s.trim().parse().unwrap_or(0)
            }
            Ex::Defined(cap) => i64::from(
                cx.bind
                    .and_then(|b| b.caps.get(*cap as usize))
                    .is_some_and(|d| d.is_some()),
            ),
            Ex::Call { func, args, tok } => {
                self.call(p, cx, *func, args, *tok)?;
                self.ret_l
            }
            Ex::Builtin { f, args, tok } => return self.builtin_l(p, cx, *f, args, *tok),
            Ex::Printf { fmt, args, .. } => {
                let mut buf = std::mem::take(&mut self.out);
                let r = self.printf(p, cx, fmt, args, &mut buf);
                self.out = buf;
                r?;
                0
            }
            Ex::Print { kind, args, .. } => {
                let mut buf = std::mem::take(&mut self.out);
                let r = self.print_args(p, cx, *kind, args, &mut buf);
                self.out = buf;
                r?;
                0
            }
            Ex::PrintHist { agg, spec, tok } => {
                let mut text = String::new();
                let layout = self.limits.hist;
                match self.agg_get(p, cx, agg)? {
                    Some((s, _, _)) if s.count > 0 => print_histogram(&mut text, spec, s, layout),
                    _ => return fail("empty aggregate", *tok),
                }
                self.out.extend_from_slice(text.as_bytes());
                0
            }
            Ex::Stat { f, agg, tok } => self.stat_val(p, cx, *f, agg, *tok)?,
            Ex::Neg(x) => self.ev_l(p, cx, x)?.wrapping_neg(),
            Ex::Not(x) => i64::from(self.ev_l(p, cx, x)? == 0),
            Ex::BitNot(x) => !self.ev_l(p, cx, x)?,
            Ex::Bin { op, l, r, tok } => {
                let a = self.ev_l(p, cx, l)?;
                let b = self.ev_l(p, cx, r)?;
                return long_op(*op, a, b, *tok);
            }
            Ex::LAnd(a, b) => i64::from(self.ev_l(p, cx, a)? != 0 && self.ev_l(p, cx, b)? != 0),
            Ex::LOr(a, b) => i64::from(self.ev_l(p, cx, a)? != 0 || self.ev_l(p, cx, b)? != 0),
            Ex::CmpL(c, a, b) => {
                let x = self.ev_l(p, cx, a)?;
                let y = self.ev_l(p, cx, b)?;
                i64::from(cmp_holds(*c, x, y))
            }
            Ex::CmpS(c, a, b) => {
                let x = self.ev_s(p, cx, a)?;
                let y = self.ev_s(p, cx, b)?;
                i64::from(cmp_holds(*c, x.as_bytes(), y.as_bytes()))
            }
            Ex::Match { re, s, negate } => {
                let s = self.ev_s(p, cx, s)?;
                let r = &p.regexes[*re as usize];
                let m = match r.captures(&s) {
                    Some(c) => {
                        self.last_match = c
                            .iter()
                            .map(|m| m.map(|m| m.as_str().to_string()))
                            .collect();
                        true
                    }
                    None => false,
                };
                i64::from(m != *negate)
            }
            Ex::Cond(c, a, b) => {
                if self.ev_l(p, cx, c)? != 0 {
                    self.ev_l(p, cx, a)?
                } else {
                    self.ev_l(p, cx, b)?
                }
            }
            Ex::Assign {
                lv,
                ty,
                op,
                concat,
                val,
                tok,
            } => {
                if *ty == Ty::Str || *concat {
                    self.assign_s(p, cx, lv, *concat, val, *tok, false)?;
                    return Ok(0);
                }
                let v = self.ev_l(p, cx, val)?;
                match lv {
                    LVal::Var(vr) => {
                        let nv = match op {
                            None => v,
                            Some(o) => long_op(*o, self.get_l(*vr), v, *tok)?,
                        };
                        self.set_l(*vr, nv);
                        nv
                    }
                    LVal::Elem { arr, keys } => {
                        let k = self.key(p, cx, keys)?;
                        let slot = self.elem_l(p, *arr, k, *tok)?;
                        let nv = match op {
                            None => v,
                            Some(o) => long_op(*o, *slot, v, *tok)?,
                        };
                        *slot = nv;
                        nv
                    }
                }
            }
            Ex::IncDec {
                lv,
                delta,
                prefix,
                tok,
            } => {
                let old = match lv {
                    LVal::Var(vr) => {
                        let old = self.get_l(*vr);
                        self.set_l(*vr, old.wrapping_add(*delta));
                        old
                    }
                    LVal::Elem { arr, keys } => {
                        let k = self.key(p, cx, keys)?;
                        let slot = self.elem_l(p, *arr, k, *tok)?;
                        let old = *slot;
                        *slot = old.wrapping_add(*delta);
                        old
                    }
                };
                if *prefix {
                    old.wrapping_add(*delta)
                } else {
                    old
                }
            }
            Ex::AggAdd { agg, val, tok } => {
                let v = self.ev_l(p, cx, val)?;
                let (s, spec, shift) = self.agg_mut(p, cx, agg, *tok)?;
                s.add(v, &spec, shift);
                v
            }
            Ex::Fail { msg, tok } => return fail(msg.clone(), *tok),
            Ex::Str(_) | Ex::Concat(..) => 0,
        })
    }

    /// String assignment; returns the stored value when `want` (an assignment used as
    /// a value), without evaluating anything twice.
    fn assign_s(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        lv: &LVal,
        concat: bool,
        val: &Ex,
        tok: Tok,
        want: bool,
    ) -> R<Option<String>> {
        let v = self.ev_s(p, cx, val)?;
        let m = self.maxstr();
        match lv {
            LVal::Var(vr) => {
                let nv = if concat {
                    let mut s = self.get_s(*vr).to_string();
                    s.push_str(&v);
                    s
                } else {
                    v
                };
                let nv = self.trunc(nv);
                let ret = want.then(|| nv.clone());
                self.set_s(*vr, nv);
                Ok(ret)
            }
            LVal::Elem { arr, keys } => {
                let k = self.key(p, cx, keys)?;
                let max = p.arrays[*arr as usize].max;
                let ArrayData::S(t) = &mut self.arrays[*arr as usize] else {
                    return fail("internal error: array type", tok);
                };
                let slot = match t.get_mut(&k) {
                    Some(slot) => {
                        if concat {
                            slot.push_str(&v);
                        } else {
                            *slot = v;
                        }
                        slot
                    }
                    None => {
                        if t.len() >= max {
                            return overflow(p, *arr, tok);
                        }
                        t.insert_new(k, v)
                    }
                };
                let n = format::truncate(slot, m).len();
                slot.truncate(n);
                Ok(want.then(|| slot.clone()))
            }
        }
    }

    pub(crate) fn ev_s(&mut self, p: &Program, cx: &Cx<'_>, e: &Ex) -> R<String> {
        Ok(match e {
            Ex::Str(s) => s.clone(),
            Ex::Var(v) => self.get_s(*v).to_string(),
            Ex::Index { arr, keys } => {
                let k = self.key(p, cx, keys)?;
                match &self.arrays[*arr as usize] {
                    ArrayData::S(t) => t.get(&k).cloned().unwrap_or_default(),
                    _ => String::new(),
                }
            }
            Ex::Capture {
                cap,
                tok,
                fault,
                fallback,
            } => self.cap_s(p, cx, *cap, *tok, *fault, fallback)?,
            Ex::Call { func, args, tok } => {
                self.call(p, cx, *func, args, *tok)?;
                std::mem::take(&mut self.ret_s)
            }
            Ex::Builtin { f, args, tok } => return self.builtin_s(p, cx, *f, args, *tok),
            Ex::Printf { fmt, args, .. } => {
                let mut buf = Vec::new();
                self.printf(p, cx, fmt, args, &mut buf)?;
                self.trunc(String::from_utf8_lossy(&buf).into_owned())
            }
            Ex::Print { kind, args, .. } => {
                let mut buf = Vec::new();
                self.print_args(p, cx, *kind, args, &mut buf)?;
                self.trunc(String::from_utf8_lossy(&buf).into_owned())
            }
            Ex::Concat(a, b) => {
                let mut x = self.ev_s(p, cx, a)?;
                let y = self.ev_s(p, cx, b)?;
                x.push_str(&y);
                self.trunc(x)
            }
            Ex::Cond(c, a, b) => {
                if self.ev_l(p, cx, c)? != 0 {
                    self.ev_s(p, cx, a)?
                } else {
                    self.ev_s(p, cx, b)?
                }
            }
            Ex::Assign {
                lv,
                concat,
                val,
                tok,
                ..
            } => self
                .assign_s(p, cx, lv, *concat, val, *tok, true)?
                .unwrap_or_default(),
            Ex::Fail { msg, tok } => return fail(msg.clone(), *tok),
            Ex::UStack { f, cap, arg, tok } => {
                let s = self.ustack(p, cx, *f, *cap, arg, *tok)?;
                self.trunc(s)
            }
            other => self.ev_l(p, cx, other)?.to_string(),
        })
    }

    /// The pid whose modules symbolise: the record's, else the target (0 when none).
    fn stack_pid(&self, cx: &Cx<'_>) -> u32 {
        cx.rec.map_or(self.me.target, |r| r.pid)
    }

    /// `ubacktrace()` and the other functions of the stack captured at the probe.
    fn ustack(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        f: crate::ustack::UFn,
        cap: Option<u32>,
        arg: &Option<Box<Ex>>,
        _tok: Tok,
    ) -> R<String> {
        let n = match arg {
            Some(a) => self.ev_l(p, cx, a)?,
            None => -1,
        };
        let d = cap.and_then(|c| cx.bind?.caps.get(c as usize)?.as_ref());
        let frames = match (d, cx.rec) {
            (Some(d), Some(rec)) => match crate::ustack::decode(rec, d) {
                Some((regs, base, bytes)) => match &self.stacks {
                    Some(st) => st.unwind(rec.pid, &regs, base, &bytes, self.limits.maxbacktrace),
                    // Without an unwinder only the probed address is known.
                    None => vec![crate::ustack::StackFrame {
                        pc: regs[16],
                        ..Default::default()
                    }],
                },
                None => Vec::new(),
            },
            // No user context (begin, end, timer probes): an empty backtrace.
            _ => Vec::new(),
        };
        Ok(crate::ustack::render(f, &frames, n, &mut self.out))
    }

    /// `usymname(addr)`, `print_ustack(stk)`, `sprint_ufolded(stk)`...
    fn ustack_builtin(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        f: crate::ustack::UFn,
        args: &[(Ex, Ty)],
        tok: Tok,
    ) -> R<String> {
        use crate::ustack::{self as u, UArg, UFn};
        let pid = self.stack_pid(cx);
        if f.arg() == UArg::Str {
            let stk = self.arg_s(p, cx, args, 0)?;
            let st = self.stacks.as_deref();
            let frames = u::symbolize_all(st, pid, &u::parse_addrs(&stk));
            return Ok(u::render(f, &frames, -1, &mut self.out));
        }
        let addr = self.arg_l(p, cx, args, 0)? as u64;
        let fr = self.stacks.as_deref().and_then(|s| s.symbolize(pid, addr));
        Ok(match f {
            UFn::Umodname => match fr {
                Some(fr) if !fr.module.is_empty() => fr.module,
                _ => {
                    return fail(
                        format!("umodname: no module known for address {}", u::hex(addr)),
                        tok,
                    )
                }
            },
            UFn::Usymline => fr
                .and_then(|fr| fr.file_line)
                .map_or_else(|| u::hex(addr), |(_, l)| l.to_string()),
            _ => u::one(f, fr.as_ref(), addr),
        })
    }

    fn builtin_l(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        f: Builtin,
        args: &[(Ex, Ty)],
        tok: Tok,
    ) -> R<i64> {
        use Builtin as B;
        let rec = cx.rec;
        Ok(match f {
            B::Ustack(u) => {
                let s = self.ustack_builtin(p, cx, u, args, tok)?;
                s.parse().unwrap_or(0)
            }
            B::Pid => rec.map_or(self.me.pid, |r| r.pid) as i64,
            B::Tid => rec.map_or(self.me.pid, |r| r.tid) as i64,
            B::Ppid => rec.map_or(self.me.ppid, |r| r.ppid) as i64,
            B::Uaddr => rec.map_or(0, |r| r.ip) as i64,
            B::Cpu => rec.map_or(0, |r| r.cpu) as i64,
            B::Time(div) => (rec.map_or_else(now_ns, |r| r.time_ns) / div) as i64,
            B::Target => self.me.target as i64,
            B::UserMode => i64::from(rec.is_some()),
            B::IsMyproc => i64::from(rec.map_or(self.me.pid, |r| r.pid) == self.me.target),
            B::StpPid => i64::from(std::process::id()),
            B::TzGmtoff => self.tz.0,
            B::Strpos => {
                let a = self.arg_s(p, cx, args, 0)?;
                let b = self.arg_s(p, cx, args, 1)?;
                a.find(b.as_str()).map_or(-1, |i| i as i64)
            }
            // tapset/logging.stp: error("Assertion failed") or error(msg).
            B::Assert => {
                if self.arg_l(p, cx, args, 0)? == 0 {
                    let msg = if args.len() > 1 {
                        self.arg_s(p, cx, args, 1)?
                    } else {
                        "Assertion failed".to_string()
                    };
                    return fail(msg, tok);
                }
                0
            }
            B::System => {
                let cmd = self.arg_s(p, cx, args, 0)?;
                self.system_cmds.push(cmd);
                0
            }
            B::RemoteId => -1,
            B::Ctx(c) if !crate::tapfns::returns_string(c) => {
                return self.ctx_l(p, cx, c, args, tok)
            }
            B::PrintChar => {
                let c = self.arg_l(p, cx, args, 0)?;
                self.out.push(c as u8);
                0
            }
            B::IndentDepth(thread) => {
                // stap's _generic_indent_depth: the same counters as *indent().
                let delta = self.arg_l(p, cx, args, 0)?;
                let idx = if thread {
                    i64::from(cx.rec.map_or(self.me.pid, |r| r.tid))
                } else {
                    -1
                };
                let ts = (cx.rec.map_or_else(now_ns, |r| r.time_ns) / 1000) as i64;
                let e = self.indent.entry(idx).or_insert((0, ts));
                let x = e.0.wrapping_add(delta.max(0));
                e.0 = e.0.wrapping_add(delta);
                if x > 0 {
                    x - 1
                } else {
                    0
                }
            }
            B::ErrnoP => {
                let e = self.arg_l(p, cx, args, 0)?;
                if errno_name(e).is_some() {
                    e.unsigned_abs() as i64
                } else {
                    0
                }
            }
            B::Ansi(a) => {
                let mut v = [0i64; 3];
                for (i, slot) in v.iter_mut().enumerate().take(args.len()) {
                    *slot = self.arg_l(p, cx, args, i)?;
                }
                let text = match a {
                    AnsiFn::ClearScreen => "\x1b[1;1H\x1b[J".to_string(),
                    AnsiFn::SetColor => format!("\x1b[{}m", v[0]),
                    AnsiFn::SetColor2 => format!("\x1b[{};{}m", v[1], v[0]),
                    AnsiFn::SetColor3 => {
                        let attr = if v[2] != 0 {
                            format!(";{}m", v[2])
                        } else {
                            "m".into()
                        };
                        format!("\x1b[{};{}{attr}", v[1], v[0])
                    }
                    AnsiFn::ResetColor => "\x1b[0;0m".to_string(),
                    AnsiFn::NewLine => "\n".to_string(),
                    AnsiFn::CursorMove => format!("\x1b[{};{}H", v[1], v[0]),
                    AnsiFn::CursorHide => "\x1b[>5I".to_string(),
                    AnsiFn::CursorSave => "\x1b[s".to_string(),
                    AnsiFn::CursorRestore => "\x1b[u".to_string(),
                    AnsiFn::CursorShow => "\x1b[>5h".to_string(),
                };
                self.out.extend_from_slice(text.as_bytes());
                0
            }
            B::Exit => {
                self.exit_requested = true;
                0
            }
            B::Abort => {
                self.exit_requested = true;
                self.aborted = true;
                return Err(Ctl::Next);
            }
            B::IsReturn => i64::from(cx.bind.is_some_and(|b| b.pp.ends_with(".return"))),
            B::Error => {
                let m = self.arg_s(p, cx, args, 0)?;
                return fail(m, tok);
            }
            B::Warn => {
                let m = self.arg_s(p, cx, args, 0)?;
                self.warn(&m);
                0
            }
            B::Log => {
                let m = self.arg_s(p, cx, args, 0)?;
                self.out.extend_from_slice(m.as_bytes());
                self.out.push(b'\n');
                0
            }
            B::Strlen => self.arg_s(p, cx, args, 0)?.len() as i64,
            B::Isinstr => {
                let a = self.arg_s(p, cx, args, 0)?;
                let b = self.arg_s(p, cx, args, 1)?;
                i64::from(a.contains(b.as_str()))
            }
            B::Strtol => {
                let s = self.arg_s(p, cx, args, 0)?;
                let base = self.arg_l(p, cx, args, 1)?;
                if base != 0 && !(2..=36).contains(&base) {
                    return fail(format!("invalid base {base} for strtol"), tok);
                }
                strtol(&s, base)
            }
            B::Stringat => {
                let s = self.arg_s(p, cx, args, 0)?;
                let i = self.arg_l(p, cx, args, 1)?;
                match usize::try_from(i).ok().and_then(|i| s.as_bytes().get(i)) {
                    Some(&c) => c as i8 as i64,
                    None => return fail("Position out of bounds", tok),
                }
            }
            B::Isdigit => {
                let s = self.arg_s(p, cx, args, 0)?;
                i64::from(s.as_bytes().first().is_some_and(|c| c.is_ascii_digit()))
            }
            B::Abs => self.arg_l(p, cx, args, 0)?.wrapping_abs(),
            B::Randint => {
                let n = self.arg_l(p, cx, args, 0)?;
                if n <= 0 || n > u32::MAX as i64 {
                    return fail("range must be in [1, 4294967295]", tok);
                }
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                (self.rng % n as u64) as i64
            }
            _ => {
                let s = self.builtin_s(p, cx, f, args, tok)?;
                s.parse().unwrap_or(0)
            }
        })
    }

    fn arg_s(&mut self, p: &Program, cx: &Cx<'_>, args: &[(Ex, Ty)], i: usize) -> R<String> {
        match args.get(i) {
            Some((e, _)) => self.ev_s(p, cx, e),
            None => Ok(String::new()),
        }
    }

    fn arg_l(&mut self, p: &Program, cx: &Cx<'_>, args: &[(Ex, Ty)], i: usize) -> R<i64> {
        match args.get(i) {
            Some((e, _)) => self.ev_l(p, cx, e),
            None => Ok(0),
        }
    }

    fn builtin_s(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        f: Builtin,
        args: &[(Ex, Ty)],
        tok: Tok,
    ) -> R<String> {
        use Builtin as B;
        Ok(match f {
            B::Ustack(u) => {
                let s = self.ustack_builtin(p, cx, u, args, tok)?;
                self.trunc(s)
            }
            B::Execname => cx
                .rec
                .map_or_else(|| self.me.comm.clone(), |r| r.comm.clone()),
            B::Probefunc => cx.bind.map(|b| b.function.clone()).unwrap_or_default(),
            B::Pp => cx.bind.map_or_else(|| cx.pp.to_string(), |b| b.pp.clone()),
            B::Pn => cx.bind.map_or_else(|| cx.pp.to_string(), |b| b.pn.clone()),
            B::RemoteUri => String::new(),
            B::Ctx(c) if crate::tapfns::returns_string(c) => {
                let s = self.ctx_s(p, cx, c, args, tok)?;
                self.trunc(s)
            }
            B::ErrnoStr => {
                let e = self.arg_l(p, cx, args, 0)?;
                errno_name(e).unwrap_or("").to_string()
            }
            B::ReturnStr => {
                let format = self.arg_l(p, cx, args, 0)?;
                let ret = self.arg_l(p, cx, args, 1)?;
                match errno_name(ret) {
                    Some(name) if ret < 0 => format!("{ret} ({name})"),
                    _ if format == 2 => format!("{ret:#x}"),
                    _ if format == 3 => {
                        let mut b = Vec::new();
                        let pieces = [format::Piece::Spec {
                            flags: format::SPECIAL,
                            width: format::Num::None,
                            prec: format::Num::None,
                            conv: format::Conv::Oct,
                        }];
                        format::format(&mut b, &pieces, &[format::Arg::L(ret)]);
                        String::from_utf8(b).unwrap_or_default()
                    }
                    _ => ret.to_string(),
                }
            }
            B::Substr => {
                let s = self.arg_s(p, cx, args, 0)?;
                let start = self.arg_l(p, cx, args, 1)?;
                let len = self.arg_l(p, cx, args, 2)?;
                let b = s.as_bytes();
                if start < 0 || len <= 0 || start as usize >= b.len() {
                    String::new()
                } else {
                    let st = start as usize;
                    let en = st.saturating_add(len as usize).min(b.len());
                    String::from_utf8_lossy(&b[st..en]).into_owned()
                }
            }
            B::StrReplace => {
                let s = self.arg_s(p, cx, args, 0)?;
                let a = self.arg_s(p, cx, args, 1)?;
                let b = self.arg_s(p, cx, args, 2)?;
                if a.is_empty() {
                    s
                } else {
                    self.trunc(s.replace(&a, &b))
                }
            }
            B::Tokenize => {
                let s = self.arg_s(p, cx, args, 0)?;
                let d = self.arg_s(p, cx, args, 1)?;
                if !s.is_empty() {
                    self.tokenize_rest = Some(s);
                }
                let mut result = String::new();
                while let Some(rest) = self.tokenize_rest.take() {
                    match rest.find(|c: char| d.contains(c)) {
                        Some(i) => {
                            let c = rest[i..].chars().next().map_or(1, |c| c.len_utf8());
                            let tok = rest[..i].to_string();
                            self.tokenize_rest = Some(rest[i + c..].to_string());
                            if !tok.is_empty() {
                                result = tok;
                                break;
                            }
                        }
                        None => {
                            result = rest;
                            break;
                        }
                    }
                }
                result
            }
            B::TextStr => {
                let s = self.arg_s(p, cx, args, 0)?;
                format::text_str(&s, 0, 0, false, self.limits.maxstringlen)
            }
            B::TextStrn => {
                let s = self.arg_s(p, cx, args, 0)?;
                let n = self.arg_l(p, cx, args, 1)?;
                let q = self.arg_l(p, cx, args, 2)?;
                let max = self.limits.maxstringlen;
                format::text_str(&s, 0, n.clamp(0, max as i64), q != 0, max)
            }
            B::StringQuoted => {
                let s = self.arg_s(p, cx, args, 0)?;
                format::text_str(&s, 0, 0, true, self.limits.maxstringlen)
            }
            B::Toupper => self.arg_s(p, cx, args, 0)?.to_ascii_uppercase(),
            B::Tolower => self.arg_s(p, cx, args, 0)?.to_ascii_lowercase(),
            B::Matched => {
                let n = self.arg_l(p, cx, args, 0)?;
                match usize::try_from(n).ok().and_then(|n| self.last_match.get(n)) {
                    Some(Some(s)) => s.clone(),
                    _ => String::new(),
                }
            }
            B::LongToString => self.arg_l(p, cx, args, 0)?.to_string(),
            B::Ctime => ctime_checked(self.arg_l(p, cx, args, 0)?, tok)?,
            // tapset/tzinfo.stp: ctime(epochsecs - tz_gmtoff()) . " " . tz_name()
            B::TzCtime => {
                let secs = self.arg_l(p, cx, args, 0)?;
                let local = ctime_checked(secs.wrapping_sub(self.tz.0), tok)?;
                format!("{local} {}", self.tz.1)
            }
            B::TzName => self.tz.1.clone(),
            B::MatchedStr => match self.last_match.first() {
                Some(Some(s)) => s.clone(),
                _ => String::new(),
            },
            // tapset/linux/task_time.stp: sprintf("%dm%d.%.Nds", mins, secs, frac).
            B::DurationString(per_sec) => {
                let v = self.arg_l(p, cx, args, 0)?;
                let frac = v.wrapping_rem(per_sec);
                let secs = v.wrapping_div(per_sec);
                let digits = per_sec.ilog10() as usize;
                let frac = if frac < 0 {
                    format!("-{:0digits$}", frac.unsigned_abs())
                } else {
                    format!("{frac:0digits$}")
                };
                format!("{}m{}.{frac}s", secs / 60, secs % 60)
            }
            B::ThreadIndent | B::Indent => {
                let delta = self.arg_l(p, cx, args, 0)?;
                let tid = cx.rec.map_or(self.me.pid, |r| r.tid);
                let (idx, desc) = if f == B::ThreadIndent {
                    let comm = cx.rec.map_or(self.me.comm.as_str(), |r| r.comm.as_str());
                    (i64::from(tid), format!("{comm}({tid})"))
                } else {
                    (-1, String::new())
                };
                let ts = (cx.rec.map_or_else(now_ns, |r| r.time_ns) / 1000) as i64;
                // stap's tapset: pre-increment for a positive delta, post-decrement for a
                // negative one, the time relative to the first call at depth 0.
                let e = self.indent.entry(idx).or_insert((0, ts));
                if e.0 == 0 {
                    e.1 = ts;
                }
                // stap's longs wrap; the padding is bounded by the string length limit,
                // as stap's `%-*s` is by its print buffer.
                let x = e.0.wrapping_add(delta.max(0));
                e.0 = e.0.wrapping_add(delta);
                let width = if x > 0 {
                    ((x - 1) as u64).min(self.limits.maxstringlen as u64) as usize
                } else {
                    0
                };
                let s = format!("{:6} {desc}:{:width$}", ts.wrapping_sub(e.1), "");
                self.trunc(s)
            }
            B::Ascii => {
                let v = self.arg_l(p, cx, args, 0)?;
                (v as u8 as char).to_string()
            }
            _ => self.builtin_l(p, cx, f, args, tok)?.to_string(),
        })
    }

    pub(crate) fn exec(&mut self, p: &Program, cx: &Cx<'_>, s: &St) -> R<()> {
        match s {
            St::Expr(e, t, tok) => {
                self.tick(*tok)?;
                match t {
                    Ty::Str => {
                        self.ev_s(p, cx, e)?;
                    }
                    _ => {
                        self.ev_l(p, cx, e)?;
                    }
                }
            }
            St::Block(v) => {
                for s in v {
                    self.exec(p, cx, s)?;
                }
            }
            St::If(c, t, e, tok) => {
                self.tick(*tok)?;
                if self.ev_l(p, cx, c)? != 0 {
                    self.exec(p, cx, t)?;
                } else if let Some(e) = e {
                    self.exec(p, cx, e)?;
                }
            }
            St::While(c, body, tok) => loop {
                self.tick(*tok)?;
                if self.ev_l(p, cx, c)? == 0 {
                    break;
                }
                match self.exec(p, cx, body) {
                    Ok(()) | Err(Ctl::Continue) => {}
                    Err(Ctl::Break) => break,
                    Err(e) => return Err(e),
                }
            },
            St::For {
                init,
                cond,
                step,
                body,
                tok,
            } => {
                self.tick(*tok)?;
                if let Some((e, t)) = init {
                    self.ev_any(p, cx, e, *t)?;
                }
                loop {
                    if let Some(c) = cond {
                        if self.ev_l(p, cx, c)? == 0 {
                            break;
                        }
                    }
                    match self.exec(p, cx, body) {
                        Ok(()) | Err(Ctl::Continue) => {}
                        Err(Ctl::Break) => break,
                        Err(e) => return Err(e),
                    }
                    if let Some((e, t)) = step {
                        self.ev_any(p, cx, e, *t)?;
                    }
                    self.tick(*tok)?;
                }
            }
            St::Foreach {
                arr,
                keys,
                val,
                slice,
                sort,
                limit,
                body,
                tok,
            } => {
                self.tick(*tok)?;
                let mut want = Vec::with_capacity(slice.len());
                for part in slice {
                    want.push(match part {
                        Some((e, Ty::Str)) => Some(KeyPart::S(self.ev_s(p, cx, e)?)),
                        Some((e, _)) => Some(KeyPart::L(self.ev_l(p, cx, e)?)),
                        None => None,
                    });
                }
                let limit = match limit {
                    Some(l) => Some(self.ev_l(p, cx, l)?),
                    None => None,
                };
                self.foreach(p, cx, *arr, keys, val, &want, *sort, limit, body, *tok)?;
            }
            St::ForeachHist {
                agg,
                spec,
                key,
                val,
                sort,
                limit,
                body,
                tok,
            } => {
                self.tick(*tok)?;
                let limit = match limit {
                    Some(l) => Some(self.ev_l(p, cx, l)?),
                    None => None,
                };
                // Every bucket, as stap's translator loops over them.
                let n = spec.buckets();
                let mut items: Vec<(i64, i64)> = match self.agg_get(p, cx, agg)? {
                    Some((st, _, _)) => (0..n)
                        .map(|i| (i as i64, st.hist.get(i).copied().unwrap_or(0)))
                        .collect(),
                    None => return fail("aggregate element not found", *tok),
                };
                if let Some(s) = sort {
                    items.sort_by(|a, b| {
                        let o = if s.key.is_some() {
                            a.0.cmp(&b.0)
                        } else {
                            a.1.cmp(&b.1)
                        };
                        if s.desc {
                            o.reverse()
                        } else {
                            o
                        }
                    });
                }
                let take = limit_count(limit, items.len());
                for (b, c) in items.into_iter().take(take) {
                    self.tick(*tok)?;
                    self.set_l(*key, b);
                    if let Some(v) = val {
                        self.set_l(*v, c);
                    }
                    match self.exec(p, cx, body) {
                        Ok(()) | Err(Ctl::Continue) => {}
                        Err(Ctl::Break) => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            St::Break(tok) => {
                self.tick(*tok)?;
                return Err(Ctl::Break);
            }
            St::Continue(tok) => {
                self.tick(*tok)?;
                return Err(Ctl::Continue);
            }
            St::Next(tok) => {
                self.tick(*tok)?;
                return Err(Ctl::Next);
            }
            St::Return(e, tok) => {
                self.tick(*tok)?;
                match e {
                    Some((e, Ty::Str)) => {
                        let v = self.ev_s(p, cx, e)?;
                        self.ret_s = v;
                    }
                    Some((e, _)) => {
                        let v = self.ev_l(p, cx, e)?;
                        self.ret_l = v;
                    }
                    None => {}
                }
                return Err(Ctl::Return);
            }
            St::DelVar(v, t, tok) => {
                self.tick(*tok)?;
                match t {
                    Ty::Long => self.set_l(*v, 0),
                    Ty::Str => self.set_s(*v, String::new()),
                    Ty::Stats => {
                        if let VarRef::Global(i) = v {
                            if let Some(s) = self.gstat.get_mut(*i as usize) {
                                s.clear();
                            }
                        }
                    }
                }
            }
            St::DelElem(arr, keys, tok) => {
                self.tick(*tok)?;
                let k = self.key(p, cx, keys)?;
                match &mut self.arrays[*arr as usize] {
                    ArrayData::L(t) => t.remove(&k),
                    ArrayData::S(t) => t.remove(&k),
                    ArrayData::St(t) => t.remove(&k),
                }
            }
            St::DelSlice(arr, keys, tok) => {
                self.tick(*tok)?;
                let want = self.slice_want(p, cx, keys)?;
                for k in self.slice_matches(*arr, &want) {
                    match &mut self.arrays[*arr as usize] {
                        ArrayData::L(t) => t.remove(&k),
                        ArrayData::S(t) => t.remove(&k),
                        ArrayData::St(t) => t.remove(&k),
                    }
                }
            }
            St::DelArray(arr, tok) => {
                self.tick(*tok)?;
                match &mut self.arrays[*arr as usize] {
                    ArrayData::L(t) => t.clear(),
                    ArrayData::S(t) => t.clear(),
                    ArrayData::St(t) => t.clear(),
                }
            }
            St::Try { body, var, catch } => match self.exec(p, cx, body) {
                Err(Ctl::Err(e)) => {
                    if let Some(v) = var {
                        self.set_s(*v, e.msg);
                    }
                    self.exec(p, cx, catch)?;
                }
                other => other?,
            },
            St::Nop => {}
        }
        Ok(())
    }

    /// The key values a slice asks for (None: `*`).
    fn slice_want(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        keys: &[Option<(Ex, Ty)>],
    ) -> R<Vec<Option<KeyPart>>> {
        let mut want = Vec::with_capacity(keys.len());
        for k in keys {
            want.push(match k {
                Some((e, Ty::Str)) => Some(KeyPart::S(self.ev_s(p, cx, e)?)),
                Some((e, _)) => Some(KeyPart::L(self.ev_l(p, cx, e)?)),
                None => None,
            });
        }
        Ok(want)
    }

    /// The keys of `arr` that a slice matches.
    fn slice_matches(&self, arr: u32, want: &[Option<KeyPart>]) -> Vec<Key> {
        let fits = |k: &Key| {
            want.iter()
                .enumerate()
                .all(|(i, w)| w.as_ref().is_none_or(|w| *w == k.part(i)))
        };
        self.arrays[arr as usize]
            .ordered_keys()
            .into_iter()
            .filter(|k| fits(k))
            .cloned()
            .collect()
    }

    fn ev_any(&mut self, p: &Program, cx: &Cx<'_>, e: &Ex, t: Ty) -> R<()> {
        match t {
            Ty::Str => {
                self.ev_s(p, cx, e)?;
            }
            _ => {
                self.ev_l(p, cx, e)?;
            }
        }
        Ok(())
    }

    fn foreach(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        arr: u32,
        keys: &[(VarRef, Ty)],
        val: &Option<(VarRef, Ty)>,
        slice: &[Option<KeyPart>],
        sort: Option<Sort>,
        limit: Option<i64>,
        body: &St,
        tok: Tok,
    ) -> R<()> {
        let agg = sort.map_or(StatFn::Count, |s| s.agg);
        // Snapshot the entries: stap forbids modifying the array inside its foreach.
        enum V {
            L(i64),
            S(String),
            C(i64),
        }
        let mut items: Vec<(Key, V)> = match &self.arrays[arr as usize] {
            ArrayData::L(t) => t
                .ordered()
                .into_iter()
                .map(|(k, v)| (k.clone(), V::L(*v)))
                .collect(),
            ArrayData::S(t) => t
                .ordered()
                .into_iter()
                .map(|(k, v)| (k.clone(), V::S(v.clone())))
                .collect(),
            ArrayData::St(t) => t
                .ordered()
                .into_iter()
                .map(|(k, v)| {
                    // Sorting by value compares this extractor (stap: @count unless
                    // the foreach names another).
                    let x = match agg {
                        StatFn::Sum => v.sum,
                        StatFn::Min => v.min,
                        StatFn::Max => v.max,
                        StatFn::Avg => v.avg(),
                        _ => v.count,
                    };
                    (k.clone(), V::C(x))
                })
                .collect(),
        };
        if !slice.is_empty() {
            items.retain(|(k, _)| {
                slice
                    .iter()
                    .enumerate()
                    .all(|(i, w)| w.as_ref().is_none_or(|w| *w == k.part(i)))
            });
        }
        if let Some(s) = sort {
            // Stable sort over insertion order, as stap's merge sort of its map list.
            items.sort_by(|a, b| {
                let o = match s.key {
                    Some(i) => a.0.cmp_part(&b.0, i),
                    None => match (&a.1, &b.1) {
                        (V::L(x), V::L(y)) | (V::C(x), V::C(y)) => x.cmp(y),
                        (V::S(x), V::S(y)) => x.as_bytes().cmp(y.as_bytes()),
                        _ => std::cmp::Ordering::Equal,
                    },
                };
                if s.desc {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        let n = limit_count(limit, items.len());
        for (k, v) in items.into_iter().take(n) {
            self.tick(tok)?;
            for (i, (vr, t)) in keys.iter().enumerate() {
                match (k.part(i), t) {
                    (KeyPart::L(x), _) => self.set_l(*vr, x),
                    (KeyPart::S(x), _) => self.set_s(*vr, x),
                }
            }
            if let Some((vr, _)) = val {
                match v {
                    V::L(x) | V::C(x) => self.set_l(*vr, x),
                    V::S(x) => self.set_s(*vr, x),
                }
            }
            match self.exec(p, cx, body) {
                Ok(()) | Err(Ctl::Continue) => {}
                Err(Ctl::Break) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn overflow<T>(p: &Program, arr: u32, tok: Tok) -> R<T> {
    let m = &p.arrays[arr as usize];
    if m.declared {
        fail(format!("Array overflow, check size limit ({})", m.max), tok)
    } else {
        fail("Array overflow, check MAXMAPENTRIES", tok)
    }
}

fn long_op(op: LOp, a: i64, b: i64, tok: Tok) -> R<i64> {
    Ok(match op {
        LOp::Add => a.wrapping_add(b),
        LOp::Sub => a.wrapping_sub(b),
        LOp::Mul => a.wrapping_mul(b),
        LOp::Div => {
            if b == 0 {
                return fail("division by 0", tok);
            }
            a.wrapping_div(b)
        }
        LOp::Mod => {
            if b == 0 {
                return fail("division by 0", tok);
            }
            a.wrapping_rem(b)
        }
        // stap clamps the count to [0, 64]; a count of 64 then wraps as x86 does.
        LOp::Shl => a.wrapping_shl(b.clamp(0, 64) as u32),
        LOp::Shr => a.wrapping_shr(b.clamp(0, 64) as u32),
        LOp::UShr => ((a as u64).wrapping_shr(b.clamp(0, 64) as u32)) as i64,
        LOp::And => a & b,
        LOp::Or => a | b,
        LOp::Xor => a ^ b,
    })
}

/// Linux errno names by number (x86-64 and the generic table agree), as stap's
/// `errno.stp` lists them; the sign of `e` is ignored.
pub(crate) fn errno_name(e: i64) -> Option<&'static str> {
    const NAMES: [&str; 134] = [
        "",
        "EPERM",
        "ENOENT",
        "ESRCH",
        "EINTR",
        "EIO",
        "ENXIO",
        "E2BIG",
        "ENOEXEC",
        "EBADF",
        "ECHILD",
        "EAGAIN",
        "ENOMEM",
        "EACCES",
        "EFAULT",
        "ENOTBLK",
        "EBUSY",
        "EEXIST",
        "EXDEV",
        "ENODEV",
        "ENOTDIR",
        "EISDIR",
        "EINVAL",
        "ENFILE",
        "EMFILE",
        "ENOTTY",
        "ETXTBSY",
        "EFBIG",
        "ENOSPC",
        "ESPIPE",
        "EROFS",
        "EMLINK",
        "EPIPE",
        "EDOM",
        "ERANGE",
        "EDEADLK",
        "ENAMETOOLONG",
        "ENOLCK",
        "ENOSYS",
        "ENOTEMPTY",
        "ELOOP",
        "",
        "ENOMSG",
        "EIDRM",
        "ECHRNG",
        "EL2NSYNC",
        "EL3HLT",
        "EL3RST",
        "ELNRNG",
        "EUNATCH",
        "ENOCSI",
        "EL2HLT",
        "EBADE",
        "EBADR",
        "EXFULL",
        "ENOANO",
        "EBADRQC",
        "EBADSLT",
        "",
        "EBFONT",
        "ENOSTR",
        "ENODATA",
        "ETIME",
        "ENOSR",
        "ENONET",
        "ENOPKG",
        "EREMOTE",
        "ENOLINK",
        "EADV",
        "ESRMNT",
        "ECOMM",
        "EPROTO",
        "EMULTIHOP",
        "EDOTDOT",
        "EBADMSG",
        "EOVERFLOW",
        "ENOTUNIQ",
        "EBADFD",
        "EREMCHG",
        "ELIBACC",
        "ELIBBAD",
        "ELIBSCN",
        "ELIBMAX",
        "ELIBEXEC",
        "EILSEQ",
        "ERESTART",
        "ESTRPIPE",
        "EUSERS",
        "ENOTSOCK",
        "EDESTADDRREQ",
        "EMSGSIZE",
        "EPROTOTYPE",
        "ENOPROTOOPT",
        "EPROTONOSUPPORT",
        "ESOCKTNOSUPPORT",
        "EOPNOTSUPP",
        "EPFNOSUPPORT",
        "EAFNOSUPPORT",
        "EADDRINUSE",
        "EADDRNOTAVAIL",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "ECONNABORTED",
        "ECONNRESET",
        "ENOBUFS",
        "EISCONN",
        "ENOTCONN",
        "ESHUTDOWN",
        "ETOOMANYREFS",
        "ETIMEDOUT",
        "ECONNREFUSED",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "EALREADY",
        "EINPROGRESS",
        "ESTALE",
        "EUCLEAN",
        "ENOTNAM",
        "ENAVAIL",
        "EISNAM",
        "EREMOTEIO",
        "EDQUOT",
        "ENOMEDIUM",
        "EMEDIUMTYPE",
        "ECANCELED",
        "ENOKEY",
        "EKEYEXPIRED",
        "EKEYREVOKED",
        "EKEYREJECTED",
        "EOWNERDEAD",
        "ENOTRECOVERABLE",
        "ERFKILL",
        "EHWPOISON",
    ];
    let i = usize::try_from(e.unsigned_abs()).ok()?;
    NAMES.get(i).copied().filter(|n| !n.is_empty())
}

/// The context functions of [`crate::tapfns`]: ids and memory sizes from `/proc` when
/// the handler runs, stap's pure helpers.
impl State {
    /// The process a handler describes: the record's, or snaptap's own in begin, end
    /// and timer probes. (pid, tid, ppid, execname)
    fn ctx_proc<'a>(&'a self, cx: &'a Cx<'_>) -> (u32, u32, u32, &'a str) {
        match cx.rec {
            Some(r) => (r.pid, r.tid, r.ppid, r.comm.as_str()),
            None => (
                self.me.pid,
                self.me.pid,
                self.me.ppid,
                self.me.comm.as_str(),
            ),
        }
    }

    fn ctx_l(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        c: crate::tapfns::CtxFn,
        args: &[(Ex, Ty)],
        tok: Tok,
    ) -> R<i64> {
        use crate::tapfns::{self as t, CtxFn as C, MemFn};
        let (pid, tid, ppid, comm) = self.ctx_proc(cx);
        let comm = comm.to_string();
        let procs = &mut self.procs;
        let mut status = |key: &str, second: bool| -> Result<i64, String> {
            let text = procs.text(pid, &comm, t::ProcFile::Status)?;
            t::parse_ids(&text, key)
                .map(|(real, eff)| if second { eff } else { real })
                .ok_or_else(|| format!("/proc/{pid}/status has no {key} line"))
        };
        let r: Result<i64, String> = match c {
            C::Uid | C::NsUid => status("Uid:", false),
            C::Euid | C::NsEuid => status("Uid:", true),
            C::Gid | C::NsGid => status("Gid:", false),
            C::Egid | C::NsEgid => status("Gid:", true),
            C::Ngroups => self
                .procs
                .text(pid, &comm, t::ProcFile::Status)
                .and_then(|s| {
                    t::parse_ngroups(&s)
                        .ok_or_else(|| format!("/proc/{pid}/status has no Groups line"))
                }),
            C::Pgrp | C::NsPgrp | C::Sid | C::NsSid => {
                let session = matches!(c, C::Sid | C::NsSid);
                self.procs
                    .text(pid, &comm, t::ProcFile::Stat)
                    .and_then(|text| {
                        t::parse_pgrp_sid(&text)
                            .map(|(g, s)| if session { s } else { g })
                            .ok_or_else(|| format!("/proc/{pid}/stat could not be parsed"))
                    })
            }
            // snaptap reads /proc in its own pid namespace, which is what stap's ns_*
            // report without --target-namespaces.
            C::NsPid => Ok(i64::from(pid)),
            C::NsTid => Ok(i64::from(tid)),
            C::NsPpid => Ok(i64::from(ppid)),
            C::MemPageSize => Ok(t::PAGE_SIZE),
            C::NumOnlineCpus => std::fs::read_to_string("/sys/devices/system/cpu/online")
                .ok()
                .and_then(|l| t::count_cpus(&l))
                .or_else(|| {
                    std::thread::available_parallelism()
                        .ok()
                        .map(|n| n.get() as i64)
                })
                .ok_or_else(|| "cannot count the online CPUs".to_string()),
            C::Mem(m, with_pid) => {
                let target = if with_pid {
                    u32::try_from(self.arg_l(p, cx, args, 0)?).unwrap_or(0)
                } else {
                    pid
                };
                // stap: zero when a pid names no process; the current process
                // existed at the probe, so its absence now is an error, not a zero.
                let sm = match t::read_proc_text(target, "statm") {
                    Ok(s) => t::parse_statm(&s).unwrap_or_default(),
                    Err(e) if !with_pid => return fail(format!("{}(): {e}", t::name_of(c)), tok),
                    Err(_) => t::Statm::default(),
                };
                Ok(match m {
                    MemFn::Size => sm.size,
                    MemFn::Rss => sm.rss,
                    MemFn::Shr => sm.shr,
                    MemFn::Txt => sm.txt,
                    MemFn::Data | MemFn::String => sm.data,
                })
            }
            _ => {
                let s = self.ctx_s(p, cx, c, args, tok)?;
                Ok(s.trim().parse().unwrap_or(0))
            }
        };
        r.or_else(|m| fail(format!("{}(): {m}", t::name_of(c)), tok))
    }

    fn ctx_s(
        &mut self,
        p: &Program,
        cx: &Cx<'_>,
        c: crate::tapfns::CtxFn,
        args: &[(Ex, Ty)],
        tok: Tok,
    ) -> R<String> {
        use crate::tapfns::{self as t, CtxFn as C, MemFn};
        let (pid, _, ppid, comm) = self.ctx_proc(cx);
        let comm = comm.to_string();
        let r: Result<String, String> = match c {
            C::CmdlineStr | C::CmdlineArg | C::CmdlineArgs => {
                let (n, m, delim) = match c {
                    C::CmdlineStr => (0, -1, " ".to_string()),
                    C::CmdlineArg => {
                        let n = self.arg_l(p, cx, args, 0)?;
                        (n, n, String::new())
                    }
                    _ => (
                        self.arg_l(p, cx, args, 0)?,
                        self.arg_l(p, cx, args, 1)?,
                        self.arg_s(p, cx, args, 2)?,
                    ),
                };
                self.procs
                    .cmdline(pid, &comm)
                    .map(|raw| t::cmdline_args(raw, n, m, &delim))
            }
            C::EnvVar => {
                let name = self.arg_s(p, cx, args, 0)?;
                self.procs
                    .environ(pid, &comm)
                    .map(|raw| t::env_var(raw, &name))
            }
            C::Pexecname => t::read_proc_text(ppid, "comm").map(|s| s.trim_end().to_string()),
            C::Pid2execname => {
                let n = u32::try_from(self.arg_l(p, cx, args, 0)?).unwrap_or(0);
                Ok(t::read_proc_text(n, "comm")
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default())
            }
            C::ModuleName => Ok("snaptap".to_string()),
            C::SprintLoadavg => std::fs::read_to_string("/proc/loadavg")
                .map_err(|e| format!("cannot read /proc/loadavg ({e})"))
                .and_then(|s| t::loadavg(&s).ok_or_else(|| "bad /proc/loadavg".to_string())),
            C::BytesToString => Ok(t::bytes_to_string(self.arg_l(p, cx, args, 0)?)),
            C::PagesToString => Ok(t::bytes_to_string(
                self.arg_l(p, cx, args, 0)?.wrapping_mul(t::PAGE_SIZE),
            )),
            C::SignalStr => Ok(t::signal_str(self.arg_l(p, cx, args, 0)?)),
            C::ProbeType => Ok(t::probe_type(cx.bind.map_or(cx.pp, |b| b.pp.as_str())).to_string()),
            C::Mem(MemFn::String, with_pid) => {
                let target = if with_pid {
                    u32::try_from(self.arg_l(p, cx, args, 0)?).unwrap_or(0)
                } else {
                    pid
                };
                let sm = match t::read_proc_text(target, "statm") {
                    Ok(s) => t::parse_statm(&s).unwrap_or_default(),
                    Err(e) if !with_pid => return fail(format!("{}(): {e}", t::name_of(c)), tok),
                    Err(_) => t::Statm::default(),
                };
                Ok(t::mem_string(&sm))
            }
            _ => return Ok(self.ctx_l(p, cx, c, args, tok)?.to_string()),
        };
        r.or_else(|m| fail(format!("{}(): {m}", t::name_of(c)), tok))
    }
}

/// How many of `len` items a `foreach ... limit N` visits (a negative limit: none).
fn limit_count(limit: Option<i64>, len: usize) -> usize {
    match limit {
        Some(l) if l >= 0 => usize::try_from(l).map_or(len, |l| l.min(len)),
        Some(_) => 0,
        None => len,
    }
}
