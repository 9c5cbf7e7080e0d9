//! The little ELF knowledge the backend needs: load segments (for the load bias) and a
//! symbol lookup (for the dynamic linker's `_dl_debug_state`). No DWARF is read here.

use std::path::Path;

use object::elf::PF_X;
use object::{Object, ObjectKind, ObjectSegment, ObjectSymbol, SegmentFlags};

use crate::procfs::MapEntry;

const PAGE: u64 = 4096;

/// What the backend knows about one ELF module on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// `ET_DYN` (PIE or shared object): loaded at a bias chosen at run time.
    pub relocatable: bool,
    /// `(p_vaddr, p_offset)` of each `PT_LOAD` segment.
    pub loads: Vec<(u64, u64)>,
    /// `(p_vaddr, p_memsz)` of each executable `PT_LOAD` segment.
    pub exec: Vec<(u64, u64)>,
}

/// Reads the ELF header and program headers of `path`.
pub fn read_image(path: &Path) -> Result<Image, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file =
        object::File::parse(&*data).map_err(|e| format!("{}: not ELF: {e}", path.display()))?;
    let relocatable = match file.kind() {
        ObjectKind::Executable => false,
        ObjectKind::Dynamic => true,
        other => {
            return Err(format!(
                "{}: unsupported ELF kind {other:?}",
                path.display()
            ))
        }
    };
    let loads = file
        .segments()
        .map(|s| (s.address(), s.file_range().0))
        .collect();
    let exec = file
        .segments()
        .filter(
            |s| matches!(s.flags(), SegmentFlags::Elf { p_flags, .. } if p_flags.0 & PF_X.0 != 0),
        )
        .map(|s| (s.address(), s.size()))
        .collect();
    Ok(Image {
        relocatable,
        loads,
        exec,
    })
}

/// The load bias of `img` given the mappings of its file in one process (sorted by
/// address): runtime address = link-time address + bias.
///
/// A mapping with file offset `off` comes from the segment whose page-aligned
/// `p_offset` is `off`, and starts at `bias + page_down(p_vaddr)`; the segment mapped at
/// offset 0 (lowest address) is preferred.
pub fn load_bias(img: &Image, maps: &[&MapEntry]) -> Option<u64> {
    if maps.is_empty() {
        return None;
    }
    if !img.relocatable {
        return Some(0);
    }
    let mut best: Option<(u64, u64)> = None;
    for m in maps {
        for &(vaddr, off) in &img.loads {
            if off & !(PAGE - 1) == m.offset {
                let bias = m.start.wrapping_sub(vaddr & !(PAGE - 1));
                if best.is_none_or(|(o, _)| m.offset < o) {
                    best = Some((m.offset, bias));
                }
            }
        }
    }
    best.map(|(_, b)| b)
}

/// The link-time address of symbol `name` (dynamic symbols first, then `.symtab`).
pub fn symbol_address(path: &Path, name: &str) -> Option<u64> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    file.dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.name().ok() == Some(name) && s.address() != 0)
        .map(|s| s.address())
}

/// The slack after the executable segment containing link-time address `vaddr`: the
/// link-time range from the end of the segment to the end of its last page, which is
/// mapped (mappings are page-granular) but never used by the program.
pub fn exec_slack(img: &Image, vaddr: u64) -> Option<(u64, u64)> {
    img.exec.iter().find_map(|&(start, size)| {
        let end = start.checked_add(size)?;
        if vaddr < start || vaddr >= end {
            return None;
        }
        let page_end = end.checked_add(PAGE - 1)? & !(PAGE - 1);
        Some((end, page_end))
    })
}
