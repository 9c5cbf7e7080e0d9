//! User stacks in handlers: `ubacktrace()`, `print_ubacktrace()`, `usymname()` and the
//! rest of stap's `ucontext-symbols`/`ucontext-unwind` tapsets, plus snaptap's own
//! `sprint_ufolded()`. Unwinding and symbolising are the driver's business, through
//! [`Stacks`]: this crate only decodes the captured registers and stack pages and
//! writes frames in stap's formats (`_stp_snprint_addr` with the `_STP_SYM_*` flag
//! sets each function uses).

use capture_plan::{Decode, Record};

/// One frame of a user stack, as the driver's unwinder describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackFrame {
    /// The pc: the probed address for the innermost frame, return addresses above.
    pub pc: u64,
    /// The function (or ELF symbol) around the pc, if known.
    pub function: Option<String>,
    /// Bytes from the function's start to the pc.
    pub offset: u64,
    /// The function's size in bytes, if known.
    pub size: Option<u64>,
    /// Path of the module mapping the pc (empty when none does).
    pub module: String,
    /// The pc's offset in its module (pc minus the load bias).
    pub module_offset: u64,
    /// Source file and line, if known.
    pub file_line: Option<(String, u32)>,
}

/// What the runtime asks of the driver about user stacks. `pid` 0 means the target
/// process (begin and end probes have no process of their own).
pub trait Stacks {
    /// Walks the stack of `pid` from the registers at the probe (DWARF numbering, 16
    /// is rip) and the stack bytes copied from `stack_base`: at most `max_frames`
    /// frames, innermost first.
    fn unwind(
        &self,
        pid: u32,
        regs: &[u64; 17],
        stack_base: u64,
        stack: &[u8],
        max_frames: usize,
    ) -> Vec<StackFrame>;
    /// Describes one address of `pid`.
    fn symbolize(&self, pid: u32, addr: u64) -> Option<StackFrame>;
}

/// The user-stack functions the runtime implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UFn {
    Ubacktrace,
    SprintUbacktrace,
    PrintUbacktrace,
    PrintUbacktraceBrief,
    Ucallers,
    PrintUstack,
    SprintUstack,
    SprintUfolded,
    Usymname,
    Usymdata,
    Umodname,
    Usymfile,
    Usymline,
    Usymfileline,
}

/// The argument a function takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UArg {
    None,
    Long,
    Str,
}

impl UFn {
    pub(crate) fn by_name(name: &str) -> Option<UFn> {
        Some(match name {
            "ubacktrace" => UFn::Ubacktrace,
            "sprint_ubacktrace" => UFn::SprintUbacktrace,
            "print_ubacktrace" => UFn::PrintUbacktrace,
            "print_ubacktrace_brief" => UFn::PrintUbacktraceBrief,
            "ucallers" => UFn::Ucallers,
            "print_ustack" => UFn::PrintUstack,
            "sprint_ustack" => UFn::SprintUstack,
            "sprint_ufolded" => UFn::SprintUfolded,
            "usymname" => UFn::Usymname,
            "usymdata" => UFn::Usymdata,
            "umodname" => UFn::Umodname,
            "usymfile" => UFn::Usymfile,
            "usymline" => UFn::Usymline,
            "usymfileline" => UFn::Usymfileline,
            _ => return None,
        })
    }

    /// Whether the function reads the stack captured at the probe.
    pub(crate) fn captured(self) -> bool {
        matches!(
            self,
            UFn::Ubacktrace
                | UFn::SprintUbacktrace
                | UFn::PrintUbacktrace
                | UFn::PrintUbacktraceBrief
                | UFn::Ucallers
        )
    }

    pub(crate) fn arg(self) -> UArg {
        match self {
            UFn::Ubacktrace
            | UFn::SprintUbacktrace
            | UFn::PrintUbacktrace
            | UFn::PrintUbacktraceBrief => UArg::None,
            UFn::Ucallers
            | UFn::Usymname
            | UFn::Usymdata
            | UFn::Umodname
            | UFn::Usymfile
            | UFn::Usymline
            | UFn::Usymfileline => UArg::Long,
            UFn::PrintUstack | UFn::SprintUstack | UFn::SprintUfolded => UArg::Str,
        }
    }

