//! ELF + DWARF queries for the planner: functions, inlined instances, probe addresses,
//! line tables, variables with their location lowered to capture-plan ops, and types.
//!
//! Overview: [`DebugInfo::open`] reads an ELF file and loads its DWARF, from the file
//! itself or from a separate debug file found by build-id or `.gnu_debuglink` under
//! the debug roots ([`set_debug_dirs`], `SNAPTAP_DEBUG_DIRS`, default
//! `/usr/lib/debug`; a file of another build is refused), inflating zlib/zstd
//! sections on several threads. Nothing is indexed up front, and a unit is parsed
//! (abbreviations, line program header) only when a query needs it: a query by exact
//! name finds the few units that can define the name by a byte search of
//! `.debug_info` for its string offsets, plus `.debug_aranges` for the units around
//! symbols of that name (see `names.rs`), and scans only those; queries that need
//! everything (wildcards, address lookups) scan all units once, in parallel. The
//! symbol tables are read on first use. `SNAPTAP_DEBUGINFO_TIMING=1` prints the
//! steps with their times to stderr. Queries answer in
//! plain data: [`Function`], [`Variable`], [`Type`], [`Location`] (a symbolic program
//! of [`capture_plan::Op`]s), [`UnwindRow`] (CFI for the unwinder). No gimli type
//! appears in the public API, and nothing here touches a live process.
#![forbid(unsafe_code)]

mod cfi;
mod loc;
mod names;
mod sdt;
mod symtab;
mod types;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gimli::{AttributeValue, EndianArcSlice, Reader, RunTimeEndian, UnitOffset};
use object::{Object, ObjectSection};

pub use cfi::{CfaRule, RegRule, UnwindRow};
pub use loc::Location;
pub use sdt::{SdtArg, SdtProbe};
pub use symtab::{stap_levenshtein, stap_suggest};
pub use types::{Enumerator, Member, Type, TypeKind};

pub(crate) type R = EndianArcSlice<RunTimeEndian>;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {msg}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error text.
        msg: String,
    },
    /// The file is not an ELF object we understand.
    #[error("{path} is not a valid ELF file: {msg}")]
    BadElf {
        /// The file.
        path: PathBuf,
        /// Details.
        msg: String,
    },
    /// The file has no DWARF debug information, nor a separate debug file: the file,
    /// every place searched, and advice on what would provide it.
    #[error("no debug information found in {}{}; {}", .0.display(), searched(.1), .2)]
    NoDebugInfo(PathBuf, Vec<PathBuf>, String),
    /// A separate debug file was found but belongs to another build of the file.
    #[error("debug file {} does not match {}: its build-id is {found}, the file's is {expected} (refusing to use it: its addresses would be wrong)", .debug.display(), .path.display())]
    BuildIdMismatch {
        /// The binary.
        path: PathBuf,
        /// The debug file found for it.
        debug: PathBuf,
        /// The binary's build-id (hex), or its debuglink CRC.
        expected: String,
        /// The debug file's build-id (hex), or its CRC.
        found: String,
    },
    /// The DWARF data is malformed or uses something unsupported.
    #[error("bad DWARF in {path}: {msg}")]
    Dwarf {
        /// The file.
        path: PathBuf,
        /// Details.
        msg: String,
    },
}

/// Identity of one DIE (a function, an inlined instance, a variable or a type) in one
/// [`DebugInfo`]. Opaque: only meaningful for the `DebugInfo` that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DieRef {
    unit: usize,
    offset: usize,
}

/// A function with code: an out-of-line (concrete) subprogram, or one inlined instance.
#[derive(Clone, Debug)]
pub struct Function {
    /// Source name (`DW_AT_name`, following `abstract_origin`/`specification`).
    pub name: String,
    /// Lowest address of its code (first range start for inlined instances).
    pub low_pc: u64,
    /// `DW_AT_entry_pc` if present, else `low_pc`.
    pub entry_pc: u64,
    /// Address ranges `[begin, end)`.
    pub ranges: Vec<(u64, u64)>,
    /// Declaration file (full path as DWARF gives it), if known.
    pub decl_file: Option<String>,
    /// Declaration line, 0 if unknown.
    pub decl_line: u32,
    /// The compilation unit's name.
    pub cu_name: String,
    /// The CU's producer has an optimisation flag other than `-O0`.
    pub optimized: bool,
    /// True for an inlined instance (`DW_TAG_inlined_subroutine`).
    pub inlined: bool,
    /// For inlined instances, the call site file and line.
    pub call_site: Option<(String, u32)>,
    /// This DIE (the scope for variables).
    pub die: DieRef,
    /// The abstract origin (for inlined instances and out-of-line copies of inline
    /// functions), else the DIE itself: identifies "the same function".
    pub origin: DieRef,
    /// For inlined instances, the concrete subprogram they are inlined into (whose
    /// frame base applies); else the DIE itself.
    pub frame_die: DieRef,
    /// Return type (`None` for void).
    pub return_type: Option<DieRef>,
    /// Other ELF symbol names at the entry (`malloc` for glibc's `__libc_malloc`);
    /// patterns match these too.
    pub aliases: Vec<String>,
}

/// One variable (parameter or local) visible at some pc.
#[derive(Clone, Debug)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// A formal parameter (else a local).
    pub is_param: bool,
    /// Its type.
    pub ty: Option<DieRef>,
    /// Where its value is at the pc asked for.
    pub location: Location,
}

/// Total size of some units, saturating (sizes come from the file).
fn sum_sizes(lens: &[usize]) -> usize {
    lens.iter().fold(0usize, |a, l| a.saturating_add(*l))
}

/// Bytes covered by some ranges, saturating (hostile DWARF can list huge ones).
fn span(ranges: &[(u64, u64)]) -> u64 {
    ranges
        .iter()
        .fold(0u64, |a, r| a.saturating_add(r.1.saturating_sub(r.0)))
}

/// Cuts `lens` (unit sizes, in order) into at most one contiguous run per thread with
/// similar total sizes: the run boundaries, from 0 to `lens.len()`. Few or small
/// units make one run (threads would cost more than they save).
fn split_by_size(lens: &[usize], total: usize) -> Vec<usize> {
    let n = lens.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .clamp(1, 4);
    if threads <= 1 || n < 8 || total < (1 << 20) {
        return vec![0, n];
    }
    let mut bounds = vec![0];
    let mut acc = 0usize;
    for (i, l) in lens.iter().enumerate() {
        acc = acc.saturating_add(*l);
        if acc.saturating_mul(threads) >= total.saturating_mul(bounds.len())
            && bounds.len() < threads
            && i + 1 < n
        {
            bounds.push(i + 1);
        }
    }
    bounds.push(n);
    bounds
}

/// A function DIE found by the index scan, with the attributes read on the way.
struct Found {
    die: DieRef,
    inlined: bool,
    /// Its own `DW_AT_name`.
    name: Option<AttributeValue<R>>,
    /// `DW_AT_low_pc` as an address.
    low_addr: Option<u64>,
    /// `DW_AT_abstract_origin`, else `DW_AT_specification`: where the name is.
    origin: Option<AttributeValue<R>>,
    abstract_origin: Option<AttributeValue<R>>,
    entry_pc: Option<AttributeValue<R>>,
    call_file: Option<u64>,
    call_line: Option<u64>,
    frame: DieRef,
}

/// The functions and static variables found in some units.
#[derive(Default)]
struct UnitScan {
    /// Function DIEs with code, in DWARF order.
    found: Vec<Found>,
    /// `found[i]` made into a [`Function`] on first use: a probe on one function of a
    /// large program only pays for the functions with that name.
    slots: Vec<std::sync::OnceLock<Option<Function>>>,
    /// Static variable DIEs; named on first use.
    globals: Vec<DieRef>,
    /// The name attribute of every named subprogram DIE by (unit, offset), to name
    /// concrete instances through their abstract origin without reparsing it.
    names: HashMap<(usize, usize), AttributeValue<R>>,
}

/// A row of a line table.
#[derive(Clone, Debug)]
struct LineRow {
    addr: u64,
    file: usize,
    line: u32,
    is_stmt: bool,
    end_seq: bool,
}

/// One unit of `.debug_info`: its header, read at open, and the rest parsed on first
/// use (abbreviations, root DIE, line program header): a probe on one function of a
/// large program parses a handful of its thousands of units.
struct UnitData {
    header: gimli::UnitHeader<R>,
    /// The parsed unit; `None` when it is malformed (it then has no DIEs).
    parsed: std::sync::OnceLock<Option<ParsedUnit>>,
    /// Files of the line program by raw index, read on first use.
    files: std::sync::OnceLock<Vec<Option<String>>>,
    /// Rows of the line program in program order (sequences kept apart by `end_seq`),
    /// read on first use: large programs have big line tables that most queries skip.
    lines: std::sync::OnceLock<Vec<LineRow>>,
}

struct ParsedUnit {
    unit: gimli::Unit<R>,
    name: String,
    optimized: bool,
}

/// One ELF file's debug information.
pub struct DebugInfo {
    path: PathBuf,
    dwarf: gimli::Dwarf<R>,
    units: Vec<UnitData>,
    eh_frame: Option<(gimli::EhFrame<R>, gimli::BaseAddresses)>,
    debug_frame: Option<(gimli::DebugFrame<R>, gimli::BaseAddresses)>,
    /// The scan of every unit (functions, inlined instances, static variables), made
    /// when a query needs all of them.
    full: std::sync::OnceLock<UnitScan>,
    /// Per unit: its own scan, made when a query by exact name needs that unit only.
    unit_scans: Vec<std::sync::OnceLock<UnitScan>>,
    /// What exact-name queries look at to pick the units to scan.
    names: names::NameIndex,
    /// Text symbol names by address (aliases such as glibc's `malloc`).
    /// Made on first use: a query by exact name looks its name up in the symbol
    /// tables directly (see [`Self::text_symbol_addrs`]).
    sym_by_addr: std::sync::OnceLock<HashMap<u64, Vec<String>>>,
    /// Text symbols sorted by start: (start, end, name); one per address, global
    /// names preferred.
    symbols: std::sync::OnceLock<Vec<(u64, u64, String)>>,
    /// The ELF file's bytes as read (sections nobody reads are zeros): the symbol
    /// tables are read from it on first use.
    elf: Vec<u8>,
    /// The separate debug file's bytes as read (empty without one): its `.symtab`
    /// is the symbol table stap reads when the file itself has none.
    dbg_elf: Vec<u8>,
    /// The function symbols of the table stap reads ([`symtab`]), made on first use.
    stap_syms: std::sync::OnceLock<Vec<symtab::SymEntry>>,
    functions: std::sync::OnceLock<Vec<Function>>,
    inlines: std::sync::OnceLock<Vec<Function>>,
    /// Variables with a location outside any function: (name, DIE).
    globals: std::sync::OnceLock<Vec<(String, DieRef)>>,
    pie: bool,
    build_id: Option<Vec<u8>>,
    /// SDT (USDT) probes from `.note.stapsdt`.
    sdt: Vec<SdtProbe>,
    /// Why there is no DWARF (for symbol-only files).
    missing: Option<MissingDebug>,
    /// FDE lookup tables, built on the first unwind.
    fde_tables: std::sync::OnceLock<cfi::FdeTables>,
    /// Link-time ranges of executable segments.
    exec_ranges: Vec<(u64, u64)>,
    /// Function ranges sorted for `function_at`: (begin, end, index, running max end).
    fn_ranges: std::sync::OnceLock<Vec<(u64, u64, usize, u64)>>,
    /// Bytes in an address (8, or 4 for 32-bit files).
    addr_size: u8,
    /// A 32-bit x86 file: its DWARF register numbers are mapped to the x86_64
    /// numbering that capture plans use (eax is rax's column, and so on).
    i386: bool,
    /// Named types already looked up by [`DebugInfo::find_type`].
    type_cache: std::sync::Mutex<HashMap<String, Option<DieRef>>>,
    /// Parsed abbreviation tables by `.debug_abbrev` offset: units sharing a table
    /// (half of libc6-dbg's) parse it once.
    abbrevs: std::sync::Mutex<HashMap<usize, Arc<gimli::Abbreviations>>>,
    /// Recursion depth of [`DebugInfo::type_of`], to survive cyclic type DWARF.
    type_depth: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for DebugInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DebugInfo({})", self.path.display())
    }
}

