//! User-space stack unwinding after the fact, as `perf --call-graph dwarf` does it: the
//! probe copies the registers and a bounded slice of the stack; this crate walks the
//! frames later with the modules' call frame information (`.eh_frame`, else
//! `.debug_frame`), without frame pointers, across shared libraries, and symbolises
//! each frame with its function, offset, module, file and line.
//!
//! Overview: an [`Unwinder`] describes one address space (one pid): the modules
//! mapped in it with their load bias ([`Unwinder::add_module`]). [`Unwinder::unwind`]
//! takes the 17 DWARF-numbered registers of x86_64 (0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi,
//! 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 rip), the address the stack copy starts at and
//! its bytes. Every read the rules ask for outside the copied slice ends the walk
//! quietly: the frames found so far are the answer. [`UserStacks`] is the interface
//! the runtime calls (per pid), implemented by [`Unwinders`].
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use debuginfo::{CfaRule, DebugInfo, RegRule};

/// DWARF number of the return address column (rip) on x86_64.
pub const RIP: usize = 16;
/// DWARF number of the stack pointer (rsp) on x86_64.
pub const RSP: usize = 7;

/// One frame of a user stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame's pc: the probed address for the innermost frame, the return address
    /// for the others (as gdb's `bt` shows them).
    pub pc: u64,
    /// The function around the pc (DWARF name, else the ELF symbol), if known.
    pub function: Option<String>,
    /// Bytes from the function's start to the pc (0 when the function is unknown).
    pub offset: u64,
    /// The module the pc belongs to (empty when no known module maps it).
    pub module: PathBuf,
    /// Source file and line of the pc (of the call, for return addresses).
    pub file_line: Option<(String, u32)>,
}

struct Module {
    path: PathBuf,
    bias: u64,
    di: Arc<DebugInfo>,
    /// Run-time ranges of the executable segments.
    ranges: Vec<(u64, u64)>,
}

/// The modules of one address space, and stack walks over them.
#[derive(Default)]
pub struct Unwinder {
    modules: Vec<Module>,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m: Vec<_> = self
            .modules
            .iter()
            .map(|m| (m.path.display().to_string(), m.bias))
            .collect();
        write!(f, "Unwinder({m:?})")
    }
}

impl Unwinder {
    /// An address space with no modules yet.
    pub fn new() -> Unwinder {
        Unwinder::default()
    }

    /// Adds a module mapped with `load_bias` (run-time address minus link-time
    /// address; 0 for non-PIE executables). Files without DWARF still unwind through
    /// `.eh_frame` and symbolise with their symbol tables.
    pub fn add_module(&mut self, path: &Path, load_bias: u64) -> Result<(), debuginfo::Error> {
        // Shared with the planner's opening of the same file, if any.
        self.add_debuginfo(DebugInfo::open_shared(path)?, load_bias);
        Ok(())
    }

    /// Adds a module whose debug information is already open (shared with the
    /// planner, for instance).
    pub fn add_debuginfo(&mut self, di: Arc<DebugInfo>, load_bias: u64) {
        let ranges = di
            .exec_ranges()
            .iter()
            .map(|(a, b)| (a.wrapping_add(load_bias), b.wrapping_add(load_bias)))
            .collect();
        let path = di.path().to_path_buf();
        self.modules
            .retain(|m| !(m.path == path && m.bias == load_bias));
        self.modules.push(Module {
            path,
            bias: load_bias,
            di,
            ranges,
        });
    }

    /// Forgets a module (after `dlclose` or `exec`).
    pub fn remove_module(&mut self, path: &Path) {
        self.modules.retain(|m| m.path != path);
    }

    fn module_of(&self, addr: u64) -> Option<&Module> {
        self.modules
            .iter()
            .find(|m| m.ranges.iter().any(|(a, b)| *a <= addr && addr < *b))
    }

    /// The module path mapping `addr` (`umodname`).
    pub fn module_name(&self, addr: u64) -> Option<&Path> {
        self.module_of(addr).map(|m| m.path.as_path())
    }

    /// Symbolises one address (`usymname`, `usymdata`): the function (or symbol)
    /// containing it, the offset into it, module, file and line.
    pub fn symbolize(&self, addr: u64) -> Option<Frame> {
        let m = self.module_of(addr)?;
        Some(self.describe(m, addr, addr))
    }

    /// A frame for `pc`, looked up at `lookup` (pc - 1 for return addresses, so that a
    /// call at the very end of a function is attributed to it).
    fn describe(&self, m: &Module, pc: u64, lookup: u64) -> Frame {
        let at = lookup.wrapping_sub(m.bias);
        let pc_file = pc.wrapping_sub(m.bias);
        let (function, offset) = match m.di.function_at(at) {
            Some(f) => {
                let start = if at >= f.entry_pc {
                    f.entry_pc
                } else {
                    f.low_pc
                };
                (Some(f.name.clone()), pc_file.wrapping_sub(start))
            }
            None => match m.di.symbol_at(at) {
                Some((name, start)) => (Some(name.to_string()), pc_file.wrapping_sub(start)),
                None => (None, 0),
            },
        };
        Frame {
            pc,
            function,
            offset,
            module: m.path.clone(),
            file_line: m.di.line_at(at),
        }
    }

