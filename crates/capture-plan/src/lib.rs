//! The capture plan: the only contract between the compiler half and the backends.
//!
//! Overview: a [`PlanSet`] lists [`ProbeSite`]s (where to stop: a module and a
//! link-time [`FileAddr`]). Each site has a [`CapturePlan`] (what to copy, as a list of
//! [`FieldPlan`]s, each a short straight-line program of [`Op`]s) and the backend turns a
//! hit into a [`Record`]. The runtime reads a record back through [`Decode`]s, which the
//! planner attached to the script expressions they feed.
//!
//! Invariants: pure data; no loops, no calls, no writes; every read has a static upper
//! bound ([`CapturePlan::max_record_bytes`]). No DWARF and no script code appear here.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A link-time (file) address inside one module, as DWARF and symbol tables give it.
///
/// The backend adds the module's load bias to get a runtime address; nothing else may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileAddr(pub u64);

/// Identity of a probe site within a [`PlanSet`] (its index in `PlanSet::sites`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SiteId(pub u32);

/// A DWARF register number (x86_64 numbering: 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi,
/// 6 rbp, 7 rsp, 8-15 r8-r15, 16 return address / rip).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DwarfReg(pub u16);

impl DwarfReg {
    /// `rax`, the integer return value register.
    pub const RAX: DwarfReg = DwarfReg(0);
    /// `rsp`, the stack pointer.
    pub const RSP: DwarfReg = DwarfReg(7);
    /// `rip`, the program counter (DWARF's "return address" column 16).
    pub const RIP: DwarfReg = DwarfReg(16);
    /// Not a DWARF register: the system call number at a syscall stop (`orig_rax` on
    /// x86_64 Linux). Only syscall sites can read it.
    pub const SYSCALL_NR: DwarfReg = DwarfReg(0x8000);
}

/// One operation of a field program. The machine is a stack of `u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Push a register's value at the probe.
    Reg(DwarfReg),
    /// Push a constant.
    Const(u64),
    /// Pop b, pop a, push a + b (wrapping).
    Add,
    /// Pop b, pop a, push a - b (wrapping).
    Sub,
    /// Pop b, pop a, push a * b (wrapping).
    Mul,
    /// Pop b, pop a, push a & b.
    And,
    /// Pop b, pop a, push a | b.
    Or,
    /// Pop b, pop a, push a ^ b.
    Xor,
    /// Pop b, pop a, push a << b (b masked to 63).
    Shl,
    /// Pop b, pop a, push a >> b, logical.
    Shr,
    /// Pop b, pop a, push a >> b, arithmetic.
    Sar,
    /// Pop a, push -a.
    Neg,
    /// Pop a, push !a (bitwise).
    Not,
    /// Pop a, push a sign-extended from `bits` bits.
    SignExtend(u8),
    /// Pop an address, push the `size`-byte (1, 2, 4 or 8) little-endian value there,
    /// zero-extended. A fault aborts this field.
    Deref(u8),
    /// Pop a value, write its low `size` bytes (little-endian) as the field. Terminal.
    EmitValue(u8),
    /// Pop an address, copy `len` bytes from it as the field. Terminal.
    EmitBytes(u32),
    /// Pop an address, copy a NUL-terminated string of at most `max` bytes (the NUL not
    /// included) as the field. Terminal.
    EmitString(u32),
    /// Push the value of field `i` of the same record: its bytes little-endian,
    /// zero-extended. Only a return plan may use it, and only on a field of its
    /// site's entry plan that ends in `EmitValue` (checked by [`PlanSet::verify`]):
    /// that is how a value saved at the function's entry (`$param` in a `.return`
    /// probe) addresses memory read at the return. If that field has no bytes
    /// (a fault at entry), this field gets the same status.
    EntryField(u32),
}

/// How one record field is computed: a straight-line program ending in one emit op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPlan {
    /// The operations; the last one is the only `Emit*`.
    pub ops: Vec<Op>,
    /// Human-readable origin for dumps and errors, e.g. `$req->name`.
    pub label: String,
}

impl FieldPlan {
    /// Upper bound of the bytes this field can occupy in a record.
    pub fn max_bytes(&self) -> u32 {
        match self.ops.last() {
            Some(Op::EmitValue(n)) => u32::from(*n),
            Some(Op::EmitBytes(n)) | Some(Op::EmitString(n)) => *n,
            _ => 0,
        }
    }
}