fn section_data(file: &object::File<'_>, name: &str) -> Result<Option<Arc<[u8]>>, String> {
    match file.section_by_name(name) {
        Some(s) => {
            let data = s.uncompressed_data().map_err(|e| e.to_string())?;
            Ok(Some(Arc::from(&*data)))
        }
        None => Ok(None),
    }
}

/// Why a file opened without DWARF has none: the places searched, and the full
/// message made on first use.
struct MissingDebug {
    searched: Vec<PathBuf>,
    text: std::sync::OnceLock<String>,
}

/// A separate debug file: its path and contents.
type SeparateFile = (PathBuf, Image);

/// An ELF file in memory: a buffer of the file's size, and the large uncompressed
/// non-allocated sections (DWARF) read into buffers of their own, shared with gimli
/// without a copy. In the buffer, the bytes of sections nobody reads here (code,
/// writable data) may be left as zeros.
struct Image {
    bytes: Vec<u8>,
    pre: Vec<SectionBuf>,
    /// Compressed DWARF sections left unread (file offset, size): the thread that
    /// inflates one reads it, so reading overlaps inflating.
    deferred: Vec<(u64, u64)>,
    /// The file, for the deferred sections.
    file: Option<std::fs::File>,
}

impl Image {
    fn whole(bytes: Vec<u8>) -> Image {
        Image {
            bytes,
            pre: Vec::new(),
            deferred: Vec::new(),
            file: None,
        }
    }

    /// A deferred section's bytes, as in the file.
    fn read_deferred(&self, off: u64, size: u64) -> Result<Vec<u8>, String> {
        use std::os::unix::fs::FileExt;
        let f = self.file.as_ref().ok_or("file closed")?;
        let n = usize::try_from(size).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; n];
        f.read_exact_at(&mut buf, off).map_err(|e| e.to_string())?;
        Ok(buf)
    }

    /// The bytes at `[off, off + size)`, shared when read apart, else copied.
    fn range(&self, off: u64, size: u64) -> Option<Arc<[u8]>> {
        if let Some((_, _, a)) = self.pre.iter().find(|p| p.0 == off && p.1 == size) {
            return Some(a.clone());
        }
        let a = usize::try_from(off).ok()?;
        let b = a.checked_add(usize::try_from(size).ok()?)?;
        Some(Arc::from(self.bytes.get(a..b)?))
    }
}

/// Reads what the loader needs of an ELF file (see [`Image`]). Anything but a
/// well-formed 64-bit little-endian ELF header is read whole.
fn read_image(path: &Path) -> std::io::Result<Image> {
    use std::os::unix::fs::FileExt;
    const SHT_PROGBITS: u32 = 1;
    const SHT_NOBITS: u32 = 8;
    const SHF_WRITE: u64 = 1;
    const SHF_ALLOC: u64 = 2;
    const SHF_EXECINSTR: u64 = 4;
    const SHF_COMPRESSED: u64 = 0x800;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let whole = || std::fs::read(path).map(Image::whole);
    let Ok(size) = usize::try_from(len) else {
        return whole();
    };
    let mut head = [0u8; 64];
    if size < 64 || f.read_exact_at(&mut head, 0).is_err() {
        return whole();
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    if head[..4] != *b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return whole();
    }
    let phoff = u64_at(&head, 0x20);
    let shoff = u64_at(&head, 0x28);
    let phsize = u64::from(u16_at(&head, 0x36)) * u64::from(u16_at(&head, 0x38));
    let shentsize = u64::from(u16_at(&head, 0x3a));
    let shnum = u64::from(u16_at(&head, 0x3c));
    let fits = |off: u64, n: u64| off.checked_add(n).is_some_and(|e| e <= len);
    if shnum == 0 || shentsize < 64 || !fits(shoff, shentsize * shnum) || !fits(phoff, phsize) {
        return whole();
    }
    // Zeroed lazily by the allocator: pages never read into cost nothing.
    let mut bytes = vec![0u8; size];
    let read_into = |bytes: &mut Vec<u8>, off: u64, n: u64| -> std::io::Result<()> {
        let (a, b) = (off as usize, (off + n) as usize);
        f.read_exact_at(&mut bytes[a..b], off)
    };
    bytes[..64].copy_from_slice(&head);
    read_into(&mut bytes, phoff, phsize)?;
    read_into(&mut bytes, shoff, shentsize * shnum)?;
    // Section names, to leave out read-only data (`.rodata` is megabytes in large
    // programs) that nothing here reads.
    let shstrndx = u64::from(u16_at(&head, 0x3e));
    let mut names: Option<(u64, u64)> = None;
    if shstrndx < shnum {
        let h = (shoff + shstrndx * shentsize) as usize;
        let (off, n) = (u64_at(&bytes, h + 0x18), u64_at(&bytes, h + 0x20));
        if n > 0 && fits(off, n) {
            read_into(&mut bytes, off, n)?;
            names = Some((off, n));
        }
    }
    let name_is = |bytes: &[u8], sh_name: u32, want: &[u8]| -> bool {
        let Some((off, n)) = names else {
            return false;
        };
        let (start, end) = (off as usize, (off + n) as usize);
        let at = start.saturating_add(sh_name as usize);
        at < end && bytes[at..end].split(|b| *b == 0).next() == Some(want)
    };
    let mut big = Vec::new();
    let mut deferred = Vec::new();
    for i in 0..shnum {
        let h = (shoff + i * shentsize) as usize;
        let sh = bytes[h..h + 64].to_vec();
        let (ty, flags, off, n) = (
            u32_at(&sh, 4),
            u64_at(&sh, 8),
            u64_at(&sh, 0x18),
            u64_at(&sh, 0x20),
        );
        // Sections without bytes, out of the file (object reports those), or code and
        // writable data (nothing here reads them) are not read.
        if ty == SHT_NOBITS || n == 0 || !fits(off, n) {
            continue;
        }
        if flags & SHF_ALLOC != 0 && flags & (SHF_WRITE | SHF_EXECINSTR) != 0 {
            continue;
        }
        // Of the read-only data with contents, only `.eh_frame` (unwinding) is read
        // here; notes, symbol tables and the like have types of their own.
        if flags & SHF_ALLOC != 0
            && ty == SHT_PROGBITS
            && !name_is(&bytes, u32_at(&sh, 0), b".eh_frame")
        {
            continue;
        }
        let big_dwarf = ty == 1 && flags & (SHF_ALLOC | SHF_COMPRESSED) == 0 && n >= 1 << 16;
        let big_compressed = ty == 1
            && flags & (SHF_ALLOC | SHF_COMPRESSED) == SHF_COMPRESSED
            && DWARF_SECTIONS
                .iter()
                .any(|id| name_is(&bytes, u32_at(&sh, 0), id.name().as_bytes()));
        if big_dwarf {
            big.push((off, n));
        } else if big_compressed {
            deferred.push((off, n));
        } else {
            read_into(&mut bytes, off, n)?;
        }
    }
    let pre = read_sections(&f, big)?;
    Ok(Image {
        bytes,
        pre,
        deferred,
        file: Some(f),
    })
}

/// A section read apart: (file offset, size, contents).
type SectionBuf = (u64, u64, Arc<[u8]>);

/// Reads whole sections (file offset, size) into buffers of their own, on two threads
/// when there are megabytes: most of the time goes to faulting in fresh pages, which
/// two cores do twice as fast.
fn read_sections(f: &std::fs::File, mut jobs: Vec<(u64, u64)>) -> std::io::Result<Vec<SectionBuf>> {
    use std::os::unix::fs::FileExt;
    let read = |lane: Vec<(u64, u64)>| -> std::io::Result<Vec<SectionBuf>> {
        lane.into_iter()
            .map(|(off, n)| {
                let len = usize::try_from(n).map_err(|_| std::io::ErrorKind::InvalidData)?;
                let mut buf: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
                let dst = Arc::get_mut(&mut buf).ok_or(std::io::ErrorKind::Other)?;
                f.read_exact_at(dst, off)?;
                Ok((off, n, buf))
            })
            .collect()
    };
    let total = jobs.iter().fold(0u64, |a, j| a.saturating_add(j.1));
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    if threads < 2 || total < (4 << 20) {
        return read(jobs);
    }
    // Largest first, each to the lighter of two lanes.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.1));
    let (mut a, mut b) = ((0u64, Vec::new()), (0u64, Vec::new()));
    for j in jobs {
        let l = if a.0 <= b.0 { &mut a } else { &mut b };
        l.0 = l.0.saturating_add(j.1);
        l.1.push(j);
    }
    std::thread::scope(|s| {
        let other = s.spawn(|| read(b.1));
        let mut out = read(a.1)?;
        out.extend(
            other
                .join()
                .unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into()))?,
        );
        Ok(out)
    })
}

/// The sections gimli reads (`.debug_frame` is read apart, by the unwinder).
const DWARF_SECTIONS: [gimli::SectionId; 13] = [
    gimli::SectionId::DebugAbbrev,
    gimli::SectionId::DebugAddr,
    gimli::SectionId::DebugAranges,
    gimli::SectionId::DebugInfo,
    gimli::SectionId::DebugLine,
    gimli::SectionId::DebugLineStr,
    gimli::SectionId::DebugLoc,
    gimli::SectionId::DebugLocLists,
    gimli::SectionId::DebugRanges,
    gimli::SectionId::DebugRngLists,
    gimli::SectionId::DebugStr,
    gimli::SectionId::DebugStrOffsets,
    gimli::SectionId::DebugTypes,
];

