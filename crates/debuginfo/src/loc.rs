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
    func: Option<&'a Function>,
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
        for (_, v) in self.scoped_variables(scope, pc) {
            if v.is_param {
                params.push(v);
            } else {
                locals.push(v);
            }
        }
        params.extend(locals);
        // A declaration in an inner block shadows outer ones of the same name; the DFS
        // walk meets the innermost last, so keep the last of each name, in place of
        // the first.
        let mut out: Vec<Variable> = Vec::with_capacity(params.len());
        for v in params {
            match out.iter_mut().find(|o| o.name == v.name) {
                Some(slot) => *slot = v,
                None => out.push(v),
            }
        }
        out
    }

    /// The variables of [`Self::variables_at`] in the order stap's `-L` lists them:
    /// the innermost scope's first (libdw's `dwarf_getscopes` order), each scope's
    /// in declaration order, an inner declaration hiding outer ones of its name.
    pub fn variables_listed_at(&self, scope: &Function, pc: u64) -> Vec<Variable> {
        let mut vars = self.scoped_variables(scope, pc);
        // Stable: declaration order stays within a scope.
        vars.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
        let mut out: Vec<Variable> = Vec::with_capacity(vars.len());
        for (_, v) in vars {
            if !out.iter().any(|o| o.name == v.name) {
                out.push(v);
            }
        }
        out
    }

    /// Every parameter and local of `scope` visible at `pc`, in DWARF order, with the
    /// depth of its DIE below `scope`.
    fn scoped_variables(&self, scope: &Function, pc: u64) -> Vec<(isize, Variable)> {
        let mut vars = Vec::new();
        let Some(u) = self.unit(scope.die.unit) else {
            return vars;
        };
        let Ok(mut cursor) = u.entries_at_offset(UnitOffset(scope.die.offset)) else {
            return vars;
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
            vars.push((depth, v));
        }
        vars
    }

    /// The parameters at a function's real entry pc (where `.return` probes stop).
    ///
    /// Optimised code has exact location lists there. Unoptimised code describes its
    /// parameters only at their frame slots, which the prologue has not written yet at
    /// the entry pc; there we place INTEGER-class parameters (integers, enums,
    /// pointers) by the x86_64 System V calling convention: the first six in rdi, rsi,
    /// rdx, rcx, r8, r9, the rest on the stack above the return address. Anything
    /// after a parameter we cannot classify simply (structs, floats) is unavailable.
    /// Locals are not meaningful at the entry and are left out.
    pub fn variables_at_entry(&self, f: &Function) -> Vec<Variable> {
        let vars = self.variables_at(f, f.entry_pc);
        if f.optimized || f.inlined {
            return vars;
        }
        if self.i386 {
            return self.entry_stack_params(vars);
        }
        const ARG_REGS: [u16; 6] = [5, 4, 1, 2, 8, 9];
        let mut next_reg = 0usize;
        let mut stack_off = 8u64;
        let mut lost = false;
        let mut out = Vec::new();
        for mut v in vars.into_iter().filter(|v| v.is_param) {
            let t = self.strip(v.ty).1;
            let integer = matches!(
                t.kind,
                crate::TypeKind::Base {
                    is_float: false,
                    ..
                } | crate::TypeKind::Pointer(_)
                    | crate::TypeKind::Enum { .. }
            ) && t.size.is_some_and(|s| s <= 8);
            v.location = if lost || !integer {
                lost = true;
                Location::Unavailable(
                    "not available at the function entry of unoptimised code".into(),
                )
            } else if next_reg < ARG_REGS.len() {
                next_reg += 1;
                Location::Register(ARG_REGS[next_reg - 1])
            } else {
                let ops = vec![Op::Reg(DwarfReg::RSP), Op::Const(stack_off), Op::Add];
                stack_off += 8;
                Location::Memory(ops)
            };
            out.push(v);
        }
        out
    }

    /// i386 cdecl: at the entry every parameter is on the stack above the return
    /// address, each in slots of 4 bytes.
    fn entry_stack_params(&self, vars: Vec<Variable>) -> Vec<Variable> {
        let mut off = 4u64;
        let mut out = Vec::new();
        for mut v in vars.into_iter().filter(|v| v.is_param) {
            let size = self.type_of(v.ty).size.unwrap_or(4).max(1);
            v.location = Location::Memory(vec![Op::Reg(DwarfReg::RSP), Op::Const(off), Op::Add]);
            off = off.saturating_add(size.div_ceil(4).saturating_mul(4));
            out.push(v);
        }
        out
    }

    fn var_location(&self, d: DieRef, func: &Function, pc: u64) -> Location {
        let Some(e) = self.entry(d) else {
            return Location::Unavailable("bad DWARF".into());
        };
        let ctx = Ctx {
            pc,
            func: Some(func),
            depth: 0,
        };
        match e.attr_value(gimli::DW_AT_location) {
            Some(AttributeValue::Exprloc(expr)) => self.lower(&expr.0, d.unit, &ctx),
            Some(v) => match self.loc_entries(d.unit, v) {
                Ok(entries) => {
                    // An empty range starting at the pc (gcc emits these with location
                    // views, typically at an inlined instance's entry) says where the
                    // value is before the instruction at pc runs: exactly when a
                    // breakpoint there stops. A covering range wins over it.
                    let covering = entries.iter().find(|(b, e, _)| *b <= pc && pc < *e);
                    let at_pc = entries.iter().find(|(b, e, _)| *b == pc && *e == pc);
                    match covering.or(at_pc) {
                        Some((_, _, expr)) => self.lower(expr, d.unit, &ctx),
                        None => Location::Unavailable(format!(
                            "not available at {pc:#x} (optimized out)"
                        )),
                    }
                }
                Err(why) => Location::Unavailable(why),
            },
            None => match self.attr_follow(d, gimli::DW_AT_const_value) {
                Some((_, v)) => const_value(v),
                None => Location::Unavailable("optimized out".into()),
            },
        }
    }

    /// A global or static variable by name (optionally restricted to a CU or declaration
    /// file matching `file`), with its location lowered for an entry plan run at `pc`.
    pub fn global_at(&self, name: &str, file: Option<&str>, pc: u64) -> Option<Variable> {
        let &(_, d) = self.globals().iter().find(|(n, d)| {
            n == name
                && file.is_none_or(|f| {
                    crate::file_matches(f, self.unit_name(d.unit))
                        || self
                            .decl(*d)
                            .0
                            .is_some_and(|df| crate::file_matches(f, &df))
                })
        })?;
        let e = self.entry(d)?;
        let ctx = Ctx {
            pc,
            func: None,
            depth: 0,
        };
        let location = match e.attr_value(gimli::DW_AT_location) {
            Some(AttributeValue::Exprloc(expr)) => self.lower(&expr.0, d.unit, &ctx),
            _ => match self.attr_follow(d, gimli::DW_AT_const_value) {
                Some((_, v)) => const_value(v),
                None => Location::Unavailable("optimized out".into()),
            },
        };
        let ty = self
            .attr_follow(d, gimli::DW_AT_type)
            .and_then(|(at, v)| self.resolve_ref(at.unit, v));
        Some(Variable {
            name: name.to_string(),
            is_param: false,
            ty,
            location,
        })
    }

    /// Names of all indexed globals (for error alternatives), sorted, deduplicated.
    pub fn global_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.globals().iter().map(|(n, _)| n.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// A named type for `@cast`: `struct NAME`, `union NAME`, `enum NAME`, or a typedef
    /// or base type name. Prefers complete definitions over declarations.
    pub fn find_type(&self, spelled: &str) -> Option<DieRef> {
        let spelled = spelled.trim();
        if let Ok(cache) = self.type_cache.lock() {
            if let Some(hit) = cache.get(spelled) {
                return *hit;
            }
        }
        let found = self.find_type_uncached(spelled);
        if let Ok(mut cache) = self.type_cache.lock() {
            cache.insert(spelled.to_string(), found);
        }
        found
    }

    fn find_type_uncached(&self, spelled: &str) -> Option<DieRef> {
        let (tags, name): (&[gimli::DwTag], &str) = if let Some(n) = spelled.strip_prefix("struct ")
        {
            (
                &[gimli::DW_TAG_structure_type, gimli::DW_TAG_class_type],
                n.trim(),
            )
        } else if let Some(n) = spelled.strip_prefix("union ") {
            (&[gimli::DW_TAG_union_type], n.trim())
        } else if let Some(n) = spelled.strip_prefix("enum ") {
            (&[gimli::DW_TAG_enumeration_type], n.trim())
        } else {
            (
                &[
                    gimli::DW_TAG_typedef,
                    gimli::DW_TAG_base_type,
                    gimli::DW_TAG_structure_type,
                ],
                spelled,
            )
        };
        let mut fallback = None;
        for ui in 0..self.units.len() {
            let Some(u) = self.unit(ui) else {
                continue;
            };
            let mut cursor = u.entries();
            while let Ok(Some(e)) = cursor.next_dfs() {
                if !tags.contains(&e.tag()) {
                    continue;
                }
                let Some(v) = e.attr_value(gimli::DW_AT_name) else {
                    continue;
                };
                if self.attr_str(u, v) != name {
                    continue;
                }
                let d = DieRef {
                    unit: ui,
                    offset: e.offset().0,
                };
                if e.attr_value(gimli::DW_AT_declaration).is_none() {
                    return Some(d);
                }
                fallback.get_or_insert(d);
            }
        }
        fallback
    }

    /// The entries of a location list as `[begin, end)` with their expression, keeping
    /// empty ranges (gimli's iterator drops them, but they matter with location views).
    fn loc_entries(&self, unit: usize, v: AttributeValue<R>) -> Result<Vec<(u64, u64, R)>, String> {
        use gimli::RawLocListEntry as E;
        let u = self.unit(unit).ok_or("bad DWARF unit")?;
        let mut it = match self.dwarf.attr_locations(u, v) {
            Ok(Some(it)) => it,
            Ok(None) => return Err("unsupported location form".into()),
            Err(e) => return Err(format!("bad location list: {e}")),
        };
        let addr = |i| self.dwarf.address(u, i).map_err(|e| e.to_string());
        let mut base = u.low_pc;
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let raw = match it.next_raw() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err(format!("bad location list: {e}")),
            };
            let (b, e, data) = match raw {
                E::BaseAddress { addr } => {
                    base = addr;
                    continue;
                }
                E::BaseAddressx { addr: i } => {
                    base = addr(i)?;
                    continue;
                }
                E::StartxEndx { begin, end, data } => (addr(begin)?, addr(end)?, data),
                E::StartxLength {
                    begin,
                    length,
                    data,
                } => {
                    let b = addr(begin)?;
                    (b, b.wrapping_add(length), data)
                }
                E::DefaultLocation { data } => (0, u64::MAX, data),
                E::AddressOrOffsetPair { begin, end, data }
                | E::OffsetPair { begin, end, data } => {
                    (base.wrapping_add(begin), base.wrapping_add(end), data)
                }
                E::StartEnd { begin, end, data } => (begin, end, data),
                E::StartLength {
                    begin,
                    length,
                    data,
                } => (begin, begin.wrapping_add(length), data),
            };
            // Tombstones (discarded code) and inverted ranges mean nothing.
            if b >= u64::MAX - 1 || b > e || (b == 0 && e == 0) {
                continue;
            }
            out.push((b, e, data.0));
        }
        Ok(out)
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
                    return Some((self.plan_reg(register.0), *offset));
                }
            }
        }
        if let Some((sec, bases)) = &self.debug_frame {
            let mut ctx = gimli::UnwindContext::new();
            if let Ok(row) =
                sec.unwind_info_for_address(bases, &mut ctx, pc, gimli::DebugFrame::cie_from_offset)
            {
                if let gimli::CfaRule::RegisterAndOffset { register, offset } = row.cfa() {
                    return Some((self.plan_reg(register.0), *offset));
                }
            }
        }
        None
    }

    fn frame_base(&self, ctx: &Ctx<'_>) -> Result<Vec<Op>, String> {
        if ctx.depth > 2 {
            return Err("recursive frame base".into());
        }
        let fd = ctx
            .func
            .ok_or("no frame base outside a function")?
            .frame_die;
        let e = self.entry(fd).ok_or("bad DWARF")?;
        let unit = self.unit(fd.unit).ok_or("bad DWARF")?;
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
        let encoding = self
            .units
            .get(unit)
            .ok_or("bad DWARF unit")?
            .header
            .encoding();
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
                Operation::Register { register } => {
                    result = Some(Location::Register(self.plan_reg(register.0)))
                }
                Operation::RegisterOffset {
                    register, offset, ..
                } => {
                    ops.push(Op::Reg(DwarfReg(self.plan_reg(register.0))));
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
                    let size = if size == 0 { self.addr_size } else { size };
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
                        (Ok(Some(Operation::Register { register })), Ok(None)) => {
                            self.plan_reg(register.0)
                        }
                        _ => return Err("unsupported DW_OP_entry_value".into()),
                    };
                    if ctx.func.map(|f| f.entry_pc) != Some(ctx.pc) {
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
