//! Which units can hold a function of a given name, found without parsing every unit:
//! a byte search of `.debug_info` for the name's string offsets, a look at the
//! abbreviation tables for units that search could miss, `.debug_aranges` for the
//! units around a symbol's address, and, of the units the name's bytes are in, those
//! where they can be the name of a subprogram definition.
//!
//! Why a byte search is complete: a DIE names a function through `DW_AT_name` in
//! `DW_FORM_strp` (a 4- or 8-byte offset into `.debug_str`), `DW_FORM_line_strp` (into
//! `.debug_line_str`) or `DW_FORM_string` (the bytes inline). Whatever the offset of
//! a string "NAME", the bytes there are `NAME\0`, so every offset a DIE can use for it
//! is one of the places where `NAME\0` occurs in the string section; and the DIE's
//! bytes contain that offset (or the inline string) verbatim. A unit none of those
//! byte patterns occur in has no DIE named NAME, unless its abbreviations use another
//! form for `DW_AT_name` (`strx`, supplementary files) or name functions through
//! another unit (`DW_FORM_ref_addr` origins, as LTO and dwz make): such "opaque"
//! units are always candidates. A pattern found in a unit by chance only costs a
//! look at that unit.
//!
//! Most units that hold the name only declare the function (every caller of `malloc`
//! does). A definition's name sits at a fixed distance after its DIE's abbreviation
//! code when the attributes before `DW_AT_name` have fixed sizes, as gcc writes them:
//! a hit not preceded by the code of a definition abbreviation at that distance is
//! not a definition. Units whose table cannot tell (a definition named through
//! `DW_AT_specification`, a variable-size attribute before the name) are walked at
//! their top level instead, which is what finding the name took before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gimli::{Endianity, Reader, Section};

use crate::DebugInfo;

/// The state of exact-name lookups, filled on first use.
#[derive(Default)]
pub(crate) struct NameIndex {
    /// Units whose abbreviations defeat the byte search, sorted.
    opaque: OnceLock<Vec<usize>>,
    /// The tables of `.debug_abbrev` read one after the other.
    tables: OnceLock<AbbrevScan>,
    /// `.debug_aranges` as (begin, end, unit) sorted by begin; `None` without it.
    aranges: OnceLock<Option<Vec<(u64, u64, usize)>>>,
    /// Code ranges of every unit's root DIE, sorted by begin (parses every unit: only
    /// for addresses `.debug_aranges` does not cover).
    root_ranges: OnceLock<Vec<(u64, u64, usize)>>,
    /// Per name searched so far: the units that may hold it (`None`: the search was
    /// impossible and every unit is a candidate), before symbol addresses are added.
    hits: Mutex<HashMap<String, Option<Arc<Vec<usize>>>>>,
}

/// The abbreviation tables of a whole `.debug_abbrev`, read one after the other from
/// its start (where units' tables are, in practice): where each starts, and which are
/// opaque. A unit whose table starts elsewhere has it read on its own.
pub(crate) struct AbbrevScan {
    starts: Vec<usize>,
    opaque: Vec<usize>,
}

impl AbbrevScan {
    pub(crate) fn new(b: &[u8]) -> AbbrevScan {
        let mut scan = AbbrevScan {
            starts: Vec::new(),
            opaque: Vec::new(),
        };
        let mut i = 0usize;
        while i < b.len() {
            scan.starts.push(i);
            match abbrev_table(b, i) {
                Some((end, opaque)) if end > i => {
                    if opaque {
                        scan.opaque.push(i);
                    }
                    i = end;
                }
                // Unreadable from here on: the tables past it are read on their own.
                _ => {
                    scan.opaque.push(i);
                    break;
                }
            }
        }
        scan
    }

    /// Whether the table at `off` is opaque, if the scan saw it start there.
    pub(crate) fn opaque_at(&self, off: usize) -> Option<bool> {
        self.starts
            .binary_search(&off)
            .ok()
            .map(|_| self.opaque.binary_search(&off).is_ok())
    }
}

impl NameIndex {
    pub(crate) fn set_abbrev_scan(&self, scan: AbbrevScan) {
        let _ = self.tables.set(scan);
    }
}

