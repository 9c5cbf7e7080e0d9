//! The symbol table as SystemTap reads it, for functions known only from it.
//!
//! stap (through elfutils' `dwfl_module_getsymtab`) reads one table: the file's
//! `.symtab`, else the separate debug file's `.symtab`, else `.dynsym`. Of it, it keeps
//! the defined `STT_FUNC` symbols, local and weak ones included, with or without a size
//! (`_init`, `frame_dummy`); `STT_GNU_IFUNC` resolvers are not functions to it. A
//! wildcard `.function("PAT")` then adds, after the DWARF functions, every matching
//! symbol that no DWARF function is named after, one per address (the first in table
//! order: locals come first), skipping addresses a DWARF function already starts at
//! (a symbol there is an alias of it). An exact name is looked up by name.

use std::collections::HashSet;

use object::{Object, ObjectSymbol, ObjectSymbolTable};

use crate::{wildcard_match, DebugInfo, DieRef, Function};

/// One defined function symbol: (address, size, name), in table order.
pub(crate) type SymEntry = (u64, u64, String);

/// The defined `STT_FUNC` symbols of one table of `file`, in table order.
fn func_symbols<'d: 'f, 'f>(
    syms: impl Iterator<Item = object::Symbol<'d, 'f>>,
    out: &mut Vec<SymEntry>,
) {
    for s in syms {
        let object::SymbolFlags::Elf { st_info, .. } = s.flags() else {
            continue;
        };
        if st_info.st_type() != object::elf::STT_FUNC || s.is_undefined() {
            continue;
        }
        let Ok(name) = s.name() else {
            continue;
        };
        if !name.is_empty() {
            out.push((s.address(), s.size(), name.to_string()));
        }
    }
}

/// The table stap reads (see the module documentation): `main`'s `.symtab`, else
/// `debug`'s, else `main`'s `.dynsym`.
pub(crate) fn stap_table(
    main: &object::File<'_>,
    debug: Option<&object::File<'_>>,
) -> Vec<SymEntry> {
    let mut out = Vec::new();
    if let Some(t) = main.symbol_table() {
        func_symbols(t.symbols(), &mut out);
    } else if let Some(t) = debug.and_then(|d| d.symbol_table()) {
        func_symbols(t.symbols(), &mut out);
    } else if let Some(t) = main.dynamic_symbol_table() {
        func_symbols(t.symbols(), &mut out);
    }
    out
}