/// Everything to copy at one stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturePlan {
    /// Fields in record order; a field's index is its `FieldId`.
    pub fields: Vec<FieldPlan>,
}

/// Why a plan is not acceptable to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// Longest program accepted for one field.
pub const MAX_OPS_PER_FIELD: usize = 256;
/// Largest number of bytes one field may copy.
pub const MAX_FIELD_BYTES: u32 = 64 * 1024;

impl CapturePlan {
    /// Upper bound of the field bytes of one record made by this plan.
    pub fn max_record_bytes(&self) -> u64 {
        self.fields.iter().map(|f| u64::from(f.max_bytes())).sum()
    }

    /// Checks that the plan is well formed: bounded, stack-balanced, one emit at the end
    /// of every field, valid sizes, no [`Op::EntryField`] (a plan on its own has no
    /// entry record to refer to). Backends call this (or [`PlanSet::verify`]) before
    /// installing anything.
    pub fn verify(&self) -> Result<(), PlanError> {
        self.verify_with(None)
    }

    /// Like [`CapturePlan::verify`] for the return plan of a site whose entry plan is
    /// `entry`: [`Op::EntryField`] may name a field of `entry` that ends in
    /// `EmitValue`.
    pub fn verify_return(&self, entry: &CapturePlan) -> Result<(), PlanError> {
        self.verify_with(Some(entry))
    }

    fn verify_with(&self, entry: Option<&CapturePlan>) -> Result<(), PlanError> {
        for (i, f) in self.fields.iter().enumerate() {
            let err = |m: &str| Err(PlanError(format!("field {i} ({}): {m}", f.label)));
            if f.ops.is_empty() || f.ops.len() > MAX_OPS_PER_FIELD {
                return err("empty or too long");
            }
            let mut depth: i64 = 0;
            for (j, op) in f.ops.iter().enumerate() {
                let last = j + 1 == f.ops.len();
                let (pops, pushes) = match op {
                    Op::Reg(_) | Op::Const(_) => (0, 1),
                    Op::EntryField(k) => {
                        let Some(entry) = entry else {
                            return err("entry field reference outside a return plan");
                        };
                        match entry.fields.get(*k as usize).and_then(|f| f.ops.last()) {
                            Some(Op::EmitValue(_)) => (0, 1),
                            Some(_) => return err("entry field reference to a non-value field"),
                            None => return err("entry field reference out of range"),
                        }
                    }
                    Op::Add | Op::Sub | Op::Mul | Op::And | Op::Or | Op::Xor => (2, 1),
                    Op::Shl | Op::Shr | Op::Sar => (2, 1),
                    Op::Neg | Op::Not => (1, 1),
                    Op::SignExtend(b) => {
                        if *b == 0 || *b > 64 {
                            return err("bad sign-extension width");
                        }
                        (1, 1)
                    }
                    Op::Deref(n) => {
                        if !matches!(n, 1 | 2 | 4 | 8) {
                            return err("bad deref size");
                        }
                        (1, 1)
                    }
                    Op::EmitValue(n) => {
                        if !matches!(n, 1 | 2 | 4 | 8) {
                            return err("bad emit size");
                        }
                        (1, 0)
                    }
                    Op::EmitBytes(n) | Op::EmitString(n) => {
                        if *n > MAX_FIELD_BYTES {
                            return err("copy too large");
                        }
                        (1, 0)
                    }
                };
                let emit = matches!(op, Op::EmitValue(_) | Op::EmitBytes(_) | Op::EmitString(_));
                if emit != last {
                    return err("emit must be the last op, and only the last");
                }
                depth -= pops;
                if depth < 0 {
                    return err("stack underflow");
                }
                depth += pushes;
            }
        }
        Ok(())
    }
}