/// The DWARF sections gimli reads, decompressed (on several threads: distribution
/// debug files are zlib-compressed and inflating them is most of their opening time).
/// Also the scan of `.debug_abbrev` when it was inflated here: its lane is usually
/// idle while `.debug_info` inflates on the other.
fn load_debug_sections(
    file: &object::File<'_>,
    image: &Image,
) -> Result<(HashMap<&'static str, R>, Option<names::AbbrevScan>), String> {
    let ids = DWARF_SECTIONS;
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let mut map = HashMap::new();
    let mut jobs: Vec<(&'static str, object::Section<'_, '_>)> = Vec::new();
    for id in ids {
        let Some(s) = file.section_by_name(id.name()) else {
            continue;
        };
        // Uncompressed sections are used in place, without a copy.
        if let Ok(r) = s.compressed_file_range() {
            if r.format == object::CompressionFormat::None && r.uncompressed_size == s.size() {
                if let Some(a) = image.range(r.offset, r.uncompressed_size) {
                    map.insert(id.name(), EndianArcSlice::new(a, endian));
                    continue;
                }
            }
        }
        jobs.push((id.name(), s));
    }
    jobs.sort_by_key(|(_, s)| std::cmp::Reverse(s.size()));
    // Threads only pay off for large compressed sections.
    let compressed = jobs
        .iter()
        .fold(0u64, |a, (_, s)| a.saturating_add(s.size()));
    let threads = if compressed < (1 << 20) {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |c| c.get())
            .clamp(1, 4)
    };
    // Largest first, each to the least loaded lane: .debug_info is often more than
    // all the others together.
    let mut lanes: Vec<(u64, Vec<(&'static str, object::Section<'_, '_>)>)> =
        (0..threads).map(|_| (0, Vec::new())).collect();
    for j in jobs {
        if let Some(l) = lanes.iter_mut().min_by_key(|l| l.0) {
            l.0 = l.0.saturating_add(j.1.size());
            l.1.push(j);
        }
    }
    let lanes = lanes.into_iter().map(|l| l.1);
    let abbrev_name = gimli::SectionId::DebugAbbrev.name();
    let inflate = |lane: Vec<(&'static str, object::Section<'_, '_>)>| {
        let mut abbrev = None;
        let out = lane
            .into_iter()
            .map(|(name, s)| {
                let data = inflate_section(&s, image).map_err(|e| format!("{name}: {e}"))?;
                if name == abbrev_name {
                    abbrev = Some(data.clone());
                }
                Ok((name, EndianArcSlice::new(data, endian)))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((out, abbrev.map(|a| names::AbbrevScan::new(&a))))
    };
    type Lane = Result<(Vec<(&'static str, R)>, Option<names::AbbrevScan>), String>;
    let results: Vec<Lane> = std::thread::scope(|sc| {
        let mut lanes = lanes;
        let first = lanes.next().unwrap_or_default();
        let handles: Vec<_> = lanes.map(|l| sc.spawn(move || inflate(l))).collect();
        let mut out = vec![inflate(first)];
        for h in handles {
            out.push(
                h.join()
                    .unwrap_or_else(|_| Err("decompression failed".into())),
            );
        }
        out
    });
    let mut scan = None;
    for r in results {
        let (sections, s) = r?;
        map.extend(sections);
        scan = scan.or(s);
    }
    Ok((map, scan))
}

/// A section's contents, inflated straight into the buffer gimli reads when it is
/// zlib-compressed (no intermediate copy: these are megabytes), else as object gives
/// them.
fn inflate_section(s: &object::Section<'_, '_>, image: &Image) -> Result<Arc<[u8]>, String> {
    if let Some((off, size)) = s.file_range().filter(|r| image.deferred.contains(r)) {
        // ELF64 little-endian (the only files read sparsely): ch_type, ch_reserved,
        // ch_size, ch_addralign, then the data.
        let raw = image.read_deferred(off, size)?;
        let head: [u8; 24] = raw
            .get(..24)
            .and_then(|h| h.try_into().ok())
            .ok_or("truncated compression header")?;
        let ty = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let mut sz = [0u8; 8];
        sz.copy_from_slice(&head[8..16]);
        let format = match ty {
            1 => object::CompressionFormat::Zlib,
            2 => object::CompressionFormat::Zstandard,
            _ => return Err(format!("unsupported compression type {ty}")),
        };
        let c = object::CompressedData {
            format,
            data: &raw[24..],
            uncompressed_size: u64::from_le_bytes(sz),
        };
        return inflate_data(c);
    }
    let c = s.compressed_data().map_err(|e| e.to_string())?;
    if c.format != object::CompressionFormat::Zlib {
        let data = s.uncompressed_data().map_err(|e| e.to_string())?;
        return Ok(Arc::from(&*data));
    }
    inflate_data(c)
}

/// Inflates compressed data: zlib straight into the buffer gimli reads, zstd through
/// object.
fn inflate_data(c: object::CompressedData<'_>) -> Result<Arc<[u8]>, String> {
    if c.format != object::CompressionFormat::Zlib {
        let data = c.decompress().map_err(|e| e.to_string())?;
        return Ok(Arc::from(&*data));
    }
    // zlib cannot inflate more than about 1032 times its input: a larger claim is a
    // lie, and must not allocate.
    let n = usize::try_from(c.uncompressed_size)
        .ok()
        .filter(|n| *n <= c.data.len().saturating_mul(1100).max(1 << 16))
        .ok_or("bad uncompressed size")?;
    let mut buf: Arc<[u8]> = std::iter::repeat_n(0u8, n).collect();
    let out = Arc::get_mut(&mut buf).ok_or("buffer shared")?;
    let mut z = flate2::Decompress::new(true);
    let st = z
        .decompress(c.data, out, flate2::FlushDecompress::Finish)
        .map_err(|e| format!("invalid zlib data: {e}"))?;
    if st != flate2::Status::StreamEnd || z.total_out() != n as u64 {
        return Err("invalid zlib data: wrong uncompressed size".into());
    }
    Ok(buf)
}

impl DebugInfo {
    /// Reads an ELF file and indexes its DWARF.
    pub fn open(path: &Path) -> Result<DebugInfo, Error> {
        Self::open_with(path, true, &debug_dirs())
    }

    /// Like [`Self::open`], searching separate debug files under `debug_dirs` instead
    /// of the session's roots (see [`set_debug_dirs`]).
    pub fn open_in(path: &Path, debug_dirs: &[PathBuf]) -> Result<DebugInfo, Error> {
        Self::open_with(path, true, debug_dirs)
    }

    /// Like [`Self::open`], but a file without DWARF is still opened: its functions
    /// then come from the ELF symbol tables (no variables, no lines, probed at their
    /// entry), and [`Self::has_debug_info`] is false.
    pub fn open_or_symbols(path: &Path) -> Result<DebugInfo, Error> {
        Self::open_with(path, false, &debug_dirs())
    }

    /// For a file opened by [`Self::open_or_symbols`] without DWARF: the full
    /// explanation (places searched, package to install), as [`Error::NoDebugInfo`]
    /// would say it.
    pub fn missing_debug_info(&self) -> Option<&str> {
        let m = self.missing.as_ref()?;
        Some(m.text.get_or_init(|| {
            let hint = missing_debug_hint(self.build_id.as_deref(), &self.path);
            Error::NoDebugInfo(self.path.clone(), m.searched.clone(), hint).to_string()
        }))
    }

    /// False when the functions come from the symbol table only.
    pub fn has_debug_info(&self) -> bool {
        !self.units.is_empty()
    }

    /// Like [`Self::open_or_symbols`], shared: a file opened once in this process (and
    /// not changed since: same size, mtime and inode) is not read again. The planner
    /// and the unwinder open the same modules, and dropping a large file's index
    /// costs as much as building parts of it.
    pub fn open_shared(path: &Path) -> Result<Arc<DebugInfo>, Error> {
        type Key = (PathBuf, u64, i64, i64, u64, Vec<PathBuf>);
        static CACHE: std::sync::Mutex<Vec<(Key, Arc<DebugInfo>)>> =
            std::sync::Mutex::new(Vec::new());
        let key = std::fs::metadata(path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (
                path.to_path_buf(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino(),
                debug_dirs(),
            )
        });
        if let Some(k) = &key {
            let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, d)) = cache.iter().find(|(c, _)| c == k) {
                return Ok(d.clone());
            }
        }
        let di = Arc::new(Self::open_or_symbols(path)?);
        if let Some(k) = key {
            let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            cache.retain(|(c, _)| c.0 != k.0);
            cache.push((k, di.clone()));
        }
        Ok(di)
    }

    /// Like [`Self::open_or_symbols`] on file contents already in memory (`path` names
    /// it in messages and locates a `.gnu_debuglink` file; `debug_dirs` are searched
    /// by build-id). For tools and fuzzing: nothing in `bytes` can make this panic.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        debug_dirs: &[PathBuf],
    ) -> Result<DebugInfo, Error> {
        Self::from_image(path, Image::whole(bytes.to_vec()), false, debug_dirs)
    }

    fn open_with(path: &Path, require_dwarf: bool, roots: &[PathBuf]) -> Result<DebugInfo, Error> {
        timing(|| format!("open {}", path.display()));
        progress(&format!("reading {}", path.display()));
        let bytes = read_image(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Self::from_image(path, bytes, require_dwarf, roots)
    }

    fn from_image(
        path: &Path,
        bytes: Image,
        require_dwarf: bool,
        roots: &[PathBuf],
    ) -> Result<DebugInfo, Error> {
        let bad = |msg: String| Error::BadElf {
            path: path.to_path_buf(),
            msg,
        };
        timing(|| "read".into());
        let file = object::File::parse(&*bytes.bytes).map_err(|e| bad(e.to_string()))?;
        // Distribution binaries keep their DWARF in a separate file (by build-id or
        // .gnu_debuglink under /usr/lib/debug); its addresses are the same.
        let mut searched = Vec::new();
        let separate = if file.section_by_name(".debug_info").is_some() {
            None
        } else {
            find_separate_debug(&file, path, roots, &mut searched)?
        };
        let no_debug = |searched: Vec<PathBuf>| {
            let id = file.build_id().ok().flatten();
            let hint = missing_debug_hint(id, path);
            Error::NoDebugInfo(path.to_path_buf(), searched, hint)
        };
        if let Some((p, _)) = &separate {
            progress(&format!(
                "reading debug information of {} from {}",
                path.display(),
                p.display()
            ));
        }
        let dbg_file = match &separate {
            Some((p, b)) => Some(object::File::parse(&*b.bytes).map_err(|e| Error::BadElf {
                path: p.clone(),
                msg: e.to_string(),
            })?),
            None => None,
        };
        let dwarf_src = dbg_file.as_ref().unwrap_or(&file);
        let dwarf_bytes = separate.as_ref().map_or(&bytes, |(_, b)| b);
        let has_dwarf = dwarf_src.section_by_name(".debug_info").is_some();
        if !has_dwarf && require_dwarf {
            return Err(no_debug(searched));
        }
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let derr = |msg: String| Error::Dwarf {
            path: path.to_path_buf(),
            msg,
        };
        timing(|| "separate debug file found".into());
        let empty = EndianArcSlice::new(Arc::from(&[][..]), endian);
        let (mut loaded, abbrev_scan) =
            load_debug_sections(dwarf_src, dwarf_bytes).map_err(|e| derr(e.clone()))?;
        let dwarf = gimli::Dwarf::load(|id| -> Result<R, String> {
            Ok(loaded.remove(id.name()).unwrap_or_else(|| empty.clone()))
        })
        .map_err(derr)?;
        timing(|| "sections loaded".into());
        let pie = file.kind() == object::ObjectKind::Dynamic;
        let addr_size: u8 = if file.is_64() { 8 } else { 4 };
        let i386 = file.architecture() == object::Architecture::I386;
        let build_id = file.build_id().ok().flatten().map(|b| b.to_vec());
        let text_addr = file.section_by_name(".text").map_or(0, |s| s.address());
        let eh_frame = match file.section_by_name(".eh_frame") {
            Some(s) => {
                let data = s.uncompressed_data().map_err(|e| bad(e.to_string()))?;
                let mut sec = gimli::EhFrame::from(EndianArcSlice::new(Arc::from(&*data), endian));
                sec.set_address_size(addr_size);
                let bases = gimli::BaseAddresses::default()
                    .set_eh_frame(s.address())
                    .set_text(text_addr);
                Some((sec, bases))
            }
            None => None,
        };
        let debug_frame = match section_data(dwarf_src, ".debug_frame").map_err(bad)? {
            Some(d) => {
                let mut sec = gimli::DebugFrame::from(EndianArcSlice::new(d, endian));
                sec.set_address_size(addr_size);
                Some((sec, gimli::BaseAddresses::default().set_text(text_addr)))
            }
            None => None,
        };
        let mut di = DebugInfo {
            path: path.to_path_buf(),
            dwarf,
            units: Vec::new(),
            eh_frame,
            debug_frame,
            full: Default::default(),
            unit_scans: Vec::new(),
            names: Default::default(),
            sym_by_addr: Default::default(),
            symbols: Default::default(),
            elf: Vec::new(),
            dbg_elf: Vec::new(),
            stap_syms: Default::default(),
            functions: Default::default(),
            inlines: Default::default(),
            globals: Default::default(),
            pie,
            build_id,
            sdt: Vec::new(),
            missing: None,
            fde_tables: Default::default(),
            exec_ranges: exec_ranges(&file),
            fn_ranges: Default::default(),
            addr_size,
            i386,
            type_depth: std::sync::atomic::AtomicU32::new(0),
            type_cache: Default::default(),
            abbrevs: Default::default(),
        };
        timing(|| "symbols read".into());
        if let Some(scan) = abbrev_scan {
            di.names.set_abbrev_scan(scan);
        }
        di.sdt = sdt::read_notes(&file, pie);
        if has_dwarf {
            di.load_units().map_err(|e| derr(e.to_string()))?;
        }
        if di.units.is_empty() {
            if require_dwarf {
                return Err(no_debug(searched));
            }
            if !has_dwarf {
                // The explanation (which asks dpkg) is only written when asked for.
                di.missing = Some(MissingDebug {
                    searched,
                    text: Default::default(),
                });
            }
            di.functions = std::sync::OnceLock::from(symbol_functions(&file));
            di.sym_by_addr = std::sync::OnceLock::from(HashMap::new());
            di.elf = bytes.bytes;
            di.dbg_elf = separate.map(|(_, b)| b.bytes).unwrap_or_default();
            di.inlines = std::sync::OnceLock::from(Vec::new());
            di.globals = std::sync::OnceLock::from(Vec::new());
            return Ok(di);
        }
        timing(|| format!("{} unit headers, symbols by address", di.units.len()));
        progress(&format!(
            "indexing {} compilation units of {}",
            di.units.len(),
            path.display()
        ));
        di.unit_scans = (0..di.units.len()).map(|_| Default::default()).collect();
        di.elf = bytes.bytes;
        di.dbg_elf = separate.map(|(_, b)| b.bytes).unwrap_or_default();
        Ok(di)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for `ET_DYN` files (PIE executables and shared libraries): their link-time
    /// addresses are relocated by a load bias.
    pub fn is_pie(&self) -> bool {
        self.pie
    }

    /// Bytes in an address: 8, or 4 for 32-bit files.
    pub fn address_size(&self) -> u8 {
        self.addr_size
    }

    /// Maps a DWARF register number of this file to the x86_64 numbering of
    /// [`capture_plan::DwarfReg`]. i386 numbers eax ecx edx ebx esp ebp esi edi eip
    /// as 0-8.
    pub fn plan_reg(&self, r: u16) -> u16 {
        if !self.i386 {
            return r;
        }
        match r {
            0 => 0,
            1 => 2,
            2 => 1,
            3 => 3,
            4 => 7,
            5 => 6,
            6 => 4,
            7 => 5,
            8 => 16,
            other => other + 100,
        }
    }

    /// The GNU build-id note, if present.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The SDT (USDT) probes compiled into the file, in note order.
    pub fn sdt_probes(&self) -> &[SdtProbe] {
        &self.sdt
    }

    /// Every out-of-line function with code, in DWARF order.
    pub fn functions(&self) -> &[Function] {
        self.functions.get_or_init(|| self.materialize(false))
    }

    /// Every inlined instance, in DWARF order.
    pub fn inline_instances_all(&self) -> &[Function] {
        self.inlines.get_or_init(|| self.materialize(true))
    }

    /// Named static variables.
    pub(crate) fn globals(&self) -> &[(String, DieRef)] {
        self.globals.get_or_init(|| {
            self.full_scan()
                .globals
                .iter()
                .filter_map(|d| Some((self.die_name(*d)?, *d)))
                .collect()
        })
    }

    /// The ELF file, parsed again from its bytes (cheap: headers only).
    fn elf_file(&self) -> Option<object::File<'_>> {
        object::File::parse(&*self.elf).ok()
    }

    /// The separate debug file, parsed again from its bytes, if there is one.
    fn dbg_file(&self) -> Option<object::File<'_>> {
        if self.dbg_elf.is_empty() {
            return None;
        }
        object::File::parse(&*self.dbg_elf).ok()
    }

    /// Defined text symbols by address (both symbol tables), made on first use.
    fn sym_by_addr(&self) -> &HashMap<u64, Vec<String>> {
        self.sym_by_addr.get_or_init(|| {
            self.elf_file()
                .map(|f| text_symbols(&f))
                .unwrap_or_default()
        })
    }

    /// The addresses of the defined text symbols named `name`.
    fn text_symbol_addrs(&self, name: &str) -> Vec<u64> {
        if let Some(m) = self.sym_by_addr.get() {
            let mut v: Vec<u64> = m
                .iter()
                .filter(|(_, ns)| ns.iter().any(|n| n == name))
                .map(|(a, _)| *a)
                .collect();
            v.sort_unstable();
            return v;
        }
        use object::{ObjectSymbol, SymbolKind};
        let Some(file) = self.elf_file() else {
            return Vec::new();
        };
        let mut v: Vec<u64> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && !s.is_undefined())
            .filter(|s| s.name_bytes().is_ok_and(|n| n == name.as_bytes()))
            .map(|s| s.address())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Text symbols sorted by start (see `symbols`), made on first use.
    fn symbols(&self) -> &[(u64, u64, String)] {
        self.symbols.get_or_init(|| {
            self.elf_file()
                .map(|f| sorted_symbols(&f))
                .unwrap_or_default()
        })
    }

    /// All found functions (or all inlined instances) as [`Function`]s, in DWARF order.
    fn materialize(&self, inlined: bool) -> Vec<Function> {
        let scan = self.full_scan();
        // Every function asks for its aliases: the table, not a walk per function.
        let _ = self.sym_by_addr();
        scan.found
            .iter()
            .zip(&scan.slots)
            .filter(|(fd, _)| fd.inlined == inlined)
            .filter_map(|(fd, cell)| self.slot(scan, fd, cell).cloned())
            .collect()
    }

    /// The function of a found DIE, made on first use.
    fn slot<'a>(
        &'a self,
        scan: &'a UnitScan,
        fd: &Found,
        cell: &'a std::sync::OnceLock<Option<Function>>,
    ) -> Option<&'a Function> {
        let _ = scan;
        cell.get_or_init(|| {
            let mut f = self.make_function(fd.die.unit, fd)?;
            if !f.inlined {
                let names = match self.sym_by_addr.get() {
                    Some(m) => m.get(&f.entry_pc).cloned().unwrap_or_default(),
                    None => self
                        .elf_file()
                        .map(|file| text_symbols_at(&file, f.entry_pc))
                        .unwrap_or_default(),
                };
                let mut a: Vec<String> = names.into_iter().filter(|n| *n != f.name).collect();
                a.sort();
                a.dedup();
                f.aliases = a;
            }
            Some(f)
        })
        .as_ref()
    }

    /// The raw name of a found function: its own `DW_AT_name`, or its abstract
    /// origin's (or specification's) when that is a named subprogram of the same unit.
    fn found_name(&self, scan: &UnitScan, fd: &Found) -> Option<Vec<u8>> {
        let unit = self.unit(fd.die.unit)?;
        let v = match &fd.name {
            Some(v) => v.clone(),
            None => match &fd.origin {
                Some(AttributeValue::UnitRef(o)) => scan.names.get(&(fd.die.unit, o.0))?.clone(),
                _ => return None,
            },
        };
        let s = self.dwarf.attr_string(unit, v).ok()?;
        Some(s.to_slice().ok()?.into_owned())
    }

    /// The functions (or inlined instances) of a scan whose name is exactly `name`,
    /// or, for out-of-line ones, that have a symbol `name` at their low pc. `None`
    /// when some function's name could not be read quickly (then the caller falls
    /// back to the full list).
    fn named_in<'a>(
        &'a self,
        scan: &'a UnitScan,
        name: &str,
        inlined: bool,
        sym_addrs: &[u64],
        follow: bool,
        out: &mut Vec<&'a Function>,
    ) -> Option<()> {
        // With `follow`, origins in other units (LTO) are followed, each once: the
        // quick path scans few units. The full list has all its functions made.
        let mut cross: Option<HashMap<DieRef, Option<String>>> = follow.then(HashMap::new);
        for (fd, cell) in scan.found.iter().zip(&scan.slots) {
            if fd.inlined != inlined {
                continue;
            }
            let own = match (self.found_name(scan, fd), &fd.origin, cross.as_mut()) {
                (Some(n), _, _) => Some(n),
                (None, Some(v @ AttributeValue::DebugInfoRef(_)), Some(cache)) => {
                    match self.resolve_ref(fd.die.unit, v.clone()) {
                        Some(d) => cache
                            .entry(d)
                            .or_insert_with(|| self.die_name(d))
                            .clone()
                            .map(String::into_bytes),
                        // A reference to nowhere names nothing (nor in the full list).
                        None => None,
                    }
                }
                _ => None,
            };
            let hit = match own {
                Some(n) => {
                    n == name.as_bytes() || fd.low_addr.is_some_and(|a| sym_addrs.contains(&a))
                }
                // Origins in forms not followed here, or unreadable names: no shortcut.
                None if !matches!(
                    (&fd.origin, &cross),
                    (None | Some(AttributeValue::UnitRef(_)), _)
                        | (Some(AttributeValue::DebugInfoRef(_)), Some(_))
                ) =>
                {
                    return None
                }
                None => false,
            };
            if hit {
                if let Some(f) = self.slot(scan, fd, cell) {
                    out.push(f);
                }
            }
        }
        Some(())
    }

    /// Functions named `name` without scanning every unit: only the units whose
    /// top-level subprograms include that name (a function's inlined instances live
    /// in units that declare it), those whose code holds a symbol of that name, and
    /// those the quick look could not vouch for.
    fn found_named(&self, name: &str, inlined: bool) -> Option<Vec<&Function>> {
        let sym_addrs: Vec<u64> = if inlined {
            Vec::new()
        } else {
            self.text_symbol_addrs(name)
        };
        let mut out = Vec::new();
        if let Some(full) = self.full.get() {
            self.named_in(full, name, inlined, &sym_addrs, false, &mut out)?;
            return Some(out);
        }
        let units = self.name_candidates(name, &sym_addrs);
        timing(|| format!("{name}: {} candidate units", units.len()));
        self.scan_on_threads(&units);
        for u in units {
            let scan = self
                .unit_scans
                .get(u)?
                .get_or_init(|| self.scan_units(u..u + 1));
            self.named_in(scan, name, inlined, &sym_addrs, true, &mut out)?;
        }
        timing(|| format!("{name}: {} found", out.len()));
        Some(out)
    }

    /// Scans the units not scanned yet of `units`, on a few threads when they are
    /// large (LTO programs name many candidates). A lost thread leaves its units to
    /// be scanned on first use.
    fn scan_on_threads(&self, units: &[usize]) {
        let todo: Vec<usize> = units
            .iter()
            .copied()
            .filter(|&u| self.unit_scans.get(u).is_some_and(|c| c.get().is_none()))
            .collect();
        let lens: Vec<usize> = todo
            .iter()
            .map(|&u| self.units[u].header.length_including_self())
            .collect();
        let bounds = split_by_size(&lens, sum_sizes(&lens));
        if bounds.len() <= 2 {
            return;
        }
        std::thread::scope(|s| {
            for w in bounds.windows(2) {
                let part = &todo[w[0]..w[1]];
                s.spawn(move || {
                    for &u in part {
                        self.unit_scans[u].get_or_init(|| self.scan_units(u..u + 1));
                    }
                });
            }
        });
    }

    /// The inlined instances of the function `f` (same abstract origin).
    pub fn inline_instances(&self, f: &Function) -> Vec<&Function> {
        self.inline_instances_all()
            .iter()
            .filter(|i| i.origin == f.origin)
            .collect()
    }

    /// Reads the unit headers only; units are parsed on first use ([`Self::unit`]).
    fn load_units(&mut self) -> gimli::Result<()> {
        let mut iter = self.dwarf.units();
        while let Some(header) = iter.next()? {
            self.units.push(UnitData {
                header,
                parsed: std::sync::OnceLock::new(),
                files: std::sync::OnceLock::new(),
                lines: std::sync::OnceLock::new(),
            });
        }
        Ok(())
    }

    /// Unit `ui`, parsed on first use; `None` if it does not exist or is malformed.
    fn parsed(&self, ui: usize) -> Option<&ParsedUnit> {
        let u = self.units.get(ui)?;
        u.parsed
            .get_or_init(|| self.parse_unit(u.header.clone()).ok())
            .as_ref()
    }

    /// The gimli unit `ui` (see [`Self::parsed`]).
    fn unit(&self, ui: usize) -> Option<&gimli::Unit<R>> {
        self.parsed(ui).map(|p| &p.unit)
    }

    /// The name of unit `ui` (`DW_AT_name` of its root), empty if unknown.
    fn unit_name(&self, ui: usize) -> &str {
        self.parsed(ui).map_or("", |p| p.name.as_str())
    }

    /// The abbreviations of a unit, parsed once per table.
    fn abbrevs_of(
        &self,
        header: &gimli::UnitHeader<R>,
    ) -> gimli::Result<Arc<gimli::Abbreviations>> {
        let off = header.debug_abbrev_offset().0;
        let cached = self
            .abbrevs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&off)
            .cloned();
        let abbrevs = match cached {
            Some(a) => a,
            None => {
                let a = Arc::new(header.abbreviations(&self.dwarf.debug_abbrev)?);
                self.abbrevs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(off, a.clone());
                a
            }
        };
        Ok(abbrevs)
    }

    fn parse_unit(&self, header: gimli::UnitHeader<R>) -> gimli::Result<ParsedUnit> {
        let abbrevs = self.abbrevs_of(&header)?;
        let unit = gimli::Unit::new_with_abbreviations(&self.dwarf, header, abbrevs)?;
        let mut name = String::new();
        let mut optimized = false;
        {
            let mut cursor = unit.entries();
            if let Some(root) = cursor.next_dfs()? {
                if let Some(v) = root.attr_value(gimli::DW_AT_name) {
                    name = self.attr_str(&unit, v);
                }
                if let Some(v) = root.attr_value(gimli::DW_AT_producer) {
                    optimized = producer_optimized(&self.attr_str(&unit, v));
                }
            }
        }
        Ok(ParsedUnit {
            unit,
            name,
            optimized,
        })
    }

    fn attr_str(&self, unit: &gimli::Unit<R>, v: AttributeValue<R>) -> String {
        match self.dwarf.attr_string(unit, v) {
            Ok(s) => String::from_utf8_lossy(&s.to_slice().unwrap_or_default()).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// The line program's files of unit `ui`.
    fn files(&self, ui: usize) -> &[Option<String>] {
        match self.units.get(ui) {
            Some(u) => u.files.get_or_init(|| match self.unit(ui) {
                Some(unit) => self.read_files(unit),
                None => Vec::new(),
            }),
            None => &[],
        }
    }

    fn read_files(&self, unit: &gimli::Unit<R>) -> Vec<Option<String>> {
        let Some(program) = unit.line_program.as_ref() else {
            return Vec::new();
        };
        let header = program.header();
        let comp_dir = unit
            .comp_dir
            .as_ref()
            .map(|d| String::from_utf8_lossy(&d.to_slice().unwrap_or_default()).into_owned());
        let mut files = Vec::new();
        let count = header.file_names().len() as u64 + 1;
        for i in 0..count {
            let Some(entry) = header.file(i) else {
                files.push(None);
                continue;
            };
            // As libdw names files (and so stap prints them, `./libio/genops.c` and
            // `../libio/libioP.h` apart): the entry's directory as written, then `/`
            // and the name; DWARF 4's directory 0 is the compilation directory. A
            // relative directory is not joined to the compilation directory, and
            // nothing is normalised.
            let name = self.attr_str(unit, entry.path_name());
            if name.starts_with('/') {
                files.push(Some(name));
                continue;
            }
            let dir = if header.version() < 5 && entry.directory_index() == 0 {
                comp_dir.clone()
            } else {
                entry.directory(header).map(|d| self.attr_str(unit, d))
            };
            files.push(Some(match dir {
                Some(d) if !d.is_empty() => format!("{}/{name}", d.trim_end_matches('/')),
                _ => name,
            }));
        }
        files
    }

    /// The line rows of unit `ui` (read once; a malformed program yields the rows
    /// before the error).
    fn lines(&self, ui: usize) -> &[LineRow] {
        let Some(u) = self.units.get(ui) else {
            return &[];
        };
        u.lines.get_or_init(|| {
            let mut lines = Vec::new();
            let Some(program) = self.unit(ui).and_then(|u| u.line_program.clone()) else {
                return lines;
            };
            let mut rows = program.rows();
            while let Ok(Some((_, row))) = rows.next_row() {
                lines.push(LineRow {
                    addr: row.address(),
                    file: row.file_index() as usize,
                    line: row.line().map_or(0, |l| l.get() as u32),
                    is_stmt: row.is_stmt(),
                    end_seq: row.end_sequence(),
                });
            }
            lines
        })
    }

    fn entry(&self, d: DieRef) -> Option<gimli::DebuggingInformationEntry<R>> {
        self.unit(d.unit)?.entry(UnitOffset(d.offset)).ok()
    }

    /// Resolves a reference attribute to a DIE in this file.
    fn resolve_ref(&self, unit: usize, v: AttributeValue<R>) -> Option<DieRef> {
        match v {
            AttributeValue::UnitRef(o) => Some(DieRef { unit, offset: o.0 }),
            AttributeValue::DebugInfoRef(o) => {
                // Units are in offset order: the last one starting at or before o.
                let i = self
                    .units
                    .partition_point(|u| u.header.offset().0 <= o.0)
                    .checked_sub(1)?;
                let uo = o.to_unit_offset(&self.units[i].header)?;
                Some(DieRef {
                    unit: i,
                    offset: uo.0,
                })
            }
            _ => None,
        }
    }

    /// An attribute of a DIE, following `abstract_origin` and `specification` links.
    fn attr_follow(&self, d: DieRef, at: gimli::DwAt) -> Option<(DieRef, AttributeValue<R>)> {
        let mut cur = d;
        for _ in 0..8 {
            let e = self.entry(cur)?;
            if let Some(v) = e.attr_value(at) {
                return Some((cur, v));
            }
            let next = e
                .attr_value(gimli::DW_AT_abstract_origin)
                .or_else(|| e.attr_value(gimli::DW_AT_specification))?;
            cur = self.resolve_ref(cur.unit, next)?;
        }
        None
    }

    fn die_name(&self, d: DieRef) -> Option<String> {
        let (at, v) = self.attr_follow(d, gimli::DW_AT_name)?;
        Some(self.attr_str(self.unit(at.unit)?, v))
    }

    fn file_name(&self, unit: usize, idx: u64) -> Option<String> {
        self.files(unit).get(idx as usize).cloned().flatten()
    }

    fn decl(&self, d: DieRef) -> (Option<String>, u32) {
        let file = self
            .attr_follow(d, gimli::DW_AT_decl_file)
            .and_then(|(at, v)| file_index(v).and_then(|i| self.file_name(at.unit, i)));
        let line = self
            .attr_follow(d, gimli::DW_AT_decl_line)
            .and_then(|(_, v)| v.udata_value())
            .unwrap_or(0) as u32;
        (file, line)
    }

    fn die_ranges(&self, d: DieRef) -> Vec<(u64, u64)> {
        let mut out = self.die_ranges_listed(d);
        out.sort();
        out
    }

    /// The ranges in DWARF order: for a function split into hot and cold parts the
    /// first listed range starts at its entry, whichever part has the lower address.
    fn die_ranges_listed(&self, d: DieRef) -> Vec<(u64, u64)> {
        let (Some(e), Some(unit)) = (self.entry(d), self.unit(d.unit)) else {
            return Vec::new();
        };
        self.ranges_of(unit, &e)
    }

    /// The address ranges of a DIE (`low_pc`/`high_pc` or `ranges`), non-empty ones
    /// in DWARF order. gimli's own `die_ranges` adds a `high_pc` offset without
    /// overflow checking; hostile DWARF must not make that panic in debug builds.
    fn ranges_of(
        &self,
        unit: &gimli::Unit<R>,
        e: &gimli::DebuggingInformationEntry<R>,
    ) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut low = None;
        let mut high = None;
        for attr in e.attrs() {
            match attr.name() {
                gimli::DW_AT_low_pc => {
                    low = self.dwarf.attr_address(unit, attr.value()).ok().flatten();
                }
                gimli::DW_AT_high_pc => {
                    high = Some(match attr.value() {
                        AttributeValue::Udata(size) => Err(size),
                        v => match self.dwarf.attr_address(unit, v).ok().flatten() {
                            Some(a) => Ok(a),
                            None => continue,
                        },
                    });
                }
                gimli::DW_AT_ranges => {
                    if let Ok(Some(mut it)) = self.dwarf.attr_ranges(unit, attr.value()) {
                        while let Ok(Some(r)) = it.next() {
                            if r.end > r.begin {
                                out.push((r.begin, r.end));
                            }
                        }
                        return out;
                    }
                }
                _ => {}
            }
        }
        if let (Some(begin), Some(h)) = (low, high) {
            let end = match h {
                Ok(a) => Some(a),
                Err(size) => begin.checked_add(size),
            };
            if let Some(end) = end.filter(|e| *e > begin) {
                out.push((begin, end));
            }
        }
        out
    }

    /// The scan of every unit, made once (on several threads for large files).
    fn full_scan(&self) -> &UnitScan {
        self.full.get_or_init(|| {
            // Units are independent: scan them on a few threads and concatenate in
            // unit order, so the result does not depend on the thread count.
            let n = self.units.len();
            let lens: Vec<usize> = self
                .units
                .iter()
                .map(|u| u.header.length_including_self())
                .collect();
            let bounds = split_by_size(&lens, sum_sizes(&lens));
            let parts: Vec<UnitScan> = if bounds.len() <= 2 {
                vec![self.scan_units(0..n)]
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<_> = bounds
                        .windows(2)
                        .map(|w| {
                            let r = w[0]..w[1];
                            s.spawn(move || self.scan_units(r))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_default())
                        .collect()
                })
            };
            let mut all = UnitScan::default();
            for mut p in parts {
                all.found.append(&mut p.found);
                all.globals.append(&mut p.globals);
                all.names.extend(p.names);
            }
            all.slots = (0..all.found.len())
                .map(|_| std::sync::OnceLock::new())
                .collect();
            all
        })
    }

    /// Scans the DIEs of some units for functions, inlined instances and static
    /// variables. Only DIEs of those tags have their attributes decoded; all others
    /// are skipped over, which is what makes opening large DWARF quick. A malformed
    /// unit contributes what was read before the error.
    fn scan_units(&self, units: std::ops::Range<usize>) -> UnitScan {
        let mut scan = UnitScan::default();
        for ui in units {
            let mut names = HashMap::new();
            let _ = self.scan_unit(ui, &mut scan.found, &mut scan.globals, &mut names);
            scan.names
                .extend(names.into_iter().map(|(o, v)| ((ui, o), v)));
        }
        scan.slots = (0..scan.found.len())
            .map(|_| std::sync::OnceLock::new())
            .collect();
        scan
    }

    fn scan_unit(
        &self,
        ui: usize,
        found: &mut Vec<Found>,
        globals: &mut Vec<DieRef>,
        names: &mut HashMap<usize, AttributeValue<R>>,
    ) -> gimli::Result<()> {
        let Some(unit) = self.unit(ui) else {
            return Ok(());
        };
        let mut raw = unit.entries_raw(None)?;
        // Stack of enclosing concrete subprograms by depth, for inlined instances.
        let mut subprogram_stack: Vec<(isize, DieRef)> = Vec::new();
        while !raw.is_empty() {
            let depth = raw.next_depth();
            let offset = raw.next_offset();
            let Some(abbrev) = raw.read_abbreviation()? else {
                continue;
            };
            let tag = abbrev.tag();
            let is_fn = tag == gimli::DW_TAG_subprogram || tag == gimli::DW_TAG_inlined_subroutine;
            if !is_fn && tag != gimli::DW_TAG_variable {
                raw.skip_attributes(abbrev.attributes())?;
                continue;
            }
            while subprogram_stack.last().is_some_and(|(d, _)| *d >= depth) {
                subprogram_stack.pop();
            }
            let d = DieRef {
                unit: ui,
                offset: offset.0,
            };
            let mut has_code = false;
            let mut location = None;
            let mut has_const = false;
            let mut origin = None;
            let mut entry_pc = None;
            let mut low_pc = None;
            let mut call_file = None;
            let mut call_line = None;
            let mut name = None;
            let mut spec_ref = None;
            for spec in abbrev.attributes() {
                let attr = raw.read_attribute(*spec)?;
                match attr.name() {
                    gimli::DW_AT_name => name = Some(attr.value()),
                    gimli::DW_AT_specification => spec_ref = Some(attr.value()),
                    gimli::DW_AT_low_pc => {
                        has_code = true;
                        low_pc = Some(attr.value());
                    }
                    gimli::DW_AT_ranges => has_code = true,
                    gimli::DW_AT_location => location = Some(attr.value()),
                    gimli::DW_AT_const_value => has_const = true,
                    gimli::DW_AT_abstract_origin => origin = Some(attr.value()),
                    gimli::DW_AT_entry_pc => entry_pc = Some(attr.value()),
                    gimli::DW_AT_call_file => call_file = file_index(attr.value()),
                    gimli::DW_AT_call_line => call_line = attr.value().udata_value(),
                    _ => {}
                }
            }
            if !is_fn {
                if (subprogram_stack.is_empty()
                    || location.as_ref().is_some_and(is_static_location))
                    && (location.is_some() || has_const)
                {
                    globals.push(d);
                }
                continue;
            }
            if let (gimli::DW_TAG_subprogram, Some(n)) = (tag, &name) {
                names.insert(offset.0, n.clone());
            }
            if !has_code {
                continue;
            }
            if tag == gimli::DW_TAG_subprogram {
                subprogram_stack.push((depth, d));
            }
            let low_addr = match &low_pc {
                Some(AttributeValue::Addr(a)) => Some(*a),
                Some(v) => self.dwarf.attr_address(unit, v.clone()).ok().flatten(),
                None => None,
            };
            let frame = subprogram_stack.last().map_or(d, |(_, f)| *f);
            found.push(Found {
                die: d,
                inlined: tag == gimli::DW_TAG_inlined_subroutine,
                name,
                low_addr,
                origin: origin.clone().or(spec_ref),
                abstract_origin: origin,
                entry_pc,
                call_file,
                call_line,
                frame,
            });
        }
        Ok(())
    }

    fn make_function(&self, ui: usize, fd: &Found) -> Option<Function> {
        let d = fd.die;
        let inlined = fd.inlined;
        let name = self.die_name(d)?;
        let listed = self.die_ranges_listed(d);
        let &(first, _) = listed.first()?;
        let mut ranges = listed;
        ranges.sort();
        let low = ranges[0].0;
        let entry_pc = match fd.entry_pc.clone() {
            Some(AttributeValue::Addr(a)) => a,
            Some(v) => match self.dwarf.attr_address(self.unit(ui)?, v.clone()) {
                Ok(Some(a)) => a,
                _ => match v.udata_value() {
                    // DWARF 5 allows entry_pc as a constant offset from low_pc.
                    Some(off) => low.wrapping_add(off),
                    None => low,
                },
            },
            None => {
                // low_pc is the entry when present; for ranges-only DIEs it is
                // the first listed range's start (as gdb takes it).
                fd.low_addr
                    // A low_pc outside the ranges is a base address, not code.
                    .filter(|a| ranges.iter().any(|r| r.0 <= *a && *a < r.1))
                    .unwrap_or(first)
            }
        };
        let origin_ref = fd
            .abstract_origin
            .clone()
            .and_then(|v| self.resolve_ref(ui, v))
            .unwrap_or(d);
        let (mut decl_file, mut decl_line) = self.decl(d);
        if decl_file.is_none() && !inlined {
            // Assembly functions (gas's DIEs) have no declaration: stap names them by
            // their unit and the line of their entry.
            if let Some((_, line)) = self.line_in_unit(ui, entry_pc) {
                decl_file = Some(self.unit_name(ui).to_string());
                decl_line = line;
            }
        }
        let return_type = if inlined {
            self.attr_follow(origin_ref, gimli::DW_AT_type)
        } else {
            self.attr_follow(d, gimli::DW_AT_type)
        }
        .and_then(|(at, v)| self.resolve_ref(at.unit, v));
        let call_site = match (fd.call_file, fd.call_line) {
            (Some(f), Some(l)) if inlined => {
                Some((self.file_name(ui, f).unwrap_or_default(), l as u32))
            }
            _ => None,
        };
        Some(Function {
            name,
            low_pc: low,
            entry_pc,
            ranges,
            decl_file,
            decl_line,
            cu_name: self.unit_name(ui).to_string(),
            optimized: self.parsed(ui).is_some_and(|p| p.optimized),
            inlined,
            call_site,
            die: d,
            origin: origin_ref,
            frame_die: fd.frame,
            return_type,
            aliases: Vec::new(),
        })
    }

    /// Functions (out-of-line) matching a stap function pattern `NAME[@FILE[:LINE]]`,
    /// where NAME and FILE may use `*` and `?`. FILE matches the declaration file's
    /// full path, or any trailing run of its path components; LINE is the declaration
    /// line. Sorted by address, without duplicates.
    pub fn match_functions(&self, pattern: &str) -> Vec<&Function> {
        let pat = FuncPattern::parse(pattern);
        let mut out: Vec<&Function> = match self.quick_candidates(&pat, false) {
            Some(c) => c.into_iter().filter(|f| pat.matches(f)).collect(),
            None => self.functions().iter().filter(|f| pat.matches(f)).collect(),
        };
        out.sort_by_key(|f| (f.entry_pc, f.name.clone()));
        out.dedup_by_key(|f| f.entry_pc);
        out
    }

    /// Inlined instances matching a stap function pattern (see [`Self::match_functions`]).
    pub fn match_inlines(&self, pattern: &str) -> Vec<&Function> {
        let pat = FuncPattern::parse(pattern);
        let mut out: Vec<&Function> = match self.quick_candidates(&pat, true) {
            Some(c) => c.into_iter().filter(|f| pat.matches(f)).collect(),
            None => self
                .inline_instances_all()
                .iter()
                .filter(|f| pat.matches(f))
                .collect(),
        };
        out.sort_by_key(|f| (f.entry_pc, f.name.clone()));
        // Nested inlined functions can start at one address: stap keeps each name.
        out.dedup_by(|a, b| a.entry_pc == b.entry_pc && a.name == b.name);
        out
    }

    /// For a pattern whose name has no wildcard, the functions that can match it,
    /// found without making every function of the file.
    fn quick_candidates(&self, pat: &FuncPattern<'_>, inlined: bool) -> Option<Vec<&Function>> {
        if self.units.is_empty() || pat.name.contains(['*', '?']) {
            return None;
        }
        self.found_named(pat.name, inlined)
    }

    /// Function names close to `name` (edit distance), best first, at most five.
    pub fn close_matches(&self, name: &str) -> Vec<String> {
        let base = name.split('@').next().unwrap_or(name);
        let mut names: Vec<&str> = self
            .functions()
            .iter()
            .chain(self.inline_instances_all().iter())
            .flat_map(|f| {
                std::iter::once(f.name.as_str()).chain(f.aliases.iter().map(String::as_str))
            })
            .collect();
        names.sort();
        names.dedup();
        close_matches(base, &names)
    }

    /// The address stap would probe for `.function("f")`.
    ///
    /// Unoptimised code (`-O0`) copies parameters from registers into the stack frame in
    /// the prologue, and its DWARF describes them at their frame slots for the whole
    /// function; at the entry pc those slots are not written yet. So, like gdb and stap,
    /// we skip the prologue: the address of the second line-table row of the function
    /// (the first statement of the body). Optimised code has no such prologue, and its
    /// location lists describe parameters exactly from the entry pc on (in the ABI
    /// registers, and `DW_OP_entry_value` is exact there), while "after the prologue"
    /// is ill-defined once instructions are scheduled; there we use the entry pc.
    pub fn probe_addr(&self, f: &Function) -> u64 {
        if f.optimized || f.inlined {
            return f.entry_pc;
        }
        self.skip_prologue(f).unwrap_or(f.entry_pc)
    }

    fn skip_prologue(&self, f: &Function) -> Option<u64> {
        let (lo, hi) = *f
            .ranges
            .iter()
            .find(|r| r.0 <= f.entry_pc && f.entry_pc < r.1)?;
        let mut rows: Vec<&LineRow> = self
            .lines(f.die.unit)
            .iter()
            .filter(|r| !r.end_seq && r.addr >= lo && r.addr < hi && r.line != 0)
            .collect();
        rows.sort_by_key(|r| r.addr);
        let first = rows.iter().find(|r| r.addr == f.entry_pc)?;
        // The body starts at the first statement row past the entry whose line differs
        // from the opening line (gcc may repeat the opening line's row within the
        // prologue); fall back to any later row.
        rows.iter()
            .find(|r| r.addr > f.entry_pc && r.is_stmt && r.line != first.line)
            .or_else(|| rows.iter().find(|r| r.addr > f.entry_pc && r.is_stmt))
            .map(|r| r.addr)
    }

    /// Addresses for `FILE:LINE`: for each function containing code of that line, the
    /// lowest statement address of the line inside it. `file` matches like a stap FILE
    /// pattern (full path, or trailing path components, with wildcards).
    pub fn line_addrs(&self, file: &str, line: u32) -> Vec<u64> {
        let mut hits = Vec::new();
        for ui in 0..self.units.len() {
            for r in self.lines(ui) {
                if r.end_seq || r.line != line || !r.is_stmt {
                    continue;
                }
                let Some(Some(path)) = self.files(ui).get(r.file) else {
                    continue;
                };
                if file_matches(file, path) {
                    hits.push((ui, r.addr));
                }
            }
        }
        let mut best: HashMap<u64, u64> = HashMap::new();
        for (_, addr) in hits {
            let key = self.function_at(addr).map_or(addr, |f| f.low_pc);
            let e = best.entry(key).or_insert(addr);
            *e = (*e).min(addr);
        }
        let mut out: Vec<u64> = best.into_values().collect();
        out.sort();
        out
    }

    /// The lines of `file` (a stap FILE pattern, as for [`Self::line_addrs`]) that
    /// have statement rows, sorted: what `statement("FUNC@FILE:*")` expands to.
    pub fn file_lines(&self, file: &str) -> Vec<u32> {
        let mut out = std::collections::BTreeSet::new();
        for ui in 0..self.units.len() {
            let files = self.files(ui);
            let mut matching: HashMap<usize, bool> = HashMap::new();
            for r in self.lines(ui) {
                if r.end_seq || !r.is_stmt || r.line == 0 {
                    continue;
                }
                let m = *matching.entry(r.file).or_insert_with(
                    || matches!(files.get(r.file), Some(Some(p)) if file_matches(file, p)),
                );
                if m {
                    out.insert(r.line);
                }
            }
        }
        out.into_iter().collect()
    }

    /// The source line (file, line) of an address, if the line table has it.
    pub fn line_at(&self, addr: u64) -> Option<(String, u32)> {
        // The unit of the function around the address first: reading every unit's
        // line table is what makes a lookup in a large program slow.
        let first = self.function_at(addr).map(|f| f.die.unit);
        if let Some(ui) = first.filter(|u| *u < self.units.len()) {
            if let Some(r) = self.line_in_unit(ui, addr) {
                return Some(r);
            }
        }
        (0..self.units.len())
            .filter(|u| Some(*u) != first)
            .find_map(|ui| self.line_in_unit(ui, addr))
    }

    fn line_in_unit(&self, ui: usize, addr: u64) -> Option<(String, u32)> {
        let mut prev: Option<&LineRow> = None;
        for r in self.lines(ui) {
            if let Some(p) = prev {
                if !p.end_seq && p.addr <= addr && addr < r.addr {
                    let f = self.files(ui).get(p.file).cloned().flatten()?;
                    return Some((f, p.line));
                }
            }
            prev = Some(r);
        }
        None
    }

    /// The ELF symbol (either symbol table) whose extent contains `addr`: its name and
    /// start address. Symbols without a size extend to the next symbol.
    pub fn symbol_at(&self, addr: u64) -> Option<(&str, u64)> {
        let symbols = self.symbols();
        let i = symbols.partition_point(|s| s.0 <= addr);
        let (start, end, name) = symbols.get(i.checked_sub(1)?)?;
        let end = if *end > *start {
            *end
        } else {
            symbols.get(i).map_or(u64::MAX, |s| s.0)
        };
        (addr < end).then_some((name.as_str(), *start))
    }

    /// The innermost out-of-line function containing `addr`.
    pub fn function_at(&self, addr: u64) -> Option<&Function> {
        let funcs = self.functions();
        // (begin, end, function index) sorted by begin, with the running maximum of
        // `end`: a backwards walk from the last begin <= addr can stop as soon as no
        // earlier range reaches addr. Symbolising stacks asks this for every frame.
        let idx = self.fn_ranges.get_or_init(|| {
            let mut v: Vec<(u64, u64, usize)> = funcs
                .iter()
                .enumerate()
                .flat_map(|(i, f)| f.ranges.iter().map(move |r| (r.0, r.1, i)))
                .collect();
            v.sort_unstable();
            let mut max_end = 0u64;
            v.into_iter()
                .map(|(b, e, i)| {
                    max_end = max_end.max(e);
                    (b, e, i, max_end)
                })
                .collect()
        });
        let mut best: Option<&Function> = None;
        let upto = idx.partition_point(|r| r.0 <= addr);
        for &(_, e, i, max_end) in idx[..upto].iter().rev() {
            if max_end <= addr {
                break;
            }
            if addr < e {
                let f = &funcs[i];
                if best.is_none_or(|b| span(&f.ranges) < span(&b.ranges)) {
                    best = Some(f);
                }
            }
        }
        best
    }

    /// The innermost scope (function or inlined instance) containing `addr`.
    pub fn scope_at(&self, addr: u64) -> Option<&Function> {
        self.functions()
            .iter()
            .chain(self.inline_instances_all().iter())
            .filter(|f| f.ranges.iter().any(|r| r.0 <= addr && addr < r.1))
            .min_by_key(|f| span(&f.ranges))
    }
}