/// A [`Function`] made from a symbol: no DWARF scope, probed at its entry.
fn symbol_function(index: usize, addr: u64, size: u64, name: &str) -> Function {
    let die = DieRef {
        unit: usize::MAX,
        offset: index,
    };
    Function {
        name: name.to_string(),
        low_pc: addr,
        entry_pc: addr,
        ranges: vec![(addr, addr.saturating_add(size.max(1)))],
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
}

impl DebugInfo {
    /// The symbol table stap reads, made on first use.
    pub(crate) fn stap_symbols(&self) -> &[SymEntry] {
        self.stap_syms.get_or_init(|| {
            let Some(main) = self.elf_file() else {
                return Vec::new();
            };
            stap_table(&main, self.dbg_file().as_ref())
        })
    }

    /// Functions that `.function(PATTERN)` reaches through the symbol table only, as
    /// stap resolves them (see the module documentation): symbols no DWARF function
    /// is named after nor starts at (an exact name at a DWARF function's entry gives
    /// that function). A pattern with `@FILE` matches none (symbols have no source
    /// file). Sorted by address.
    ///
    /// For an exact name, ask only when [`Self::match_functions`] found nothing: a
    /// symbol of that name is otherwise the DWARF function's own (or an alias of it).
    pub fn match_symbol_functions(&self, pattern: &str) -> Vec<Function> {
        if pattern.contains('@') {
            return Vec::new();
        }
        let table = self.stap_symbols();
        let wild = pattern.contains(['*', '?']);
        let dwarf = self.has_debug_info();
        let (names, starts): (HashSet<&str>, HashSet<u64>) = if wild && dwarf {
            let fs = self.functions();
            (
                fs.iter()
                    .chain(self.inline_instances_all())
                    .map(|f| f.name.as_str())
                    .collect(),
                fs.iter()
                    .chain(self.inline_instances_all())
                    .map(|f| f.entry_pc)
                    .collect(),
            )
        } else {
            Default::default()
        };
        if !wild {
            // stap keeps one symbol per name: the last of the table. At the entry of a
            // DWARF function (a local alias only the debug file's table has, such as
            // libc's `__malloc`), it is that function.
            let Some((i, (a, s, n))) = table
                .iter()
                .enumerate()
                .rev()
                .find(|(_, (_, _, n))| n == pattern)
            else {
                return Vec::new();
            };
            if dwarf {
                if let Some(f) = self.function_at(*a).filter(|f| f.entry_pc == *a) {
                    return vec![f.clone()];
                }
            }
            return vec![symbol_function(i, *a, *s, n)];
        }
        let mut order: Vec<usize> = (0..table.len()).collect();
        // By address, table order kept among the symbols of one address.
        order.sort_by_key(|&i| table[i].0);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for i in order {
            let (addr, size, name) = &table[i];
            if !wildcard_match(pattern, name)
                || names.contains(name.as_str())
                || starts.contains(addr)
            {
                continue;
            }
            if seen.insert(*addr) {
                out.push(symbol_function(i, *addr, *size, name));
            }
        }
        out
    }
}

/// stap's edit distance (util.cxx `levenshtein`): substituting, inserting or deleting
/// a character costs 2 (a substitution by the same letter in the other case 1), while
/// the borders of the table count 1 per character, as stap's do.
pub fn stap_levenshtein(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb {
                prev[j]
            } else {
                let sub = if ca.eq_ignore_ascii_case(cb) { 1 } else { 2 };
                (prev[j] + sub).min(prev[j + 1] + 2).min(cur[j] + 2)
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The `max` names closest to `target` as stap's `levenshtein_suggest` picks them:
/// by [`stap_levenshtein`], ties in name order (stap walks a sorted set).
pub fn stap_suggest<'a>(
    target: &str,
    names: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<String> {
    let mut set: Vec<&str> = names.into_iter().filter(|n| !n.is_empty()).collect();
    set.sort_unstable();
    set.dedup();
    let mut scored: Vec<(usize, &str)> = set
        .into_iter()
        .map(|n| (stap_levenshtein(target, n), n))
        .collect();
    // Stable: equal scores keep name order.
    scored.sort_by_key(|(s, _)| *s);
    scored
        .into_iter()
        .take(max)
        .map(|(_, n)| n.to_string())
        .collect()
}

impl DebugInfo {
    /// The functions stap offers when `.function(NAME)` matches nothing ("no match
    /// (similar functions: ...)"): at most five names of DWARF functions (out of line
    /// or inlined) and function symbols, ranked by [`stap_suggest`].
    pub fn similar_functions(&self, name: &str) -> Vec<String> {
        let base = name.split('@').next().unwrap_or(name);
        let dwarf = self
            .has_debug_info()
            .then(|| self.functions().iter().chain(self.inline_instances_all()))
            .into_iter()
            .flatten()
            .map(|f| f.name.as_str());
        let syms = self.stap_symbols().iter().map(|(_, _, n)| n.as_str());
        stap_suggest(base, dwarf.chain(syms), 5)
    }
}

impl DebugInfo {
    /// The offset of a DIE in `.debug_info`, as stap's messages name it (`dieoffset
    /// 0x186`); `None` for functions made from symbols.
    pub fn die_offset(&self, d: DieRef) -> Option<u64> {
        let u = self.units.get(d.unit)?;
        let base = u.header.offset().0;
        Some((base + d.offset) as u64)
    }
}
