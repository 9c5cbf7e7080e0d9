//! Call frame information (`.eh_frame`, `.debug_frame`) answered as plain unwind rules
//! for one address, for the unwinder: no gimli type crosses the API.

use gimli::{CfaRule as GCfa, RegisterRule, UnwindSection};

use crate::{DebugInfo, R};

/// How to compute the canonical frame address (the caller's stack pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfaRule {
    /// The value of a register (DWARF number) plus an offset.
    RegOffset {
        /// The register.
        reg: u16,
        /// The offset added to it.
        offset: i64,
    },
    /// A DWARF expression: not evaluated (PLT stubs and signal trampolines use them).
    Unsupported,
}

/// How to recover one register of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegRule {
    /// The caller's value is lost (for the return address: the outermost frame).
    Undefined,
    /// Unchanged by this frame.
    SameValue,
    /// Saved in memory at CFA + offset.
    AtCfa(i64),
    /// The value is CFA + offset.
    ValCfa(i64),
    /// Held in another register (DWARF number).
    InReg(u16),
    /// A rule this unwinder does not evaluate (expressions).
    Unsupported,
}

/// The unwind rules at one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnwindRow {
    /// Link-time address range the row covers.
    pub start: u64,
    /// End of that range (exclusive).
    pub end: u64,
    /// The CFA rule.
    pub cfa: CfaRule,
    /// Rules for the registers this row names; others keep their value.
    pub rules: Vec<(u16, RegRule)>,
    /// The column holding the return address (16, rip, on x86_64).
    pub return_address: u16,
}

/// One FDE of a table: its address range and offset in the section.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FdeEntry {
    start: u64,
    end: u64,
    offset: usize,
}

/// Sorted FDE ranges of `.eh_frame` and `.debug_frame`, built on first unwind.
#[derive(Default, Debug)]
pub(crate) struct FdeTables {
    eh: Vec<FdeEntry>,
    debug: Vec<FdeEntry>,
}

fn table<S: UnwindSection<R>>(sec: &S, bases: &gimli::BaseAddresses) -> Vec<FdeEntry>
where
    S::Offset: gimli::UnwindOffset<usize>,
{
    let mut out = Vec::new();
    let mut entries = sec.entries(bases);
    // A malformed entry ends the table: what was read before it stays usable.
    while let Ok(Some(e)) = entries.next() {
        if let gimli::CieOrFde::Fde(partial) = e {
            if let Ok(fde) = partial.parse(S::cie_from_offset) {
                let start = fde.initial_address();
                let end = start.saturating_add(fde.len());
                if end > start {
                    out.push(FdeEntry {
                        start,
                        end,
                        offset: fde.offset(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|f| (f.start, f.end));
    out
}

fn find(t: &[FdeEntry], addr: u64) -> Option<FdeEntry> {
    let i = t.partition_point(|f| f.start <= addr);
    // FDEs do not overlap in sane files; look back a few in case they do.
    t[..i].iter().rev().take(4).find(|f| addr < f.end).copied()
}

fn row_of<S: UnwindSection<R>>(
    sec: &S,
    bases: &gimli::BaseAddresses,
    fde: FdeEntry,
    addr: u64,
) -> Option<UnwindRow>
where
    S::Offset: gimli::UnwindOffset<usize>,
{
    let fde = sec
        .fde_from_offset(bases, S::Offset::from(fde.offset), S::cie_from_offset)
        .ok()?;
    let mut ctx = gimli::UnwindContext::new();
    let row = fde
        .unwind_info_for_address(sec, bases, &mut ctx, addr)
        .ok()?;
    let cfa = match row.cfa() {
        GCfa::RegisterAndOffset { register, offset } => CfaRule::RegOffset {
            reg: register.0,
            offset: *offset,
        },
        GCfa::Expression(_) => CfaRule::Unsupported,
    };
    let rules = row
        .registers()
        .map(|(r, rule)| {
            let rr = match rule {
                RegisterRule::Undefined => RegRule::Undefined,
                RegisterRule::SameValue => RegRule::SameValue,
                RegisterRule::Offset(o) => RegRule::AtCfa(*o),
                RegisterRule::ValOffset(o) => RegRule::ValCfa(*o),
                RegisterRule::Register(x) => RegRule::InReg(x.0),
                _ => RegRule::Unsupported,
            };
            (r.0, rr)
        })
        .collect();
    Some(UnwindRow {
        start: row.start_address(),
        end: row.end_address(),
        cfa,
        rules,
        return_address: fde.cie().return_address_register().0,
    })
}

impl DebugInfo {
    /// The unwind rules at link-time address `addr`, from `.eh_frame` (preferred: it
    /// is what the program itself unwinds with) or else `.debug_frame`. `None` when
    /// neither covers the address or its entry cannot be read.
    pub fn unwind_row(&self, addr: u64) -> Option<UnwindRow> {
        let t = self.fde_tables.get_or_init(|| FdeTables {
            eh: self
                .eh_frame
                .as_ref()
                .map(|(s, b)| table(s, b))
                .unwrap_or_default(),
            debug: self
                .debug_frame
                .as_ref()
                .map(|(s, b)| table(s, b))
                .unwrap_or_default(),
        });
        if let (Some(f), Some((s, b))) = (find(&t.eh, addr), self.eh_frame.as_ref()) {
            if let Some(r) = row_of(s, b, f, addr) {
                return Some(r);
            }
        }
        if let (Some(f), Some((s, b))) = (find(&t.debug, addr), self.debug_frame.as_ref()) {
            return row_of(s, b, f, addr);
        }
        None
    }

    /// Link-time address ranges of the file's executable segments.
    pub fn exec_ranges(&self) -> &[(u64, u64)] {
        &self.exec_ranges
    }
}