/// How a name can appear in raw attribute values: the bytes, and every offset of
/// them in `.debug_str` and `.debug_line_str` (sorted).
struct Spellings {
    name: Vec<u8>,
    str_offs: Vec<usize>,
    line_offs: Vec<usize>,
}

/// Reads an unsigned LEB128 from `b` at `*i`.
#[inline]
fn uleb(b: &[u8], i: &mut usize) -> Option<u64> {
    // Nearly every number in an abbreviation table fits in one byte.
    let first = *b.get(*i)?;
    if first < 0x80 {
        *i += 1;
        return Some(u64::from(first));
    }
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*i)?;
        *i += 1;
        if shift < 64 {
            v |= u64::from(byte & 0x7f) << shift;
        }
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 70 {
            return None;
        }
    }
}

/// Whether the abbreviation table at `off` of `.debug_abbrev` lets a DIE name a
/// function in a way the byte search cannot see (see the module comment). A table
/// that cannot be read counts as opaque.
pub(crate) fn abbrev_table_opaque(b: &[u8], off: usize) -> bool {
    abbrev_table(b, off).is_none_or(|t| t.1)
}

/// Reads the abbreviation table at `off`: where it ends, and whether it is opaque
/// (see [`abbrev_table_opaque`]); `None` when it cannot be read.
fn abbrev_table(b: &[u8], off: usize) -> Option<(usize, bool)> {
    const AT_NAME: u64 = 0x03;
    const AT_ABSTRACT_ORIGIN: u64 = 0x31;
    const AT_SPECIFICATION: u64 = 0x47;
    const FORM_STRING: u64 = 0x08;
    const FORM_STRP: u64 = 0x0e;
    const FORM_LINE_STRP: u64 = 0x1f;
    const FORM_IMPLICIT_CONST: u64 = 0x21;
    // ref1, ref2, ref4, ref8, ref_udata: offsets within the unit.
    let unit_ref = |f: u64| (0x11..=0x15).contains(&f);
    let mut i = off;
    let mut opaque = false;
    // A table is a list of declarations ended by code 0; bounded by the section.
    loop {
        let code = uleb(b, &mut i)?;
        if code == 0 {
            return Some((i, opaque));
        }
        uleb(b, &mut i)?;
        b.get(i)?;
        i += 1; // DW_CHILDREN_*
        loop {
            let (at, form) = (uleb(b, &mut i)?, uleb(b, &mut i)?);
            if at == 0 && form == 0 {
                break;
            }
            if form == FORM_IMPLICIT_CONST {
                uleb(b, &mut i)?;
            }
            opaque |= match at {
                AT_NAME => !matches!(form, FORM_STRING | FORM_STRP | FORM_LINE_STRP),
                AT_ABSTRACT_ORIGIN | AT_SPECIFICATION => !unit_ref(form),
                _ => false,
            };
        }
    }
}