fn searched(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if v.is_empty() {
        return " (searched the file itself; it has no build-id or .gnu_debuglink to find a separate debug file by)".to_string();
    }
    format!(" (searched the file itself, {})", v.join(", "))
}

/// A progress callback: receives short human-readable messages while large files
/// are read and indexed.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

static PROGRESS: std::sync::RwLock<Option<Progress>> = std::sync::RwLock::new(None);

/// Sets (or clears) the callback that hears about slow steps (reading a file,
/// indexing its units), for every file opened afterwards.
pub fn set_progress(p: Option<Progress>) {
    *PROGRESS.write().unwrap_or_else(|e| e.into_inner()) = p;
}

/// Tells the progress callback, if any.
pub fn progress(msg: &str) {
    let p = PROGRESS.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(p) = p {
        p(msg);
    }
}

/// With `SNAPTAP_DEBUGINFO_TIMING` set, prints a step of reading debug information
/// and the milliseconds since the first such step to stderr (for profiling start-up).
pub(crate) fn timing(what: impl FnOnce() -> String) {
    static T0: std::sync::OnceLock<Option<std::time::Instant>> = std::sync::OnceLock::new();
    let t0 = T0.get_or_init(|| {
        std::env::var_os("SNAPTAP_DEBUGINFO_TIMING").map(|_| std::time::Instant::now())
    });
    if let Some(t0) = t0 {
        eprintln!(
            "debuginfo: {:8.3} ms  {}",
            t0.elapsed().as_secs_f64() * 1e3,
            what()
        );
    }
}

