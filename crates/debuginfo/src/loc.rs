//! Variables in scope at a pc, and the symbolic lowering of their DWARF location
//! expressions (location lists, frame base, CFA) into capture-plan [`Op`]s.

use capture_plan::{DwarfReg, Op};
use gimli::{AttributeValue, Operation, Reader, UnitOffset};

use crate::{DebugInfo, DieRef, Function, Variable, R};

/// Where a variable's value is at one pc, as a program for the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The value lives in memory at the address these ops compute.
    Memory(Vec<Op>),
    /// The value is in this DWARF register.
    Register(u16),
    /// These ops compute the value itself (`DW_OP_stack_value`).
    Value(Vec<Op>),
    /// The value is a known constant (little-endian bytes).
    Constant(Vec<u8>),
    /// The value does not exist at this pc; the reason, e.g. `optimized out`.
    Unavailable(String),
}

/// What the lowering needs to know about the place it lowers for.
struct Ctx<'a> {
    pc: u64,
    func: &'a Function,
    /// Nesting guard for frame-base evaluation.
    depth: u32,
}

impl DebugInfo {
    /// Parameters and locals visible at `pc` in `scope` (a function or an inlined
    /// instance): parameters first, then locals of every lexical block containing `pc`,
    /// each in declaration order, with the location valid at `pc`.
    ///
    /// Static addresses (`DW_OP_addr`) are lowered relative to `rip`, so the ops assume
    /// that `Reg(RIP)` is `pc` plus the load bias, i.e. they are meant for an entry plan
    /// run at `pc` itself.
    pub fn variables_at(&self, scope: &Function, pc: u64) -> Vec<Variable> {
        let mut params = Vec::new();
        let mut locals = Vec::new();
        let Some(u) = self.units.get(scope.die.unit) else {
            return params;
        };
        let Ok(mut cursor) = u.unit.entries_at_offset(UnitOffset(scope.die.offset)) else {
            return params;
        };
        let mut skip_below: Option<isize> = None;
        let mut first = true;
        while let Ok(Some(e)) = cursor.next_dfs() {
            let depth = e.depth();
            if first {
                first = false;
                continue;
            }
            if depth <= 0 {
                break;
            }
            if let Some(s) = skip_below {
                if depth > s {
                    continue;
                }
                skip_below = None;
            }
            let tag = e.tag();
            let d = DieRef {
                unit: scope.die.unit,
                offset: e.offset().0,
            };
            if tag == gimli::DW_TAG_subprogram || tag == gimli::DW_TAG_inlined_subroutine {
                skip_below = Some(depth);
                continue;
            }
            if tag == gimli::DW_TAG_lexical_block {
                let ranges = self.die_ranges(d);
                if !ranges.is_empty() && !ranges.iter().any(|r| r.0 <= pc && pc < r.1) {
                    skip_below = Some(depth);
                }
                continue;
            }
            let is_param = tag == gimli::DW_TAG_formal_parameter;
            if !is_param && tag != gimli::DW_TAG_variable {
                continue;
            }
            let Some(name) = self.die_name(d) else {
                continue;
            };
            let ty = self
                .attr_follow(d, gimli::DW_AT_type)
                .and_then(|(at, v)| self.resolve_ref(at.unit, v));
            let location = self.var_location(d, scope, pc);
            let v = Variable {
                name,
                is_param,
                ty,
                location,
            };
            if is_param {
                params.push(v);
            } else {
                locals.push(v);
            }
        }
        params.extend(locals);
        params
    }

    fn var_location(&self, d: DieRef, func: &Function, pc: u64) -> Location {
        let Some(e) = self.entry(d) else {
            return Location::Unavailable("bad DWARF".into());
        };
        let unit = &self.units[d.unit].unit;
        let ctx = Ctx { pc, func, depth: 0 };
        match e.attr_value(gimli::DW_AT_location) {
            Some(AttributeValue::Exprloc(expr)) => self.lower(&expr.0, d.unit, &ctx),
            Some(v) => match self.dwarf.attr_locations(unit, v) {
                Ok(Some(mut it)) => loop {
                    match it.next() {
                        Ok(Some(entry)) => {
                            if entry.range.begin <= pc && pc < entry.range.end {
                                break self.lower(&entry.data.0, d.unit, &ctx);
                            }
                        }
                        Ok(None) => {
                            break Location::Unavailable(format!(
                                "not available at {pc:#x} (optimized out)"
                            ))
                        }
                        Err(e) => break Location::Unavailable(format!("bad location list: {e}")),
                    }
                },
                _ => Location::Unavailable("unsupported location form".into()),
            },
            None => match self.attr_follow(d, gimli::DW_AT_const_value) {
                Some((_, v)) => const_value(v),
                None => Location::Unavailable("optimized out".into()),
            },
        }
    }