impl fmt::Display for CapturePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            write!(f, "  field {i} {}:", field.label)?;
            for op in &field.ops {
                match op {
                    Op::Reg(r) => write!(f, " reg({})", r.0)?,
                    Op::Const(c) => write!(f, " const({c:#x})")?,
                    Op::SignExtend(b) => write!(f, " sext({b})")?,
                    Op::Deref(n) => write!(f, " deref{n}")?,
                    Op::EmitValue(n) => write!(f, " emit_value{n}")?,
                    Op::EmitBytes(n) => write!(f, " emit_bytes({n})")?,
                    Op::EmitString(n) => write!(f, " emit_string({n})")?,
                    Op::EntryField(k) => write!(f, " entry_field({k})")?,
                    other => write!(f, " {}", format!("{other:?}").to_lowercase())?,
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// What kind of stop a site is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// Stop at `addr`, run `plan`, emit a record.
    Entry,
    /// Stop at `addr` (a function's entry), run `plan` (the `@entry` captures), remember
    /// the return address; when the function returns in that thread and frame, run
    /// `return_plan` and emit one record whose fields are `plan`'s then `return_plan`'s.
    Return {
        /// Captures made at the return address (`$return`, ...).
        return_plan: CapturePlan,
    },
    /// A process of the target module started (first exec, or fork child); no address.
    ProcessBegin,
    /// A process of the target module ended; no address.
    ProcessEnd,
    /// Every system call entry of a process running `module` (`process.syscall`); no
    /// address. `DwarfReg::SYSCALL_NR` is the call's number, arguments are in their
    /// registers (rdi, rsi, rdx, r10, r8, r9).
    SyscallEntry,
    /// Every system call exit of a process running `module` (`process.syscall.return`);
    /// no address. `rax` holds the return value, `DwarfReg::SYSCALL_NR` the number.
    SyscallReturn,
    /// A new thread of a process running `module` started (`process.thread.begin`):
    /// every thread but the process's first, including those found when attaching. No
    /// address; the record's `tid` is the new thread's, and the plan runs with its
    /// registers at its first stop.
    ThreadBegin,
    /// A thread of a process running `module` ended (`process.thread.end`): every
    /// thread but the last one of its process (that is `ProcessEnd`). No address; the
    /// record's `tid` is the thread's.
    ThreadEnd,
    /// Not a probe: a USDT semaphore, the 2-byte counter at `addr` in `module` that the
    /// program tests before evaluating a marker's arguments. While the session runs the
    /// backend adds one to it in every process of the module, and takes it off again at
    /// detach. Emits no records; its plan is empty.
    Semaphore,
}

/// Context a site's handler needs, which the backend must collect at the hit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextNeeds {
    /// `execname()`: the thread's `comm`.
    pub comm: bool,
    /// `ppid()`.
    pub ppid: bool,
    /// `cpu()`.
    pub cpu: bool,
}

/// One place to stop in a target, with what to copy there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSite {
    /// Its identity: the index in [`PlanSet::sites`].
    pub id: SiteId,
    /// The ELF module (absolute, canonical path) the address belongs to.
    pub module: PathBuf,
    /// Link-time address of the probed instruction (unused for process begin/end).
    pub addr: FileAddr,
    /// Entry, return, process begin/end.
    pub kind: SiteKind,
    /// What to copy at `addr`.
    pub plan: CapturePlan,
    /// Context the handler needs.
    pub needs: ContextNeeds,
}

/// Every probe site of a session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanSet {
    /// Sites, indexed by `SiteId`.
    pub sites: Vec<ProbeSite>,
}

impl PlanSet {
    /// Verifies every plan (see [`CapturePlan::verify`]; a return plan with
    /// [`CapturePlan::verify_return`] against its site's entry plan).
    pub fn verify(&self) -> Result<(), PlanError> {
        for s in &self.sites {
            s.plan.verify()?;
            if let SiteKind::Return { return_plan } = &s.kind {
                return_plan.verify_return(&s.plan)?;
            }
        }
        Ok(())
    }
}

/// A field's outcome in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldStatus {
    /// The bytes are `data[offset..offset+len]`.
    Ok {
        /// Start in `Record::data`.
        offset: u32,
        /// Length in bytes.
        len: u32,
    },
    /// A read at `addr` failed; the field has no bytes.
    Fault {
        /// The address that could not be read.
        addr: u64,
    },
    /// A register the plan asked for does not exist on this target.
    NoRegister(u16),
}

/// What a backend emits for one probe hit (or process begin/end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Which site fired.
    pub site: SiteId,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Wall-clock time of the hit, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Runtime address of the stop (the probed instruction, or the return address).
    pub ip: u64,
    /// Parent pid, if the site asked for it.
    pub ppid: u32,
    /// CPU the thread last ran on, if asked for.
    pub cpu: u32,
    /// Thread's `comm`, if asked for.
    pub comm: String,
    /// One status per field, in plan order (entry plan then return plan).
    pub fields: Vec<FieldStatus>,
    /// Field bytes.
    pub data: Vec<u8>,
}