/// Root of separate debug files, as gdb and elfutils use it.
const DEBUG_ROOT: &str = "/usr/lib/debug";

static DEBUG_DIRS: std::sync::RwLock<Option<Vec<PathBuf>>> = std::sync::RwLock::new(None);

/// Sets the roots searched for separate debug files (build-id and debuglink), in
/// order, for every file opened afterwards. `None` restores the default: the
/// colon-separated list in `SNAPTAP_DEBUG_DIRS` if set, else `/usr/lib/debug`.
pub fn set_debug_dirs(dirs: Option<Vec<PathBuf>>) {
    let mut g = DEBUG_DIRS.write().unwrap_or_else(|e| e.into_inner());
    *g = dirs;
}

/// The roots searched for separate debug files (see [`set_debug_dirs`]).
pub fn debug_dirs() -> Vec<PathBuf> {
    if let Some(d) = DEBUG_DIRS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        return d.clone();
    }
    match std::env::var_os("SNAPTAP_DEBUG_DIRS") {
        Some(v) if !v.is_empty() => std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        _ => vec![PathBuf::from(DEBUG_ROOT)],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The relative path of a build-id debug file: `.build-id/xx/rest.debug`.
fn build_id_rel(id: &[u8]) -> Option<PathBuf> {
    if id.len() < 2 {
        return None;
    }
    let h = hex(id);
    Some(
        Path::new(".build-id")
            .join(&h[..2])
            .join(format!("{}.debug", &h[2..])),
    )
}

/// Finds a separate debug file: `ROOT/.build-id/xx/rest.debug` for each debug root,
/// then the `.gnu_debuglink` name next to the file, in its `.debug/` directory, and
/// under `ROOT/<dir>/`. Records every path tried in `searched`. A candidate from
/// another build (build-id differs, or without build-ids the debuglink CRC differs)
/// is skipped; if no candidate fits but one was rejected, that is an error: using it
/// would give wrong addresses.
fn find_separate_debug(
    file: &object::File<'_>,
    path: &Path,
    roots: &[PathBuf],
    searched: &mut Vec<PathBuf>,
) -> Result<Option<SeparateFile>, Error> {
    let want_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
    let mut candidates = Vec::new();
    if let Some(rel) = want_id.as_deref().and_then(build_id_rel) {
        for r in roots {
            candidates.push(r.join(&rel));
        }
    }
    let mut want_crc = None;
    if let Ok(Some((name, crc))) = file.gnu_debuglink() {
        want_crc = Some(crc);
        let name = String::from_utf8_lossy(name).into_owned();
        let dir = path.parent().unwrap_or(Path::new("/"));
        candidates.push(dir.join(&name));
        candidates.push(dir.join(".debug").join(&name));
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        for r in roots {
            candidates.push(r.join(rel).join(&name));
        }
    }
    let mut rejected = None;
    for c in candidates {
        if c == path || searched.contains(&c) {
            continue;
        }
        searched.push(c.clone());
        let Ok(bytes) = read_image(&c) else {
            continue;
        };
        let Ok(f) = object::File::parse(&*bytes.bytes) else {
            continue;
        };
        if f.section_by_name(".debug_info").is_none() {
            continue;
        }
        let got_id = f.build_id().ok().flatten();
        let mismatch = match (&want_id, got_id) {
            (Some(w), Some(g)) => (w[..] != *g).then(|| (hex(w), hex(g))),
            _ => match want_crc {
                Some(crc) => {
                    // The CRC covers the whole file, not only what was read.
                    let got = std::fs::read(&c).map_or(0, |all| crc32(&all));
                    (got != crc).then(|| (format!("crc {crc:08x}"), format!("crc {got:08x}")))
                }
                None => None,
            },
        };
        match mismatch {
            None => return Ok(Some((c, bytes))),
            Some((expected, found)) => {
                rejected.get_or_insert(Error::BuildIdMismatch {
                    path: path.to_path_buf(),
                    debug: c,
                    expected,
                    found,
                });
            }
        }
    }
    match rejected {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// What would provide the missing debug information of `path`: the Debian package
/// when it can be told (the package owning the file, from dpkg's lists), and the
/// build-id path that package must install.
fn missing_debug_hint(build_id: Option<&[u8]>, path: &Path) -> String {
    let id_path = build_id
        .and_then(build_id_rel)
        .map(|r| Path::new(DEBUG_ROOT).join(r));
    let owner = dpkg_owner(path);
    // Debian's own debug packages for a few well-known ones; others come as
    // automatic -dbgsym packages from the debian-debug archive.
    let pkg = owner.as_deref().map(|o| match o {
        "libc6" => "libc6-dbg".to_string(),
        o if o.starts_with("python3.") && o.ends_with("-minimal") => {
            format!("{}-dbg", o.trim_end_matches("-minimal"))
        }
        o if o.starts_with("libpython3.") => {
            format!(
                "{}-dbg",
                o.trim_start_matches("lib").trim_end_matches("-stdlib")
            )
        }
        o => format!("{o}-dbgsym (or {o}-dbg)"),
    });
    match (id_path, pkg) {
        (Some(p), Some(pkg)) => format!(
            "install {pkg}, the -dbg/-dbgsym package providing {}",
            p.display()
        ),
        (Some(p), None) => format!(
            "install the -dbg/-dbgsym package providing {}, or rebuild with -g",
            p.display()
        ),
        (None, Some(pkg)) => format!("install {pkg}, or rebuild with -g"),
        (None, None) => "compile with -g".to_string(),
    }
}

/// The Debian package that installed `path` (from `/var/lib/dpkg/info/*.list`),
/// trying the path as given and canonicalised (`/lib` is a link to `/usr/lib`).
fn dpkg_owner(path: &Path) -> Option<String> {
    // Reading dpkg's lists takes a good fraction of a second: once per path.
    static OWNERS: std::sync::Mutex<Vec<(PathBuf, Option<String>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut owners = OWNERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, o)) = owners.iter().find(|(p, _)| p == path) {
        return o.clone();
    }
    let o = dpkg_owner_uncached(path);
    owners.push((path.to_path_buf(), o.clone()));
    o
}

fn dpkg_owner_uncached(path: &Path) -> Option<String> {
    let mut names = vec![path.to_string_lossy().into_owned()];
    if let Ok(c) = std::fs::canonicalize(path) {
        let c = c.to_string_lossy().into_owned();
        if let Some(rest) = c.strip_prefix("/usr") {
            names.push(rest.to_string());
        }
        names.push(c);
    }
    let base = path.file_name()?.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/var/lib/dpkg/info").ok()?.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "list") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        if !text.contains(base.as_str()) {
            continue;
        }
        if text.lines().any(|l| names.iter().any(|n| n == l)) {
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            return Some(stem.split(':').next().unwrap_or(&stem).to_string());
        }
    }
    None
}