    /// Whether the result is a string (else a long).
    pub(crate) fn returns_string(self) -> bool {
        !matches!(
            self,
            UFn::PrintUbacktrace | UFn::PrintUbacktraceBrief | UFn::PrintUstack | UFn::Usymline
        )
    }
}

/// The registers, stack base and stack bytes of a backtrace capture (`None` when the
/// decode is not a backtrace).
pub(crate) fn decode(rec: &Record, d: &Decode) -> Option<([u64; 17], u64, Vec<u8>)> {
    let Decode::Backtrace {
        regs,
        stack,
        more_pages,
    } = d
    else {
        return None;
    };
    let mut r = [0u64; 17];
    for (slot, f) in r.iter_mut().zip(regs) {
        if let Some(f) = f {
            if let Ok(b) = rec.field(*f as usize) {
                let mut v = [0u8; 8];
                let n = b.len().min(8);
                v[..n].copy_from_slice(&b[..n]);
                *slot = u64::from_le_bytes(v);
            }
        }
    }
    let rsp = r[7];
    let mut bytes = Vec::new();
    let base = if *more_pages == 0 {
        if let Ok(b) = rec.field(*stack as usize) {
            bytes.extend_from_slice(b);
        }
        rsp
    } else {
        // Pages past the top of the stack fault: the stack is the pages below.
        for f in *stack..=stack.saturating_add(*more_pages) {
            match rec.field(f as usize) {
                Ok(b) => bytes.extend_from_slice(b),
                Err(_) => break,
            }
        }
        rsp & !0xfff
    };
    Some((r, base, bytes))
}

/// `%p` in stap's runtime: `0x` and 16 hex digits.
pub(crate) fn hex(a: u64) -> String {
    format!("0x{a:016x}")
}

fn basename(m: &str) -> &str {
    m.rsplit('/').next().unwrap_or(m)
}

/// `_STP_SYM_FULL` (print_ubacktrace, print_ustack): ` 0x… : f+0x10/0x40 [/path]\n`.
pub(crate) fn full(f: &StackFrame) -> String {
    match (&f.function, f.module.is_empty()) {
        (Some(name), false) => format!(
            " {} : {name}+{:#x}/{:#x} [{}]\n",
            hex(f.pc),
            f.offset,
            f.size.unwrap_or(0),
            f.module
        ),
        (Some(name), true) => format!(
            " {} : {name}+{:#x}/{:#x}\n",
            hex(f.pc),
            f.offset,
            f.size.unwrap_or(0)
        ),
        (None, false) => format!(" {} [{}+{:#x}]\n", hex(f.pc), f.module, f.module_offset),
        (None, true) => format!(" {}\n", hex(f.pc)),
    }
}

/// `_STP_SYM_SIMPLE` (sprint_ubacktrace, sprint_ustack): `f+0x10 [a.out]\n`.
pub(crate) fn simple(f: &StackFrame) -> String {
    match (&f.function, f.module.is_empty()) {
        (Some(name), false) => format!("{name}+{:#x} [{}]\n", f.offset, basename(&f.module)),
        (Some(name), true) => format!("{name}+{:#x}\n", f.offset),
        (None, false) => format!(
            "{} [{}+{:#x}]\n",
            hex(f.pc),
            basename(&f.module),
            f.module_offset
        ),
        (None, true) => format!("{}\n", hex(f.pc)),
    }
}

/// `_STP_SYM_BRIEF` (print_ubacktrace_brief): `f+0x10\n`, the address when unknown.
pub(crate) fn brief(f: &StackFrame) -> String {
    match &f.function {
        Some(name) => format!("{name}+{:#x}\n", f.offset),
        None => format!("{}\n", hex(f.pc)),
    }
}