impl Record {
    /// A record with no fields and empty context.
    pub fn new(site: SiteId, pid: u32, tid: u32, time_ns: u64, ip: u64) -> Record {
        Record {
            site,
            pid,
            tid,
            time_ns,
            ip,
            ppid: 0,
            cpu: 0,
            comm: String::new(),
            fields: Vec::new(),
            data: Vec::new(),
        }
    }

    /// The bytes of field `i`, or its status when it has none.
    pub fn field(&self, i: usize) -> Result<&[u8], FieldStatus> {
        match self.fields.get(i) {
            Some(FieldStatus::Ok { offset, len }) => {
                let (o, l) = (*offset as usize, *len as usize);
                self.data
                    .get(o..o + l)
                    .ok_or(FieldStatus::Fault { addr: 0 })
            }
            Some(other) => Err(*other),
            None => Err(FieldStatus::Fault { addr: 0 }),
        }
    }
}

/// How the runtime turns record fields into a script value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decode {
    /// An integer (also pointers, enums, bools): `size` bytes little-endian, sign-extended
    /// if `signed`, as a `long`.
    Int {
        /// Field index.
        field: u32,
        /// Width in bytes.
        size: u8,
        /// Sign-extend.
        signed: bool,
    },
    /// A bitfield inside a `size`-byte storage unit.
    Bitfield {
        /// Field index.
        field: u32,
        /// Storage unit width in bytes.
        size: u8,
        /// Sign-extend.
        signed: bool,
        /// Lowest bit of the value within the unit (little-endian bit numbering).
        bit_offset: u8,
        /// Number of bits.
        bit_size: u8,
    },
    /// A string: the field's bytes up to the first NUL.
    Str {
        /// Field index.
        field: u32,
    },
    /// Raw bytes, NULs included: the memory a `printf` `%m`/`%M` conversion shows,
    /// copied at the probe because the handler runs later.
    Bytes {
        /// Field index.
        field: u32,
    },
    /// A composite rendered as text (`$$parms`, `$var$`): the parts concatenated.
    Pretty(Vec<PrettyPart>),
    /// A user stack for `ubacktrace()` and friends, unwound after the fact: the 17
    /// x86_64 registers in DWARF numbering (each an 8-byte field, `None` when not
    /// captured) and a copy of the stack from `rsp` upward.
    Backtrace {
        /// Field of each register 0..=16 (16 is rip).
        regs: Vec<Option<u32>>,
        /// Field holding the stack bytes, copied from the address in register 7.
        stack: u32,
        /// Further fields continuing the copy: `stack + 1 ..= stack + more_pages`
        /// (0: `stack` holds it all). When non-zero the copy is split at page
        /// boundaries so that a fault at the top of the stack loses only the pages
        /// past it: `stack` then starts at rsp rounded down to 4096, every piece is
        /// 4096 bytes, and the stack is the pieces up to the first that faulted.
        more_pages: u32,
    },
}

/// One piece of a pretty-printed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrettyPart {
    /// Literal text such as `x=` or `{.a=`.
    Text(String),
    /// An integer printed in decimal.
    Dec(Decode),
    /// An integer printed as `0x...` hex (pointers).
    Hex(Decode),
    /// A string printed in double quotes with escapes.
    Quoted(Decode),
    /// A char printed as `'c'`.
    Char(Decode),
}

/// What the runtime needs to know about a site: which handler runs, its static context,
/// and how each captured script expression is decoded from the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteBinding {
    /// The site.
    pub site: SiteId,
    /// The handler: index of the probe among the script's resolved probes.
    pub probe: u32,
    /// `pp()`: the probe point as resolved, e.g. `process("/tmp/a").function("f@a.c:3")`.
    pub pp: String,
    /// `probefunc()` / `ppfunc()`: the function name (empty for process begin/end).
    pub function: String,
    /// Captured expressions: key is the compiler's expression id (`ExprId.0`), value how
    /// to decode it from the record.
    pub captures: BTreeMap<u32, Decode>,
    /// `pn()`: the script-level probe point of this site, as stap names it (its
    /// `derived_probe::script_location`): an alias as the script wrote it (`myal`),
    /// otherwise the resolved point itself. Empty means the same as [`Self::pp`].
    pub pn: String,
}