/// CRC-32 (IEEE, as zlib computes it), the checksum of `.gnu_debuglink`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = t[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Link-time ranges of the executable `PT_LOAD` segments.
fn exec_ranges(file: &object::File<'_>) -> Vec<(u64, u64)> {
    use object::ObjectSegment;
    let mut v: Vec<(u64, u64)> = file
        .segments()
        .filter(|s| match s.flags() {
            object::SegmentFlags::Elf { p_flags, .. } => {
                (p_flags & object::elf::PF_X) != object::elf::ProgramFlags(0)
            }
            _ => false,
        })
        .map(|s| (s.address(), s.address().saturating_add(s.size())))
        .collect();
    v.sort();
    v
}

/// Defined text symbols by address (both symbol tables).
fn text_symbols(file: &object::File<'_>) -> HashMap<u64, Vec<String>> {
    use object::{ObjectSymbol, SymbolKind};
    let mut by_addr: HashMap<u64, Vec<String>> = HashMap::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() {
            continue;
        }
        if let Ok(name) = sym.name() {
            if !name.is_empty() {
                by_addr
                    .entry(sym.address())
                    .or_default()
                    .push(name.to_string());
            }
        }
    }
    by_addr
}

/// The names of the defined text symbols at `addr` (both symbol tables).
fn text_symbols_at(file: &object::File<'_>, addr: u64) -> Vec<String> {
    use object::{ObjectSymbol, SymbolKind};
    file.symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && !s.is_undefined() && s.address() == addr)
        .filter_map(|s| s.name().ok().filter(|n| !n.is_empty()).map(str::to_string))
        .collect()
}