/// `_STP_SYM_DATA` (usymdata): `f+0x10/0x40 [/path]`, `0x… [/path+0x10]` without a
/// symbol.
pub(crate) fn data(f: &StackFrame) -> String {
    let s = full(f);
    let s = s.trim();
    match s.split_once(" : ") {
        Some((_, rest)) => rest.to_string(),
        None => s.to_string(),
    }
}

/// The addresses of a `ubacktrace()` string.
pub(crate) fn parse_addrs(stk: &str) -> Vec<u64> {
    stk.split_whitespace()
        .filter_map(|w| {
            let h = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X"))?;
            u64::from_str_radix(h, 16).ok()
        })
        .collect()
}

/// Symbolises the addresses of a backtrace string: return addresses (all but the
/// first) are looked up one byte earlier, as the unwinder does, so that a call that
/// ends its function is attributed to the caller and not to the next function.
pub(crate) fn symbolize_all(st: Option<&dyn Stacks>, pid: u32, addrs: &[u64]) -> Vec<StackFrame> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let found = st.and_then(|s| {
                if i == 0 || a == 0 {
                    s.symbolize(pid, a)
                } else {
                    s.symbolize(pid, a - 1).map(|mut f| {
                        f.pc = a;
                        f.offset += 1;
                        f.module_offset += 1;
                        f
                    })
                }
            });
            found.unwrap_or(StackFrame {
                pc: a,
                ..StackFrame::default()
            })
        })
        .collect()
}

/// `sprint_ufolded(stk)`, snaptap's own: the frames' function names root first,
/// separated by `;`, as flame graph tools read them (`[unknown]` where no symbol is
/// known, as perf writes it).
pub(crate) fn folded(frames: &[StackFrame]) -> String {
    let names: Vec<String> = frames
        .iter()
        .rev()
        .map(|f| {
            f.function
                .as_deref()
                .map(|n| n.replace([';', ' '], "_"))
                .unwrap_or_else(|| "[unknown]".to_string())
        })
        .collect();
    names.join(";")
}

/// The text of a frame-list function: printed output goes to `out` (returning an
/// empty string), strings are returned (stap drops the last newline of a sprint).
pub(crate) fn render(f: UFn, frames: &[StackFrame], n: i64, out: &mut Vec<u8>) -> String {
    let join =
        |fmt: fn(&StackFrame) -> String| -> String { frames.iter().map(fmt).collect::<String>() };
    match f {
        UFn::Ubacktrace | UFn::Ucallers => {
            let take = if f == UFn::Ubacktrace || n < 0 {
                frames.len()
            } else {
                n as usize
            };
            frames
                .iter()
                .take(take)
                .map(|f| hex(f.pc))
                .collect::<Vec<_>>()
                .join(" ")
        }
        UFn::PrintUbacktrace | UFn::PrintUstack => {
            out.extend_from_slice(join(full).as_bytes());
            String::new()
        }
        UFn::PrintUbacktraceBrief => {
            out.extend_from_slice(join(brief).as_bytes());
            String::new()
        }
        UFn::SprintUbacktrace | UFn::SprintUstack => {
            let mut s = join(simple);
            s.pop();
            s
        }
        UFn::SprintUfolded => folded(frames),
        UFn::Usymname
        | UFn::Usymdata
        | UFn::Umodname
        | UFn::Usymfile
        | UFn::Usymline
        | UFn::Usymfileline => String::new(),
    }
}

/// `usymname`, `usymdata`, `usymfile`, `usymfileline` of one address: the address
/// in hex when nothing is known, as stap answers.
pub(crate) fn one(f: UFn, fr: Option<&StackFrame>, addr: u64) -> String {
    let Some(fr) = fr else {
        return hex(addr);
    };
    match f {
        UFn::Usymname => fr.function.clone().unwrap_or_else(|| hex(addr)),
        UFn::Usymdata if !fr.module.is_empty() || fr.function.is_some() => data(fr),
        UFn::Usymfile => match &fr.file_line {
            Some((file, _)) => file.clone(),
            None => hex(addr),
        },
        UFn::Usymfileline => match &fr.file_line {
            Some((file, line)) => format!("{file}:{line}"),
            None => hex(addr),
        },
        _ => hex(addr),
    }
}
