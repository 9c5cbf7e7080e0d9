//! ELF + DWARF queries for the planner: functions, inlined instances, probe addresses,
//! line tables, variables with their location lowered to capture-plan ops, and types.
//!
//! Overview: [`DebugInfo::open`] reads an ELF file, loads its DWARF (decompressing
//! sections when needed) and indexes every function and inlined instance once.
//! Queries then answer in terms of plain data: [`Function`], [`Variable`], [`Type`],
//! [`Location`] (a symbolic program of [`capture_plan::Op`]s). No gimli type appears
//! in the public API, and nothing here touches a live process.
#![forbid(unsafe_code)]

mod loc;
mod sdt;
mod types;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gimli::{AttributeValue, EndianArcSlice, Reader, RunTimeEndian, UnitOffset};
use object::{Object, ObjectSection};

pub use loc::Location;
pub use sdt::{SdtArg, SdtProbe};
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
    /// The file has no DWARF debug information, nor a separate debug file.
    #[error("no debug information found in {} (compile with -g){}", .0.display(), searched(.1))]
    NoDebugInfo(PathBuf, Vec<PathBuf>),
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

/// A row of a line table.
#[derive(Clone, Debug)]
struct LineRow {
    addr: u64,
    file: usize,
    line: u32,
    is_stmt: bool,
    end_seq: bool,
}

struct UnitData {
    unit: gimli::Unit<R>,
    name: String,
    optimized: bool,
    /// Files of the line program by raw index.
    files: Vec<Option<String>>,
    /// Rows of the line program in program order (sequences kept apart by `end_seq`),
    /// read on first use: large programs have big line tables that most queries skip.
    lines: std::sync::OnceLock<Vec<LineRow>>,
}

/// One ELF file's debug information.
pub struct DebugInfo {
    path: PathBuf,
    dwarf: gimli::Dwarf<R>,
    units: Vec<UnitData>,
    eh_frame: Option<(gimli::EhFrame<R>, gimli::BaseAddresses)>,
    debug_frame: Option<(gimli::DebugFrame<R>, gimli::BaseAddresses)>,
    functions: Vec<Function>,
    inlines: Vec<Function>,
    /// Variables with a location outside any function: (name, DIE).
    globals: Vec<(String, DieRef)>,
    pie: bool,
    build_id: Option<Vec<u8>>,
    /// SDT (USDT) probes from `.note.stapsdt`.
    sdt: Vec<SdtProbe>,
    /// Bytes in an address (8, or 4 for 32-bit files).
    addr_size: u8,
    /// A 32-bit x86 file: its DWARF register numbers are mapped to the x86_64
    /// numbering that capture plans use (eax is rax's column, and so on).
    i386: bool,
    /// Named types already looked up by [`DebugInfo::find_type`].
    type_cache: std::sync::Mutex<HashMap<String, Option<DieRef>>>,
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

impl DebugInfo {
    /// Reads an ELF file and indexes its DWARF.
    pub fn open(path: &Path) -> Result<DebugInfo, Error> {
        Self::open_with(path, true)
    }

    /// Like [`Self::open`], but a file without DWARF is still opened: its functions
    /// then come from the ELF symbol tables (no variables, no lines, probed at their
    /// entry), and [`Self::has_debug_info`] is false.
    pub fn open_or_symbols(path: &Path) -> Result<DebugInfo, Error> {
        Self::open_with(path, false)
    }

    /// False when the functions come from the symbol table only.
    pub fn has_debug_info(&self) -> bool {
        !self.units.is_empty()
    }

    fn open_with(path: &Path, require_dwarf: bool) -> Result<DebugInfo, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let bad = |msg: String| Error::BadElf {
            path: path.to_path_buf(),
            msg,
        };
        let file = object::File::parse(&*bytes).map_err(|e| bad(e.to_string()))?;
        // Distribution binaries keep their DWARF in a separate file (by build-id or
        // .gnu_debuglink under /usr/lib/debug); its addresses are the same.
        let mut searched = Vec::new();
        let separate = if file.section_by_name(".debug_info").is_some() {
            None
        } else {
            find_separate_debug(&file, path, &mut searched)
        };
        let dbg_file = match &separate {
            Some((p, b)) => Some(object::File::parse(&**b).map_err(|e| Error::BadElf {
                path: p.clone(),
                msg: e.to_string(),
            })?),
            None => None,
        };
        let dwarf_src = dbg_file.as_ref().unwrap_or(&file);
        let has_dwarf = dwarf_src.section_by_name(".debug_info").is_some();
        if !has_dwarf && require_dwarf {
            return Err(Error::NoDebugInfo(path.to_path_buf(), searched));
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
        let empty: Arc<[u8]> = Arc::from(&[][..]);
        let dwarf = gimli::Dwarf::load(|id| -> Result<R, String> {
            let data = section_data(dwarf_src, id.name())?.unwrap_or_else(|| empty.clone());
            Ok(EndianArcSlice::new(data, endian))
        })
        .map_err(derr)?;
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
            functions: Vec::new(),
            inlines: Vec::new(),
            globals: Vec::new(),
            pie,
            build_id,
            sdt: Vec::new(),
            addr_size,
            i386,
            type_depth: std::sync::atomic::AtomicU32::new(0),
            type_cache: Default::default(),
        };
        di.sdt = sdt::read_notes(&file, pie);
        if has_dwarf {
            di.load_units().map_err(|e| derr(e.to_string()))?;
        }
        if di.units.is_empty() {
            if require_dwarf {
                return Err(Error::NoDebugInfo(path.to_path_buf(), searched));
            }
            di.functions = symbol_functions(&file);
            return Ok(di);
        }
        di.index().map_err(|e| derr(e.to_string()))?;
        di.add_aliases(&file);
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
        &self.functions
    }