/// Defined text symbols sorted by address, one per address (a global name preferred).
fn sorted_symbols(file: &object::File<'_>) -> Vec<(u64, u64, String)> {
    use object::{ObjectSymbol, SymbolKind};
    let mut seen: std::collections::BTreeMap<u64, (u64, String, bool)> = Default::default();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() {
            continue;
        }
        let Ok(name) = sym.name() else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let end = sym.address().saturating_add(sym.size());
        let e = seen
            .entry(sym.address())
            .or_insert((end, name.to_string(), sym.is_global()));
        if sym.is_global() && !e.2 {
            *e = (end.max(e.0), name.to_string(), true);
        }
    }
    seen.into_iter()
        .map(|(a, (end, name, _))| (a, end, name))
        .collect()
}

/// Functions from the ELF symbol tables (`.symtab`, else `.dynsym`): defined text
/// symbols with a size, deduplicated by address, sorted by address.
fn symbol_functions(file: &object::File<'_>) -> Vec<Function> {
    use object::{ObjectSymbol, SymbolKind};
    let mut seen = std::collections::BTreeMap::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.size() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        // Prefer the global name when several symbols share an address.
        let entry =
            seen.entry(sym.address())
                .or_insert((name.to_string(), sym.size(), sym.is_global()));
        if sym.is_global() && !entry.2 {
            *entry = (name.to_string(), sym.size(), true);
        }
    }
    seen.into_iter()
        .enumerate()
        .map(|(i, (addr, (name, size, _)))| {
            let die = DieRef {
                unit: usize::MAX,
                offset: i,
            };
            Function {
                name,
                low_pc: addr,
                entry_pc: addr,
                ranges: vec![(addr, addr.saturating_add(size))],
                decl_file: None,
                decl_line: 0,
                cu_name: String::new(),
                // No line table to skip a prologue with: probe the entry.
                optimized: true,
                inlined: false,
                call_site: None,
                die,
                origin: die,
                frame_die: die,
                return_type: None,
                aliases: Vec::new(),
            }
        })
        .collect()
}

