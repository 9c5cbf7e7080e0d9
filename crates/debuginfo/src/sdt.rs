//! SystemTap SDT (USDT) probes: the `.note.stapsdt` notes that `<sys/sdt.h>` emits,
//! with their argument operands (AT&T syntax) lowered to [`Location`]s.

use capture_plan::{DwarfReg, Op};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::Location;

/// One SDT probe point compiled into a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdtProbe {
    /// The provider (`process("x").provider("P")`).
    pub provider: String,
    /// The probe name (`.mark("N")`).
    pub name: String,
    /// Link-time address of the probe's `nop`.
    pub pc: u64,
    /// Link-time address of its semaphore, 0 if none.
    pub semaphore: u64,
    /// Its arguments, `$arg1` first.
    pub args: Vec<SdtArg>,
}

/// One SDT argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdtArg {
    /// Width in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// Sign-extend when read.
    pub signed: bool,
    /// Where the value is at the probe (`Unavailable` for operands we cannot lower).
    pub location: Location,
    /// The operand as written in the note, e.g. `-4@%edi`.
    pub text: String,
}

/// DWARF number of an x86_64 register in any width (`%rdi`, `%edi`, `%di`, `%dil`).
fn reg_number(name: &str) -> Option<u16> {
    const NAMES: [[&str; 4]; 16] = [
        ["rax", "eax", "ax", "al"],
        ["rdx", "edx", "dx", "dl"],
        ["rcx", "ecx", "cx", "cl"],
        ["rbx", "ebx", "bx", "bl"],
        ["rsi", "esi", "si", "sil"],
        ["rdi", "edi", "di", "dil"],
        ["rbp", "ebp", "bp", "bpl"],
        ["rsp", "esp", "sp", "spl"],
        ["r8", "r8d", "r8w", "r8b"],
        ["r9", "r9d", "r9w", "r9b"],
        ["r10", "r10d", "r10w", "r10b"],
        ["r11", "r11d", "r11w", "r11b"],
        ["r12", "r12d", "r12w", "r12b"],
        ["r13", "r13d", "r13w", "r13b"],
        ["r14", "r14d", "r14w", "r14b"],
        ["r15", "r15d", "r15w", "r15b"],
    ];
    let n = name.trim_start_matches('%');
    if n == "rip" {
        return Some(16);
    }
    NAMES
        .iter()
        .position(|row| row.contains(&n))
        .map(|i| i as u16)
}

/// What operand lowering needs: the probe pc, whether the module is relocated, and
/// symbol addresses for `sym(%rip)` operands.
pub(crate) struct OperandCtx<'a> {
    pub pc: u64,
    pub pie: bool,
    pub symbol: &'a dyn Fn(&str) -> Option<u64>,
}