    /// The CFA rule at `pc` as (register, offset), from `.eh_frame` or `.debug_frame`.
    pub fn cfa_at(&self, pc: u64) -> Option<(u16, i64)> {
        use gimli::UnwindSection;
        if let Some((sec, bases)) = &self.eh_frame {
            let mut ctx = gimli::UnwindContext::new();
            if let Ok(row) =
                sec.unwind_info_for_address(bases, &mut ctx, pc, gimli::EhFrame::cie_from_offset)
            {
                if let gimli::CfaRule::RegisterAndOffset { register, offset } = row.cfa() {
                    return Some((register.0, *offset));
                }
            }
        }
        if let Some((sec, bases)) = &self.debug_frame {
            let mut ctx = gimli::UnwindContext::new();
            if let Ok(row) =
                sec.unwind_info_for_address(bases, &mut ctx, pc, gimli::DebugFrame::cie_from_offset)
            {
                if let gimli::CfaRule::RegisterAndOffset { register, offset } = row.cfa() {
                    return Some((register.0, *offset));
                }
            }
        }
        None
    }

    fn frame_base(&self, ctx: &Ctx<'_>) -> Result<Vec<Op>, String> {
        if ctx.depth > 2 {
            return Err("recursive frame base".into());
        }
        let fd = ctx.func.frame_die;
        let e = self.entry(fd).ok_or("bad DWARF")?;
        let unit = &self.units[fd.unit].unit;
        let inner = Ctx {
            pc: ctx.pc,
            func: ctx.func,
            depth: ctx.depth + 1,
        };
        let loc = match e.attr_value(gimli::DW_AT_frame_base) {
            Some(AttributeValue::Exprloc(expr)) => self.lower(&expr.0, fd.unit, &inner),
            Some(v) => {
                let mut found = Location::Unavailable("frame base not available".into());
                if let Ok(Some(mut it)) = self.dwarf.attr_locations(unit, v) {
                    while let Ok(Some(entry)) = it.next() {
                        if entry.range.begin <= ctx.pc && ctx.pc < entry.range.end {
                            found = self.lower(&entry.data.0, fd.unit, &inner);
                            break;
                        }
                    }
                }
                found
            }
            None => return Err("function has no frame base".into()),
        };
        match loc {
            // A register location as frame base means the register's contents.
            Location::Register(r) => Ok(vec![Op::Reg(DwarfReg(r))]),
            Location::Memory(ops) | Location::Value(ops) => Ok(ops),
            Location::Constant(_) => Err("constant frame base".into()),
            Location::Unavailable(why) => Err(format!("frame base: {why}")),
        }
    }

    fn cfa_ops(&self, pc: u64) -> Result<Vec<Op>, String> {
        let (reg, off) = self
            .cfa_at(pc)
            .ok_or_else(|| format!("no call frame information at {pc:#x}"))?;
        Ok(vec![Op::Reg(DwarfReg(reg)), Op::Const(off as u64), Op::Add])
    }

    /// Lowers one DWARF expression symbolically: register reads become `Op::Reg`, and
    /// everything else is kept as stack ops, so the result is evaluated in the target
    /// at the probe, not here.
    fn lower(&self, bytes: &R, unit: usize, ctx: &Ctx<'_>) -> Location {
        match self.lower_inner(bytes, unit, ctx) {
            Ok(l) => l,
            Err(why) => Location::Unavailable(why),
        }
    }