/// What a unit's abbreviation table says about where a subprogram definition's name
/// can be: for each definition abbreviation with a `DW_AT_name`, its code and the
/// name's fixed distance from the end of the code (the sizes of the attributes before
/// it). `None` when some definition's name cannot be placed that way (an attribute of
/// variable size before it), or a definition may be named through another DIE
/// (`DW_AT_specification`), or the table cannot be read.
pub(crate) fn definition_names(
    b: &[u8],
    off: usize,
    version: u16,
    offset_size: u8,
    addr_size: u8,
) -> Option<Vec<(u64, usize)>> {
    const TAG_SUBPROGRAM: u64 = 0x2e;
    const AT_NAME: u64 = 0x03;
    const AT_DECLARATION: u64 = 0x3c;
    const AT_SPECIFICATION: u64 = 0x47;
    const FORM_FLAG_PRESENT: u64 = 0x19;
    const FORM_IMPLICIT_CONST: u64 = 0x21;
    let os = usize::from(offset_size);
    let fixed = |form: u64| -> Option<usize> {
        Some(match form {
            0x01 => usize::from(addr_size),        // addr
            0x05 | 0x12 | 0x26 | 0x2a => 2,        // data2 ref2 strx2 addrx2
            0x06 | 0x13 | 0x1c | 0x28 | 0x2c => 4, // data4 ref4 ref_sup4 strx4 addrx4
            0x07 | 0x14 | 0x20 | 0x24 => 8,        // data8 ref8 ref_sig8 ref_sup8
            0x0b | 0x0c | 0x11 | 0x25 | 0x29 => 1, // data1 flag ref1 strx1 addrx1
            0x27 | 0x2b => 3,                      // strx3 addrx3
            0x1e => 16,                            // data16
            0x0e | 0x17 | 0x1d | 0x1f => os,       // strp sec_offset strp_sup line_strp
            0x10 if version >= 3 => os,            // ref_addr
            0x10 => usize::from(addr_size),
            FORM_FLAG_PRESENT | FORM_IMPLICIT_CONST => 0,
            _ => return None,
        })
    };
    let mut out = Vec::new();
    let mut i = off;
    loop {
        let code = uleb(b, &mut i)?;
        if code == 0 {
            return Some(out);
        }
        let tag = uleb(b, &mut i)?;
        b.get(i)?;
        i += 1; // DW_CHILDREN_*
        let mut at_name: Option<Option<usize>> = None;
        let mut declaration = false;
        let mut specification = false;
        let mut before: Option<usize> = Some(0);
        loop {
            let (at, form) = (uleb(b, &mut i)?, uleb(b, &mut i)?);
            if at == 0 && form == 0 {
                break;
            }
            if form == FORM_IMPLICIT_CONST {
                uleb(b, &mut i)?;
            }
            match at {
                AT_NAME if at_name.is_none() => at_name = Some(before),
                // Only the flag without bytes says "declaration" for certain.
                AT_DECLARATION => declaration = form == FORM_FLAG_PRESENT,
                AT_SPECIFICATION => specification = true,
                _ => {}
            }
            before = before.and_then(|n| Some(n + fixed(form)?));
        }
        if tag != TAG_SUBPROGRAM || declaration {
            continue;
        }
        if specification {
            return None;
        }
        match at_name {
            Some(Some(d)) => out.push((code, d)),
            Some(None) => return None,
            None => {}
        }
    }
}

/// The values of the ULEB128s that can end right before `end` in `b` (no earlier than
/// `start`): the last byte below 0x80, the bytes before it at or above.
pub(crate) fn codes_ending_at(
    b: &[u8],
    start: usize,
    end: usize,
) -> impl Iterator<Item = u64> + '_ {
    let last_ok = end > start && b.get(end - 1).is_some_and(|x| *x < 0x80);
    (1..=10usize)
        .take_while(move |&k| {
            last_ok && k <= end - start && (k == 1 || b.get(end - k).is_some_and(|x| *x >= 0x80))
        })
        .map(move |k| {
            let mut v = 0u64;
            for (j, x) in b[end - k..end].iter().enumerate() {
                if j < 10 {
                    v |= u64::from(x & 0x7f) << (7 * j as u32).min(63);
                }
            }
            v
        })
}