/// Parses `[-]SIZE@OPERAND` into an argument.
pub(crate) fn parse_arg(text: &str, ctx: &OperandCtx<'_>) -> SdtArg {
    let (size, signed, operand) = match text.split_once('@') {
        Some((s, op)) => match s.parse::<i32>() {
            Ok(n) => (n.unsigned_abs() as u8, n < 0, op),
            Err(_) => (8, true, op),
        },
        None => (8, true, text),
    };
    let size = if matches!(size, 1 | 2 | 4 | 8) {
        size
    } else {
        8
    };
    let location = lower_operand(operand, ctx).unwrap_or_else(|why| {
        Location::Unavailable(format!("unsupported SDT operand '{operand}': {why}"))
    });
    SdtArg {
        size,
        signed,
        location,
        text: text.to_string(),
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => body.parse::<i64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

fn lower_operand(op: &str, ctx: &OperandCtx<'_>) -> Result<Location, String> {
    let op = op.trim();
    if let Some(imm) = op.strip_prefix('$') {
        let v = parse_int(imm).ok_or("not a number")?;
        return Ok(Location::Constant((v as u64).to_le_bytes().to_vec()));
    }
    if op.starts_with('%') {
        return reg_number(op)
            .map(Location::Register)
            .ok_or_else(|| "unknown register".to_string());
    }
    // DISP(BASE[,INDEX[,SCALE]]) where DISP is a number or SYMBOL[+-N].
    let (disp, inner) = match op.find('(') {
        Some(i) if op.ends_with(')') => (&op[..i], &op[i + 1..op.len() - 1]),
        _ => (op, ""),
    };
    let parts: Vec<&str> = if inner.is_empty() {
        Vec::new()
    } else {
        inner.split(',').map(str::trim).collect()
    };
    let base = parts.first().copied().filter(|b| !b.is_empty());
    let (disp_num, disp_sym) = if disp.is_empty() {
        (0i64, None)
    } else if let Some(n) = parse_int(disp) {
        (n, None)
    } else {
        // SYMBOL, SYMBOL+N or SYMBOL-N.
        let cut = disp
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '+' || *c == '-')
            .map(|(i, _)| i);
        let (sym, off) = match cut {
            Some(i) => (&disp[..i], parse_int(&disp[i..]).ok_or("bad offset")?),
            None => (disp, 0),
        };
        (off, Some(sym))
    };
    let mut ops = Vec::new();
    match (base, disp_sym) {
        (Some(b), Some(sym)) if reg_number(b) == Some(16) => {
            // `sym(%rip)` names the symbol's address itself.
            let addr = (ctx.symbol)(sym).ok_or_else(|| format!("unknown symbol '{sym}'"))?;
            let addr = addr.wrapping_add(disp_num as u64);
            if ctx.pie {
                ops.extend([
                    Op::Reg(DwarfReg::RIP),
                    Op::Const(addr.wrapping_sub(ctx.pc)),
                    Op::Add,
                ]);
            } else {
                ops.push(Op::Const(addr));
            }
            return Ok(Location::Memory(ops));
        }
        (Some(b), _) if reg_number(b) == Some(16) => {
            return Err("rip-relative numeric displacement".into())
        }
        (Some(b), sym) => {
            let r = reg_number(b).ok_or("unknown base register")?;
            ops.push(Op::Reg(DwarfReg(r)));
            if let Some(sym) = sym {
                let a = (ctx.symbol)(sym).ok_or_else(|| format!("unknown symbol '{sym}'"))?;
                if ctx.pie {
                    return Err("absolute symbol in a relocatable module".into());
                }
                ops.extend([Op::Const(a), Op::Add]);
            }
        }
        (None, Some(sym)) => {
            let a = (ctx.symbol)(sym).ok_or_else(|| format!("unknown symbol '{sym}'"))?;
            if ctx.pie {
                ops.extend([
                    Op::Reg(DwarfReg::RIP),
                    Op::Const(a.wrapping_sub(ctx.pc)),
                    Op::Add,
                ]);
            } else {
                ops.push(Op::Const(a));
            }
        }
        (None, None) => ops.push(Op::Const(disp_num as u64)),
    }
    if let Some(index) = parts.get(1).filter(|s| !s.is_empty()) {
        let r = reg_number(index).ok_or("unknown index register")?;
        let scale = parts
            .get(2)
            .map_or(Some(1), |s| parse_int(s))
            .ok_or("bad scale")?;
        ops.push(Op::Reg(DwarfReg(r)));
        if scale != 1 {
            ops.extend([Op::Const(scale as u64), Op::Mul]);
        }
        ops.push(Op::Add);
    }
    if base.is_some() && disp_num != 0 {
        ops.extend([Op::Const(disp_num as u64), Op::Add]);
    }
    Ok(Location::Memory(ops))
}

/// Reads every SDT note of an ELF file. Note addresses are adjusted by the difference
/// between the `.stapsdt.base` section's final address and the one recorded in the
/// note, as prelinking may move it.
pub(crate) fn read_notes(file: &object::File<'_>, pie: bool) -> Vec<SdtProbe> {
    let mut out = Vec::new();
    let Some(sec) = file.section_by_name(".note.stapsdt") else {
        return out;
    };
    let Ok(data) = sec.data() else {
        return out;
    };
    let base_addr = file.section_by_name(".stapsdt.base").map(|s| s.address());
    let little = file.is_little_endian();
    let u32_at = |b: &[u8], o: usize| -> Option<u32> {
        let s: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let u64_at = |b: &[u8], o: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(s)
        } else {
            u64::from_be_bytes(s)
        })
    };
    // Operands rarely name symbols: the tables are read for the first one that does.
    let symbols: std::cell::OnceCell<Vec<(String, u64)>> = std::cell::OnceCell::new();
    let lookup = |name: &str| {
        symbols
            .get_or_init(|| {
                file.symbols()
                    .chain(file.dynamic_symbols())
                    .filter_map(|s| Some((s.name().ok()?.to_string(), s.address())))
                    .collect()
            })
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    };
    let align4 = |n: usize| (n + 3) & !3;
    let mut off = 0usize;
    while off + 12 <= data.len() {
        let (Some(namesz), Some(descsz), Some(ty)) = (
            u32_at(data, off),
            u32_at(data, off + 4),
            u32_at(data, off + 8),
        ) else {
            break;
        };
        let name_start = off + 12;
        let desc_start = name_start + align4(namesz as usize);
        let next = desc_start + align4(descsz as usize);
        if next > data.len() || next <= off {
            break;
        }
        let name = &data[name_start..name_start + namesz as usize];
        if ty == 3 && name.starts_with(b"stapsdt") {
            let desc = &data[desc_start..desc_start + descsz as usize];
            if let (Some(pc), Some(base), Some(sem)) =
                (u64_at(desc, 0), u64_at(desc, 8), u64_at(desc, 16))
            {
                let mut strs = desc.get(24..).unwrap_or_default().split(|b| *b == 0);
                let mut next_str = || strs.next().map(|s| String::from_utf8_lossy(s).into_owned());
                let provider = next_str().unwrap_or_default();
                let pname = next_str().unwrap_or_default();
                let args_text = next_str().unwrap_or_default();
                let adjust = base_addr.map_or(0, |b| b.wrapping_sub(base));
                let pc = pc.wrapping_add(adjust);
                let semaphore = if sem == 0 {
                    0
                } else {
                    sem.wrapping_add(adjust)
                };
                let ctx = OperandCtx {
                    pc,
                    pie,
                    symbol: &lookup,
                };
                let args = args_text
                    .split_whitespace()
                    .map(|a| parse_arg(a, &ctx))
                    .collect();
                out.push(SdtProbe {
                    provider,
                    name: pname,
                    pc,
                    semaphore,
                    args,
                });
            }
        }
        off = next;
    }
    out
}