    /// Every inlined instance, in DWARF order.
    pub fn inline_instances_all(&self) -> &[Function] {
        &self.inlines
    }

    /// The inlined instances of the function `f` (same abstract origin).
    pub fn inline_instances(&self, f: &Function) -> Vec<&Function> {
        self.inlines
            .iter()
            .filter(|i| i.origin == f.origin)
            .collect()
    }

    fn load_units(&mut self) -> gimli::Result<()> {
        let mut iter = self.dwarf.units();
        while let Some(header) = iter.next()? {
            let unit = self.dwarf.unit(header)?;
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
            let files = self.read_files(&unit);
            self.units.push(UnitData {
                unit,
                name,
                optimized,
                files,
                lines: std::sync::OnceLock::new(),
            });
        }
        Ok(())
    }

    fn attr_str(&self, unit: &gimli::Unit<R>, v: AttributeValue<R>) -> String {
        match self.dwarf.attr_string(unit, v) {
            Ok(s) => String::from_utf8_lossy(&s.to_slice().unwrap_or_default()).into_owned(),
            Err(_) => String::new(),
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
            let mut path = PathBuf::new();
            if let Some(c) = &comp_dir {
                path.push(c);
            }
            if let Some(dir) = entry.directory(header) {
                path.push(self.attr_str(unit, dir));
            }
            path.push(self.attr_str(unit, entry.path_name()));
            files.push(Some(normalize(&path)));
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
            let Some(program) = u.unit.line_program.clone() else {
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
        let u = self.units.get(d.unit)?;
        u.unit.entry(UnitOffset(d.offset)).ok()
    }

    /// Resolves a reference attribute to a DIE in this file.
    fn resolve_ref(&self, unit: usize, v: AttributeValue<R>) -> Option<DieRef> {
        match v {
            AttributeValue::UnitRef(o) => Some(DieRef { unit, offset: o.0 }),
            AttributeValue::DebugInfoRef(o) => {
                for (i, u) in self.units.iter().enumerate() {
                    if let Some(uo) = o.to_unit_offset(&u.unit.header) {
                        return Some(DieRef {
                            unit: i,
                            offset: uo.0,
                        });
                    }
                }
                None
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
        Some(self.attr_str(&self.units[at.unit].unit, v))
    }

    fn file_name(&self, unit: usize, idx: u64) -> Option<String> {
        self.units
            .get(unit)?
            .files
            .get(idx as usize)
            .cloned()
            .flatten()
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
        let Some(e) = self.entry(d) else {
            return Vec::new();
        };
        let unit = &self.units[d.unit].unit;
        let mut out = Vec::new();
        if let Ok(mut it) = self.dwarf.die_ranges(unit, &e) {
            while let Ok(Some(r)) = it.next() {
                if r.end > r.begin {
                    out.push((r.begin, r.end));
                }
            }
        }
        out
    }

    fn index(&mut self) -> gimli::Result<()> {
        let mut funcs = Vec::new();
        let mut inls = Vec::new();
        let mut globals = Vec::new();
        for ui in 0..self.units.len() {
            // Stack of enclosing concrete subprograms by depth, for inlined instances.
            let mut subprogram_stack: Vec<(isize, DieRef)> = Vec::new();
            let unit = &self.units[ui].unit;
            let mut cursor = unit.entries();
            let mut found = Vec::new();
            while let Some(e) = cursor.next_dfs()? {
                let depth = e.depth();
                while subprogram_stack.last().is_some_and(|(d, _)| *d >= depth) {
                    subprogram_stack.pop();
                }
                let tag = e.tag();
                if tag == gimli::DW_TAG_variable
                    && (subprogram_stack.is_empty()
                        || e.attr_value(gimli::DW_AT_location)
                            .is_some_and(|v| is_static_location(&v)))
                    && (e.attr_value(gimli::DW_AT_location).is_some()
                        || e.attr_value(gimli::DW_AT_const_value).is_some())
                {
                    globals.push(DieRef {
                        unit: ui,
                        offset: e.offset().0,
                    });
                }
                if tag != gimli::DW_TAG_subprogram && tag != gimli::DW_TAG_inlined_subroutine {
                    continue;
                }
                let d = DieRef {
                    unit: ui,
                    offset: e.offset().0,
                };
                let has_code = e.attr_value(gimli::DW_AT_low_pc).is_some()
                    || e.attr_value(gimli::DW_AT_ranges).is_some();
                if tag == gimli::DW_TAG_subprogram && has_code {
                    subprogram_stack.push((depth, d));
                }
                if !has_code {
                    continue;
                }
                let origin = e.attr_value(gimli::DW_AT_abstract_origin);
                let entry_pc = e.attr_value(gimli::DW_AT_entry_pc);
                let call_file = e.attr_value(gimli::DW_AT_call_file).and_then(file_index);
                let call_line = e
                    .attr_value(gimli::DW_AT_call_line)
                    .and_then(|v| v.udata_value());
                let frame = subprogram_stack.last().map_or(d, |(_, f)| *f);
                found.push((
                    d,
                    tag == gimli::DW_TAG_inlined_subroutine,
                    origin,
                    entry_pc,
                    call_file,
                    call_line,
                    frame,
                ));
            }
            for (d, inlined, origin, entry_pc, call_file, call_line, frame) in found {
                let Some(name) = self.die_name(d) else {
                    continue;
                };
                let listed = self.die_ranges_listed(d);
                let Some(&(first, _)) = listed.first() else {
                    continue;
                };
                let mut ranges = listed;
                ranges.sort();
                let low = ranges[0].0;
                let entry_pc = match entry_pc {
                    Some(AttributeValue::Addr(a)) => a,
                    Some(v) => match self.dwarf.attr_address(&self.units[ui].unit, v.clone()) {
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
                        self.entry(d)
                            .and_then(|e| e.attr_value(gimli::DW_AT_low_pc))
                            .and_then(|v| {
                                self.dwarf
                                    .attr_address(&self.units[ui].unit, v)
                                    .ok()
                                    .flatten()
                            })
                            // A low_pc outside the ranges is a base address, not code.
                            .filter(|a| ranges.iter().any(|r| r.0 <= *a && *a < r.1))
                            .unwrap_or(first)
                    }
                };
                let origin_ref = origin.and_then(|v| self.resolve_ref(ui, v)).unwrap_or(d);
                let (decl_file, decl_line) = self.decl(d);
                let return_type = if inlined {
                    self.attr_follow(origin_ref, gimli::DW_AT_type)
                } else {
                    self.attr_follow(d, gimli::DW_AT_type)
                }
                .and_then(|(at, v)| self.resolve_ref(at.unit, v));
                let call_site = match (call_file, call_line) {
                    (Some(f), Some(l)) if inlined => {
                        Some((self.file_name(ui, f).unwrap_or_default(), l as u32))
                    }
                    _ => None,
                };
                let f = Function {
                    name,
                    low_pc: low,
                    entry_pc,
                    ranges,
                    decl_file,
                    decl_line,
                    cu_name: self.units[ui].name.clone(),
                    optimized: self.units[ui].optimized,
                    inlined,
                    call_site,
                    die: d,
                    origin: origin_ref,
                    frame_die: frame,
                    return_type,
                    aliases: Vec::new(),
                };
                if inlined {
                    inls.push(f);
                } else {
                    funcs.push(f);
                }
            }
        }
        self.functions = funcs;
        self.inlines = inls;
        self.globals = globals
            .into_iter()
            .filter_map(|d| Some((self.die_name(d)?, d)))
            .collect();
        Ok(())
    }

    /// Records the symbol-table names of each out-of-line function's entry that differ
    /// from its DWARF name.
    fn add_aliases(&mut self, file: &object::File<'_>) {
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
        for f in &mut self.functions {
            if let Some(names) = by_addr.get(&f.entry_pc) {
                let mut a: Vec<String> = names.iter().filter(|n| **n != f.name).cloned().collect();
                a.sort();
                a.dedup();
                f.aliases = a;
            }
        }
    }

    /// Functions (out-of-line) matching a stap function pattern `NAME[@FILE[:LINE]]`,
    /// where NAME and FILE may use `*` and `?`. FILE matches the declaration file's
    /// full path, or any trailing run of its path components; LINE is the declaration
    /// line. Sorted by address, without duplicates.
    pub fn match_functions(&self, pattern: &str) -> Vec<&Function> {
        let pat = FuncPattern::parse(pattern);
        let mut out: Vec<&Function> = self.functions.iter().filter(|f| pat.matches(f)).collect();
        out.sort_by_key(|f| (f.entry_pc, f.name.clone()));
        out.dedup_by_key(|f| f.entry_pc);
        out
    }

    /// Inlined instances matching a stap function pattern (see [`Self::match_functions`]).
    pub fn match_inlines(&self, pattern: &str) -> Vec<&Function> {
        let pat = FuncPattern::parse(pattern);
        let mut out: Vec<&Function> = self.inlines.iter().filter(|f| pat.matches(f)).collect();
        out.sort_by_key(|f| (f.entry_pc, f.name.clone()));
        out.dedup_by_key(|f| f.entry_pc);
        out
    }

    /// Function names close to `name` (edit distance), best first, at most five.
    pub fn close_matches(&self, name: &str) -> Vec<String> {
        let base = name.split('@').next().unwrap_or(name);
        let mut names: Vec<&str> = self
            .functions
            .iter()
            .chain(self.inlines.iter())
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
        for (ui, u) in self.units.iter().enumerate() {
            for r in self.lines(ui) {
                if r.end_seq || r.line != line || !r.is_stmt {
                    continue;
                }
                let Some(Some(path)) = u.files.get(r.file) else {
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

    /// The source line (file, line) of an address, if the line table has it.
    pub fn line_at(&self, addr: u64) -> Option<(String, u32)> {
        for (ui, u) in self.units.iter().enumerate() {
            let mut prev: Option<&LineRow> = None;
            for r in self.lines(ui) {
                if let Some(p) = prev {
                    if !p.end_seq && p.addr <= addr && addr < r.addr {
                        let f = u.files.get(p.file).cloned().flatten()?;
                        return Some((f, p.line));
                    }
                }
                prev = Some(r);
            }
        }
        None
    }

    /// The innermost out-of-line function containing `addr`.
    pub fn function_at(&self, addr: u64) -> Option<&Function> {
        self.functions
            .iter()
            .filter(|f| f.ranges.iter().any(|r| r.0 <= addr && addr < r.1))
            .min_by_key(|f| f.ranges.iter().map(|r| r.1 - r.0).sum::<u64>())
    }

    /// The innermost scope (function or inlined instance) containing `addr`.
    pub fn scope_at(&self, addr: u64) -> Option<&Function> {
        self.functions
            .iter()
            .chain(self.inlines.iter())
            .filter(|f| f.ranges.iter().any(|r| r.0 <= addr && addr < r.1))
            .min_by_key(|f| f.ranges.iter().map(|r| r.1 - r.0).sum::<u64>())
    }
}

fn searched(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return String::new();
    }
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!("; also searched {}", v.join(", "))
}

/// Root of separate debug files, as gdb and elfutils use it.
const DEBUG_ROOT: &str = "/usr/lib/debug";

/// Finds a separate debug file: `/usr/lib/debug/.build-id/xx/rest.debug`, then the
/// `.gnu_debuglink` name next to the file, in its `.debug/` directory, and under
/// `/usr/lib/debug/<dir>/`. Records every path tried in `searched`.
fn find_separate_debug(
    file: &object::File<'_>,
    path: &Path,
    searched: &mut Vec<PathBuf>,
) -> Option<(PathBuf, Vec<u8>)> {
    let mut candidates = Vec::new();
    if let Ok(Some(id)) = file.build_id() {
        if id.len() > 1 {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            candidates.push(
                Path::new(DEBUG_ROOT)
                    .join(".build-id")
                    .join(&hex[..2])
                    .join(format!("{}.debug", &hex[2..])),
            );
        }
    }
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = String::from_utf8_lossy(name).into_owned();
        let dir = path.parent().unwrap_or(Path::new("/"));
        candidates.push(dir.join(&name));
        candidates.push(dir.join(".debug").join(&name));
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        candidates.push(Path::new(DEBUG_ROOT).join(rel).join(&name));
    }
    for c in candidates {
        if c == path {
            continue;
        }
        searched.push(c.clone());
        if let Ok(bytes) = std::fs::read(&c) {
            let has = object::File::parse(&*bytes)
                .is_ok_and(|f| f.section_by_name(".debug_info").is_some());
            if has {
                return Some((c, bytes));
            }
        }
    }
    None
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

fn normalize(p: &Path) -> String {
    let mut out: Vec<std::path::Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(out.last(), Some(std::path::Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.iter()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned()
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