impl DebugInfo {
    /// The units that may hold an out-of-line function (or an inlined instance) named
    /// `name` or, for out-of-line ones, at one of `sym_addrs`: a superset of the units
    /// where a scan finds them, usually a handful.
    pub(crate) fn name_candidates(&self, name: &str, sym_addrs: &[u64]) -> Vec<usize> {
        let cached = self
            .names
            .hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let hits = match cached {
            Some(h) => h,
            None => {
                let h = self.defining_units(name).map(Arc::new);
                self.names
                    .hits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_string(), h.clone());
                h
            }
        };
        let mut units: Vec<usize> = match hits {
            Some(h) => h.to_vec(),
            None => (0..self.units.len()).collect(),
        };
        for &a in sym_addrs {
            units.extend(self.units_at(a));
        }
        units.sort_unstable();
        units.dedup();
        units
    }

    /// The units that can define a subprogram of that name (a function's inlined
    /// instances live in units that have its abstract definition): of the units whose
    /// bytes hold the name or that the byte search cannot see into, those with a hit
    /// that can be a definition's name, or whose top level defines it or cannot vouch
    /// for them. `None` when the search cannot be made.
    fn defining_units(&self, name: &str) -> Option<Vec<usize>> {
        // The abbreviation tables are read while .debug_info is searched.
        let found = if self.names.opaque.get().is_some() {
            self.search_bytes(name)
        } else {
            std::thread::scope(|s| {
                // A lost thread leaves the tables to be read below.
                s.spawn(|| self.opaque_units().len());
                self.search_bytes(name)
            })
        };
        let (hits, sp) = found?;
        crate::timing(|| format!("{name}: bytes in {} units", hits.len()));
        let opaque = self.opaque_units();
        crate::timing(|| format!("{} opaque units", opaque.len()));
        // A unit with hits and readable abbreviations is decided by its hits; the
        // others by a walk of their top level.
        let mut keep = Vec::new();
        let mut walk = Vec::new();
        for (u, pos) in &hits {
            if opaque.binary_search(u).is_ok() {
                walk.push(*u);
                continue;
            }
            match pos.as_deref().and_then(|p| self.hits_define(*u, p)) {
                Some(true) => keep.push(*u),
                Some(false) => {}
                None => walk.push(*u),
            }
        }
        walk.extend(
            opaque
                .iter()
                .filter(|u| hits.binary_search_by_key(u, |h| &h.0).is_err()),
        );
        walk.sort_unstable();
        walk.dedup();
        crate::timing(|| {
            format!(
                "{name}: {} units by their hits, {} to walk",
                keep.len(),
                walk.len()
            )
        });
        let walked = self.on_threads(&walk, |u| self.top_defines(u, &sp).unwrap_or(true));
        keep.extend(
            walk.into_iter()
                .zip(walked)
                .filter_map(|(u, k)| k.then_some(u)),
        );
        keep.sort_unstable();
        crate::timing(|| format!("{name}: defined in {} units", keep.len()));
        Some(keep)
    }

    /// Whether one of the byte hits `pos` in unit `ui` can be the name of a subprogram
    /// definition: the bytes before it must end in the code of a definition
    /// abbreviation whose name comes that many bytes after its code. `Some(false)` is
    /// certain (every definition's name sits at a fixed place, and none is at a hit);
    /// `None` when the table cannot tell.
    fn hits_define(&self, ui: usize, pos: &[usize]) -> Option<bool> {
        let h = &self.units.get(ui)?.header;
        let enc = h.encoding();
        // An 8-byte string offset holds the 4-byte pattern at its start only when
        // little-endian: other layouts are left to the walk.
        if enc.format == gimli::Format::Dwarf64 {
            return None;
        }
        let defs = definition_names(
            self.dwarf.debug_abbrev.reader().bytes(),
            h.debug_abbrev_offset().0,
            enc.version,
            enc.format.word_size(),
            enc.address_size,
        )?;
        let info = self.dwarf.debug_info.reader().bytes();
        let start = h.offset().0;
        let mut dists: Vec<usize> = defs.iter().map(|d| d.1).collect();
        dists.sort_unstable();
        dists.dedup();
        for &p in pos {
            for &d in &dists {
                let Some(end) = p.checked_sub(d) else {
                    continue;
                };
                if codes_ending_at(info, start, end).any(|c| defs.contains(&(c, d))) {
                    return Some(true);
                }
            }
        }
        Some(false)
    }

    /// `f` of every unit in `units`, in order, on a few threads when they are large.
    /// A lost thread answers true for its units (scanning a unit too many is safe).
    fn on_threads(&self, units: &[usize], f: impl Fn(usize) -> bool + Sync) -> Vec<bool> {
        let lens: Vec<usize> = units
            .iter()
            .map(|&u| self.units[u].header.length_including_self())
            .collect();
        let bounds = crate::split_by_size(&lens, crate::sum_sizes(&lens));
        if bounds.len() <= 2 {
            return units.iter().map(|&u| f(u)).collect();
        }
        let f = &f;
        std::thread::scope(|s| {
            let hs: Vec<_> = bounds
                .windows(2)
                .map(|w| {
                    let part = &units[w[0]..w[1]];
                    s.spawn(move || part.iter().map(|&u| f(u)).collect::<Vec<bool>>())
                })
                .collect();
            hs.into_iter()
                .zip(bounds.windows(2))
                .flat_map(|(h, w)| h.join().unwrap_or_else(|_| vec![true; w[1] - w[0]]))
                .collect()
        })
    }

    /// Whether unit `ui` defines a subprogram spelled as `sp` at its top level, reading
    /// only the top level (the children of a DIE are jumped over through its
    /// `DW_AT_sibling`) and comparing names as raw string offsets. True as well when
    /// the top level cannot vouch for the unit (namespaces, classes, cross-unit
    /// references): then it must be scanned.
    fn top_defines(&self, ui: usize, sp: &Spellings) -> gimli::Result<bool> {
        use gimli::AttributeValue as V;
        let header = &self.units[ui].header;
        let abbrevs = self.abbrevs_of(header)?;
        let is_name = |v: &V<crate::R>| -> bool {
            match v {
                V::DebugStrRef(o) => sp.str_offs.binary_search(&o.0).is_ok(),
                V::DebugLineStrRef(o) => sp.line_offs.binary_search(&o.0).is_ok(),
                V::String(r) => r.to_slice().is_ok_and(|b| *b == *sp.name),
                // Other forms (strx) go through the parsed unit; unreadable: maybe.
                other => self
                    .unit(ui)
                    .and_then(|u| self.dwarf.attr_string(u, other.clone()).ok())
                    .and_then(|r| r.to_slice().ok().map(|b| *b == *sp.name))
                    .unwrap_or(true),
            }
        };
        let mut raw = header.entries_raw(&abbrevs, None)?;
        let Some(root) = raw.read_abbreviation()? else {
            return Ok(false);
        };
        raw.skip_attributes(root.attributes())?;
        if !root.has_children() {
            return Ok(false);
        }
        // The root's children, one by one; their own children are jumped over.
        while !raw.is_empty() {
            let offset = raw.next_offset();
            let Some(ab) = raw.read_abbreviation()? else {
                return Ok(false);
            };
            let tag = ab.tag();
            if matches!(
                tag,
                gimli::DW_TAG_namespace
                    | gimli::DW_TAG_class_type
                    | gimli::DW_TAG_module
                    | gimli::DW_TAG_imported_unit
            ) {
                return Ok(true);
            }
            if tag != gimli::DW_TAG_subprogram && !ab.has_children() {
                raw.skip_attributes(ab.attributes())?;
                continue;
            }
            let mut name = None;
            let mut declaration = false;
            let mut sibling = None;
            let mut spec_ref = None;
            for spec in ab.attributes() {
                let a = raw.read_attribute(*spec)?;
                match a.name() {
                    gimli::DW_AT_sibling => sibling = Some(a.value()),
                    gimli::DW_AT_name => name = Some(a.value()),
                    gimli::DW_AT_declaration => declaration = matches!(a.value(), V::Flag(true)),
                    gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => match a.value() {
                        V::UnitRef(o) => {
                            if a.name() == gimli::DW_AT_specification {
                                spec_ref = Some(o);
                            }
                        }
                        _ => return Ok(true),
                    },
                    _ => {}
                }
            }
            // A declaration names a function that this unit calls, not one it has:
            // only definitions count (and declarations that a definition completes
            // through DW_AT_specification).
            if tag == gimli::DW_TAG_subprogram && !declaration {
                if name.is_none() {
                    if let Some(o) = spec_ref {
                        name = header
                            .entry(&abbrevs, o)
                            .ok()
                            .and_then(|d| d.attr_value(gimli::DW_AT_name));
                    }
                }
                if name.as_ref().is_some_and(is_name) {
                    return Ok(true);
                }
            }
            if !ab.has_children() {
                continue;
            }
            match sibling {
                Some(V::UnitRef(o)) if o.0 > offset.0 => {
                    raw = header.entries_raw(&abbrevs, Some(o))?;
                }
                _ => {
                    // No sibling pointer: walk the subtree.
                    let mut depth = 1usize;
                    while depth > 0 {
                        match raw.read_abbreviation()? {
                            None => depth -= 1,
                            Some(a) => {
                                raw.skip_attributes(a.attributes())?;
                                if a.has_children() {
                                    depth += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// The units whose bytes contain `name` inline or one of its string offsets, in
    /// order, and the name's spellings; `None` when the search cannot be made (empty
    /// name, huge sections, a name that ends too many strings).
    #[allow(clippy::type_complexity)]
    fn search_bytes(&self, name: &str) -> Option<(Vec<(usize, Option<Vec<usize>>)>, Spellings)> {
        if name.is_empty() || name.as_bytes().contains(&0) {
            return None;
        }
        let info = self.dwarf.debug_info.reader();
        let big = info.endian().is_big_endian();
        let info = info.bytes();
        let mut needle = name.as_bytes().to_vec();
        needle.push(0);
        let mut patterns: Vec<Vec<u8>> = vec![needle.clone()];
        let mut offs: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        let strs = [
            self.dwarf.debug_str.reader().bytes(),
            self.dwarf.debug_line_str.reader().bytes(),
        ];
        let finder = aho_corasick::AhoCorasick::new([&needle]).ok()?;
        for (s, offs) in strs.into_iter().zip(offs.iter_mut()) {
            // Occurrences cannot overlap: the needle's only NUL is its last byte.
            for m in finder.find_iter(s) {
                let off = u32::try_from(m.start()).ok()?;
                offs.push(m.start());
                patterns.push(if big {
                    off.to_be_bytes().to_vec()
                } else {
                    off.to_le_bytes().to_vec()
                });
                // A name that ends hundreds of strings ("f", "init") is in most
                // units anyway: not worth an automaton.
                if patterns.len() > 512 {
                    return None;
                }
            }
        }
        patterns.sort();
        patterns.dedup();
        crate::timing(|| format!("{name}: {} byte patterns", patterns.len()));
        // Teddy (SIMD over the patterns' first bytes) runs at gigabytes per second on
        // DWARF; the general automaton's prefilter keys on a byte like 0, which DWARF
        // is full of, and is ten times slower. It is there for CPUs without Teddy.
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(&patterns)
            .build();
        let general = match packed {
            Some(_) => None,
            None => Some(
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(&patterns)
                    .ok()?,
            ),
        };
        let find = |at: usize| -> Option<usize> {
            match (&packed, &general) {
                (Some(p), _) => p
                    .find_in(info, aho_corasick::Span::from(at..info.len()))
                    .map(|m| m.start()),
                (None, Some(g)) => g
                    .find(aho_corasick::Input::new(info).range(at..))
                    .map(|m| m.start()),
                (None, None) => None,
            }
        };
        // Every position where a pattern starts, by unit: after a match the search
        // goes on at the next byte (leftmost-first reports the earliest start, so no
        // position is skipped). A unit with very many hits is not worth them: its
        // list is dropped (`None`) and it is searched no further.
        const MAX_HITS: usize = 64;
        let mut out: Vec<(usize, Option<Vec<usize>>)> = Vec::new();
        let mut at = 0usize;
        while at < info.len() {
            let Some(m) = find(at) else {
                break;
            };
            at = m + 1;
            let Some(ui) = self.unit_of_offset(m) else {
                continue;
            };
            if out.last().is_none_or(|l| l.0 != ui) {
                out.push((ui, Some(Vec::new())));
            }
            let Some(last) = out.last_mut() else {
                break;
            };
            if let Some(v) = &mut last.1 {
                v.push(m);
                if v.len() > MAX_HITS {
                    last.1 = None;
                }
            }
            if last.1.is_none() {
                let u = &self.units[ui].header;
                at = at.max(u.offset().0 + u.length_including_self());
            }
        }
        let [str_offs, line_offs] = offs;
        let sp = Spellings {
            name: name.as_bytes().to_vec(),
            str_offs,
            line_offs,
        };
        Some((out, sp))
    }

    /// The unit whose bytes include offset `pos` of `.debug_info`.
    pub(crate) fn unit_of_offset(&self, pos: usize) -> Option<usize> {
        let i = self
            .units
            .partition_point(|u| u.header.offset().0 <= pos)
            .checked_sub(1)?;
        let h = &self.units[i].header;
        (pos < h.offset().0.saturating_add(h.length_including_self())).then_some(i)
    }

    /// Units whose abbreviations defeat the byte search (each table read once).
    fn opaque_units(&self) -> &[usize] {
        self.names.opaque.get_or_init(|| {
            let abbrev = self.dwarf.debug_abbrev.reader().bytes();
            let tables = self.names.tables.get_or_init(|| AbbrevScan::new(abbrev));
            let mut seen: HashMap<usize, bool> = HashMap::new();
            let mut out = Vec::new();
            crate::timing(|| "abbreviation tables: start".into());
            for (ui, u) in self.units.iter().enumerate() {
                let off = u.header.debug_abbrev_offset().0;
                let opaque = match tables.opaque_at(off) {
                    Some(o) => o,
                    None => *seen
                        .entry(off)
                        .or_insert_with(|| abbrev_table_opaque(abbrev, off)),
                };
                // Type units and skeletons are never scanned for functions here; a
                // unit kind this code does not know is looked at, to be safe.
                if opaque {
                    out.push(ui);
                }
            }
            crate::timing(|| format!("abbreviation tables: {} read apart", seen.len()));
            out
        })
    }

    /// The units whose code covers `addr`: from `.debug_aranges` when it covers the
    /// address, else from every unit's root ranges.
    fn units_at(&self, addr: u64) -> Vec<usize> {
        let find = |v: &[(u64, u64, usize)]| -> Vec<usize> {
            let upto = v.partition_point(|r| r.0 <= addr);
            v[..upto]
                .iter()
                .filter(|r| addr < r.1)
                .map(|r| r.2)
                .collect()
        };
        if let Some(ar) = self.names.aranges.get_or_init(|| self.read_aranges()) {
            let hit = find(ar);
            if !hit.is_empty() {
                return hit;
            }
        }
        find(
            self.names
                .root_ranges
                .get_or_init(|| self.read_root_ranges()),
        )
    }

    pub(crate) fn read_aranges(&self) -> Option<Vec<(u64, u64, usize)>> {
        let mut out = Vec::new();
        let mut headers = self.dwarf.debug_aranges.headers();
        while let Ok(Some(h)) = headers.next() {
            let off = h.debug_info_offset().0;
            let Some(ui) = self
                .unit_of_offset(off)
                .filter(|&u| self.units[u].header.offset().0 == off)
            else {
                continue;
            };
            let mut entries = h.entries();
            while let Ok(Some(e)) = entries.next() {
                let r = e.range();
                if r.end > r.begin {
                    out.push((r.begin, r.end, ui));
                }
            }
        }
        if out.is_empty() {
            return None;
        }
        out.sort_unstable();
        Some(out)
    }

    fn read_root_ranges(&self) -> Vec<(u64, u64, usize)> {
        let n = self.units.len();
        let lens: Vec<usize> = self
            .units
            .iter()
            .map(|u| u.header.length_including_self())
            .collect();
        let bounds = crate::split_by_size(&lens, crate::sum_sizes(&lens));
        let part = |r: std::ops::Range<usize>| {
            let mut v = Vec::new();
            for ui in r {
                let Some(unit) = self.unit(ui) else {
                    continue;
                };
                let mut cursor = unit.entries();
                if let Ok(Some(root)) = cursor.next_dfs() {
                    for (b, e) in self.ranges_of(unit, root) {
                        v.push((b, e, ui));
                    }
                }
            }
            v
        };
        let mut out: Vec<(u64, u64, usize)> = if bounds.len() <= 2 {
            part(0..n)
        } else {
            std::thread::scope(|s| {
                let hs: Vec<_> = bounds
                    .windows(2)
                    .map(|w| {
                        let r = w[0]..w[1];
                        s.spawn(move || part(r))
                    })
                    .collect();
                // A lost thread makes its units cover every address: scanned too.
                hs.into_iter()
                    .zip(bounds.windows(2))
                    .flat_map(|(h, w)| {
                        h.join()
                            .unwrap_or_else(|_| (w[0]..w[1]).map(|u| (0, u64::MAX, u)).collect())
                    })
                    .collect()
            })
        };
        out.sort_unstable();
        out
    }
}