/// A location that is a single `DW_OP_addr` (a static variable inside a function).
fn is_static_location(v: &AttributeValue<R>) -> bool {
    match v {
        AttributeValue::Exprloc(e) => matches!(
            e.0.to_slice().ok().as_deref().and_then(|b| b.first()),
            Some(0x03)
        ),
        _ => false,
    }
}

fn file_index(v: AttributeValue<R>) -> Option<u64> {
    match v {
        AttributeValue::FileIndex(i) => Some(i),
        other => other.udata_value(),
    }
}

/// Whether a producer string (`DW_AT_producer`) says the CU was optimised: the last
/// `-O` flag wins, and only `-O0` (or none) means unoptimised.
pub fn producer_optimized(producer: &str) -> bool {
    let mut opt = false;
    for w in producer.split_whitespace() {
        if let Some(level) = w.strip_prefix("-O") {
            opt = level != "0";
        }
    }
    opt
}

/// A parsed `NAME[@FILE[:LINE]]` function pattern.
struct FuncPattern<'a> {
    name: &'a str,
    file: Option<&'a str>,
    line: Option<u32>,
}

impl<'a> FuncPattern<'a> {
    fn parse(p: &'a str) -> FuncPattern<'a> {
        let (name, rest) = match p.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (p, None),
        };
        let (file, line) = match rest {
            Some(r) => match r.rsplit_once(':') {
                Some((f, l)) if l.parse::<u32>().is_ok() => (Some(f), l.parse().ok()),
                _ => (Some(r), None),
            },
            None => (None, None),
        };
        FuncPattern { name, file, line }
    }

    fn matches(&self, f: &Function) -> bool {
        if !wildcard_match(self.name, &f.name)
            && !f.aliases.iter().any(|a| wildcard_match(self.name, a))
        {
            return false;
        }
        if let Some(file) = self.file {
            match &f.decl_file {
                Some(d) if file_matches(file, d) => {}
                _ => return false,
            }
        }
        if let Some(line) = self.line {
            if f.decl_line != line {
                return false;
            }
        }
        true
    }
}

/// Whether a stap FILE pattern matches a full path: the whole path, or a trailing run
/// of whole path components (so `a.c` and `src/a.c` match `/tmp/src/a.c`).
pub fn file_matches(pattern: &str, path: &str) -> bool {
    if wildcard_match(pattern, path) {
        return true;
    }
    let comps: Vec<&str> = path.split('/').collect();
    (1..comps.len()).any(|i| wildcard_match(pattern, &comps[i..].join("/")))
}

/// Glob matching with `*` (any run, including empty) and `?` (one character).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Levenshtein distance.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Candidates within an edit distance of about a third of the name (at least 2), or
/// containing the name, best first, at most five.
pub fn close_matches(name: &str, candidates: &[&str]) -> Vec<String> {
    let limit = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .filter_map(|c| {
            let d = edit_distance(name, c);
            if d <= limit || (name.len() >= 3 && c.contains(name)) {
                Some((d, *c))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(5)
        .map(|(_, c)| c.to_string())
        .collect()
}