    fn lower_inner(&self, bytes: &R, unit: usize, ctx: &Ctx<'_>) -> Result<Location, String> {
        let encoding = self.units[unit].unit.encoding();
        let mut it = gimli::Expression(bytes.clone()).operations(encoding);
        let mut ops: Vec<Op> = Vec::new();
        let mut result: Option<Location> = None;
        let mut pieces = 0;
        loop {
            let op = match it.next() {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(e) => return Err(format!("bad location expression: {e}")),
            };
            if result.is_some() && !matches!(op, Operation::Piece { .. }) {
                return Err("unsupported location (composite)".into());
            }
            match op {
                Operation::Register { register } => result = Some(Location::Register(register.0)),
                Operation::RegisterOffset {
                    register, offset, ..
                } => {
                    ops.push(Op::Reg(DwarfReg(register.0)));
                    if offset != 0 {
                        ops.push(Op::Const(offset as u64));
                        ops.push(Op::Add);
                    }
                }
                Operation::FrameOffset { offset } => {
                    ops.extend(self.frame_base(ctx)?);
                    ops.push(Op::Const(offset as u64));
                    ops.push(Op::Add);
                }
                Operation::CallFrameCFA => ops.extend(self.cfa_ops(ctx.pc)?),
                Operation::UnsignedConstant { value } => ops.push(Op::Const(value)),
                Operation::SignedConstant { value } => ops.push(Op::Const(value as u64)),
                Operation::PlusConstant { value } => {
                    ops.push(Op::Const(value));
                    ops.push(Op::Add);
                }
                Operation::Plus => ops.push(Op::Add),
                Operation::Minus => ops.push(Op::Sub),
                Operation::Mul => ops.push(Op::Mul),
                Operation::And => ops.push(Op::And),
                Operation::Or => ops.push(Op::Or),
                Operation::Xor => ops.push(Op::Xor),
                Operation::Shl => ops.push(Op::Shl),
                Operation::Shr => ops.push(Op::Shr),
                Operation::Shra => ops.push(Op::Sar),
                Operation::Neg => ops.push(Op::Neg),
                Operation::Not => ops.push(Op::Not),
                Operation::Nop => {}
                Operation::Deref {
                    size, space: false, ..
                } => {
                    let size = if size == 0 { 8 } else { size };
                    if !matches!(size, 1 | 2 | 4 | 8) {
                        return Err(format!("unsupported DW_OP_deref_size {size}"));
                    }
                    ops.push(Op::Deref(size));
                }
                Operation::Address { address } => {
                    // The load bias is only known in the target: rip at the probe is
                    // `pc + bias`, so `address = rip + (address - pc)` for an ET_DYN file.
                    if self.pie {
                        ops.push(Op::Reg(DwarfReg::RIP));
                        ops.push(Op::Const(address.wrapping_sub(ctx.pc)));
                        ops.push(Op::Add);
                    } else {
                        ops.push(Op::Const(address));
                    }
                }
                Operation::StackValue => result = Some(Location::Value(std::mem::take(&mut ops))),
                Operation::ImplicitValue { data } => {
                    result = Some(Location::Constant(
                        data.to_slice().unwrap_or_default().to_vec(),
                    ))
                }
                Operation::EntryValue { expression } => {
                    // The value a register had at entry equals the register itself only
                    // at the entry pc; elsewhere we would need the caller's call-site
                    // parameters, which a capture plan cannot evaluate.
                    let mut inner = gimli::Expression(expression).operations(encoding);
                    let reg = match (inner.next(), inner.next()) {
                        (Ok(Some(Operation::Register { register })), Ok(None)) => register.0,
                        _ => return Err("unsupported DW_OP_entry_value".into()),
                    };
                    if ctx.pc != ctx.func.entry_pc {
                        return Err(format!(
                            "not available at {:#x} (entry value only known at function entry)",
                            ctx.pc
                        ));
                    }
                    ops.push(Op::Reg(DwarfReg(reg)));
                }
                Operation::Piece { .. } => {
                    pieces += 1;
                    if pieces > 1 {
                        return Err("unsupported location (split into pieces)".into());
                    }
                    if result.is_none() {
                        result = Some(Location::Memory(std::mem::take(&mut ops)));
                    }
                }
                Operation::ImplicitPointer { .. } => {
                    return Err("unsupported location (implicit pointer)".into())
                }
                other => return Err(format!("unsupported DWARF operation {other:?}")),
            }
        }
        if let Some(r) = result {
            return Ok(r);
        }
        if ops.is_empty() {
            return Ok(Location::Unavailable("optimized out".into()));
        }
        Ok(Location::Memory(ops))
    }
}

fn const_value(v: AttributeValue<R>) -> Location {
    match v {
        AttributeValue::Data1(x) => Location::Constant(vec![x]),
        AttributeValue::Data2(x) => Location::Constant(x.to_le_bytes().to_vec()),
        AttributeValue::Data4(x) => Location::Constant(x.to_le_bytes().to_vec()),
        AttributeValue::Data8(x) => Location::Constant(x.to_le_bytes().to_vec()),
        AttributeValue::Sdata(x) => Location::Constant(x.to_le_bytes().to_vec()),
        AttributeValue::Udata(x) => Location::Constant(x.to_le_bytes().to_vec()),
        AttributeValue::Block(b) => Location::Constant(b.to_slice().unwrap_or_default().to_vec()),
        _ => Location::Unavailable("unsupported constant".into()),
    }
}