    /// Walks the stack: at most `max_frames` frames, innermost first. `regs` are the
    /// registers at the probe in DWARF numbering (16 = rip); `stack` holds the bytes
    /// copied from `stack_base` (rsp at the probe) upward.
    pub fn unwind(
        &self,
        regs: &[u64; 17],
        stack_base: u64,
        stack: &[u8],
        max_frames: usize,
    ) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut cur: [Option<u64>; 17] = regs.map(Some);
        let read = |addr: u64| -> Option<u64> {
            let off = usize::try_from(addr.checked_sub(stack_base)?).ok()?;
            let b = stack.get(off..off.checked_add(8)?)?;
            Some(u64::from_le_bytes(b.try_into().ok()?))
        };
        while frames.len() < max_frames {
            let Some(pc) = cur[RIP] else {
                break;
            };
            if pc == 0 {
                break;
            }
            let first = frames.is_empty();
            let lookup = if first { pc } else { pc.wrapping_sub(1) };
            let Some(m) = self.module_of(lookup) else {
                frames.push(Frame {
                    pc,
                    function: None,
                    offset: 0,
                    module: PathBuf::new(),
                    file_line: None,
                });
                break;
            };
            frames.push(self.describe(m, pc, lookup));
            let Some(row) = m.di.unwind_row(lookup.wrapping_sub(m.bias)) else {
                break;
            };
            let cfa = match row.cfa {
                CfaRule::RegOffset { reg, offset } => {
                    match cur.get(usize::from(reg)).copied().flatten() {
                        Some(v) => v.wrapping_add(offset as u64),
                        None => break,
                    }
                }
                CfaRule::Unsupported => break,
            };
            // Registers the row does not name keep their value (callee-saved ones are
            // unchanged by definition; the others are unknown but harmless).
            let mut next = cur;
            next[RIP] = None;
            for (r, rule) in &row.rules {
                let Some(slot) = next.get_mut(usize::from(*r)) else {
                    continue;
                };
                *slot = match *rule {
                    RegRule::Undefined => None,
                    RegRule::SameValue => cur.get(usize::from(*r)).copied().flatten(),
                    RegRule::AtCfa(o) => read(cfa.wrapping_add(o as u64)),
                    RegRule::ValCfa(o) => Some(cfa.wrapping_add(o as u64)),
                    RegRule::InReg(x) => cur.get(usize::from(x)).copied().flatten(),
                    RegRule::Unsupported => None,
                };
            }
            if usize::from(row.return_address) != RIP {
                next[RIP] = cur.get(usize::from(row.return_address)).copied().flatten();
            }
            next[RSP] = Some(cfa);
            // The stack grows down: a caller's frame is above its callee's. A walk
            // that does not move up is looping on bad rules or bad data.
            if let Some(sp) = cur[RSP] {
                if cfa <= sp && !first {
                    break;
                }
            }
            cur = next;
        }
        frames
    }
}

/// What the runtime asks of user stacks, per process.
pub trait UserStacks {
    /// Walks a stack of process `pid` (see [`Unwinder::unwind`]).
    fn unwind(
        &self,
        pid: u32,
        regs: &[u64; 17],
        stack_base: u64,
        stack: &[u8],
        max_frames: usize,
    ) -> Vec<Frame>;
    /// Symbolises an address of process `pid`.
    fn symbolize(&self, pid: u32, addr: u64) -> Option<Frame>;
}

/// One [`Unwinder`] per pid; modules are opened once and shared between processes.
#[derive(Default, Debug)]
pub struct Unwinders {
    by_pid: HashMap<u32, Unwinder>,
    opened: HashMap<PathBuf, Arc<DebugInfo>>,
}

impl Unwinders {
    /// No processes yet.
    pub fn new() -> Unwinders {
        Unwinders::default()
    }

    /// Records that `path` is mapped in `pid` with `load_bias`.
    pub fn add_module(
        &mut self,
        pid: u32,
        path: &Path,
        load_bias: u64,
    ) -> Result<(), debuginfo::Error> {
        let di = match self.opened.get(path) {
            Some(d) => d.clone(),
            None => {
                let d = DebugInfo::open_shared(path)?;
                self.opened.insert(path.to_path_buf(), d.clone());
                d
            }
        };
        self.by_pid
            .entry(pid)
            .or_default()
            .add_debuginfo(di, load_bias);
        Ok(())
    }

    /// Forgets a process (it exited).
    pub fn remove_pid(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    /// The unwinder of `pid`, if it has modules.
    pub fn get(&self, pid: u32) -> Option<&Unwinder> {
        self.by_pid.get(&pid)
    }
}

impl UserStacks for Unwinders {
    fn unwind(
        &self,
        pid: u32,
        regs: &[u64; 17],
        stack_base: u64,
        stack: &[u8],
        max_frames: usize,
    ) -> Vec<Frame> {
        match self.by_pid.get(&pid) {
            Some(u) => u.unwind(regs, stack_base, stack, max_frames),
            None => Vec::new(),
        }
    }

    fn symbolize(&self, pid: u32, addr: u64) -> Option<Frame> {
        self.by_pid.get(&pid)?.symbolize(addr)
    }
}
