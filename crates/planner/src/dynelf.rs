//! What the dynamic linking structures of an ELF file say, for the probe points that
//! need no DWARF: PLT entries (`.plt`), the libraries an executable loads
//! (`.library`), and which functions a module exports (`.exported`).
//!
//! PLT entries are found by decoding each 16-byte entry of `.plt` and `.plt.sec`: an
//! entry that jumps through a GOT slot (`jmp *disp(%rip)`, possibly after `endbr64`
//! or as `bnd jmp`) belongs to the `R_X86_64_JUMP_SLOT` (or `R_X86_64_IRELATIVE`)
//! relocation of that slot, whose symbol names it. With IBT (`-z ibtplt`, `.plt.sec`)
//! the `.plt` entries only push a relocation index for lazy binding and the calls go
//! through `.plt.sec`, so those are the entries every call runs; without it the
//! `.plt` entry's first instruction is that jump, run on every call, lazily bound or
//! not (`-z now`). `.plt.got` (functions whose address is also taken) is not part of
//! stap's `.plt` and is left out here too.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationFlags};

/// One PLT entry: the imported function's name (empty for an `IRELATIVE` slot, as
/// stap lists it) and the link-time address of the entry's first instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PltEntry {
    pub name: String,
    pub addr: u64,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The PLT entries of `path`, in address order.
pub(crate) fn plt_entries(path: &Path) -> Result<Vec<PltEntry>, String> {
    let data = read(path)?;
    plt_entries_of(&data).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`plt_entries`] on the bytes of an ELF file.
pub(crate) fn plt_entries_of(data: &[u8]) -> Result<Vec<PltEntry>, String> {
    let file = object::File::parse(data).map_err(|e| e.to_string())?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err("PLT probes need an x86_64 ELF file".to_string());
    }
    // GOT slot -> symbol name, from the jump-slot relocations.
    let mut slots: HashMap<u64, String> = HashMap::new();
    if let Some(relocs) = file.dynamic_relocations() {
        for (offset, r) in relocs {
            let RelocationFlags::Elf { r_type } = r.flags() else {
                continue;
            };
            if r_type != elf::R_X86_64_JUMP_SLOT && r_type != elf::R_X86_64_IRELATIVE {
                continue;
            }
            let name = match r.target() {
                object::RelocationTarget::Symbol(i) => file
                    .dynamic_symbol_table()
                    .and_then(|t| t.symbol_by_index(i).ok())
                    .and_then(|s| s.name().ok())
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            };
            slots.insert(offset, name);
        }
    }
    let mut out = Vec::new();
    for sec_name in [".plt", ".plt.sec"] {
        let Some(sec) = file.section_by_name(sec_name) else {
            continue;
        };
        let Ok(bytes) = sec.data() else {
            continue;
        };
        let base = sec.address();
        for (i, entry) in bytes.chunks_exact(16).enumerate() {
            let at = base + 16 * i as u64;
            if let Some(slot) = got_jump(entry, at) {
                if let Some(name) = slots.get(&slot) {
                    out.push(PltEntry {
                        name: name.clone(),
                        addr: at,
                    });
                }
            }
        }
    }
    out.sort_by_key(|e| e.addr);
    Ok(out)
}

/// The GOT slot an entry at `at` jumps through, if it is a PLT-style jump:
/// `[endbr64] [bnd] jmp *disp32(%rip)`.
pub(crate) fn got_jump(entry: &[u8], at: u64) -> Option<u64> {
    let mut o = 0usize;
    if entry.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        o = 4;
    }
    if entry.get(o) == Some(&0xf2) {
        o += 1;
    }
    if entry.get(o..o + 2)? != [0xff, 0x25] {
        return None;
    }
    let disp = i32::from_le_bytes(entry.get(o + 2..o + 6)?.try_into().ok()?);
    let next = at.wrapping_add(o as u64 + 6);
    Some(next.wrapping_add(disp as i64 as u64))
}

/// The dynamic section facts of one file.
#[derive(Default)]
struct Dynamic {
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    interp: Option<String>,
}

fn dynamic(data: &[u8]) -> Result<Dynamic, String> {
    let file = ElfFile64::<object::Endianness>::parse(data).map_err(|e| e.to_string())?;
    let endian = file.endian();
    let mut d = Dynamic::default();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_INTERP {
            if let Ok(bytes) = ph.data(endian, data) {
                let s = bytes.split(|b| *b == 0).next().unwrap_or_default();
                d.interp = Some(String::from_utf8_lossy(s).into_owned());
            }
        }
    }
    let sections = file
        .elf_header()
        .sections(endian, data)
        .map_err(|e| e.to_string())?;
    let Some((dyns, link)) = sections.dynamic(endian, data).map_err(|e| e.to_string())? else {
        return Ok(d);
    };
    let strings = sections
        .strings(endian, data, link)
        .map_err(|e| e.to_string())?;
    for dy in dyns {
        let tag = dy.tag(endian);
        let list = match tag {
            elf::DT_NEEDED => &mut d.needed,
            elf::DT_RPATH => &mut d.rpath,
            elf::DT_RUNPATH => &mut d.runpath,
            elf::DT_NULL => break,
            _ => continue,
        };
        if let Ok(s) = dy.string(endian, strings) {
            list.push(String::from_utf8_lossy(s).into_owned());
        }
    }
    Ok(d)
}

/// Directories of a `DT_RPATH`/`DT_RUNPATH` string, `$ORIGIN` replaced by `origin`.
fn path_list(s: &str, origin: &Path) -> Vec<PathBuf> {
    let o = origin.to_string_lossy();
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(p.replace("${ORIGIN}", &o).replace("$ORIGIN", &o)))
        .collect()
}

/// The directories of `/etc/ld.so.conf` (with its `include` globs, one level of `*`
/// in the last component), then the system's default directories.
fn system_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut seen = HashSet::new();
    read_conf(Path::new("/etc/ld.so.conf"), &mut dirs, &mut seen, 0);
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

fn read_conf(path: &Path, dirs: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>, depth: u32) {
    if depth > 4 || !seen.insert(path.to_path_buf()) {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pat) = line.strip_prefix("include") {
            let pat = pat.trim();
            let pat = if pat.starts_with('/') {
                PathBuf::from(pat)
            } else {
                path.parent().unwrap_or(Path::new("/")).join(pat)
            };
            let (Some(dir), Some(fpat)) = (pat.parent(), pat.file_name()) else {
                continue;
            };
            let fpat = fpat.to_string_lossy();
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| {
                            p.file_name().is_some_and(|n| {
                                debuginfo::wildcard_match(&fpat, &n.to_string_lossy())
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            for f in files {
                read_conf(&f, dirs, seen, depth + 1);
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
}

/// The shared libraries a program loads, as the dynamic linker finds them: its
/// interpreter, then its `DT_NEEDED` entries and theirs, breadth first, each searched
/// in `DT_RPATH` (when the file has no `DT_RUNPATH`), `LD_LIBRARY_PATH`,
/// `DT_RUNPATH`, then the directories of `/etc/ld.so.conf` and the defaults.
/// Canonical paths, each once.
pub(crate) fn loaded_libraries(exe: &Path) -> Result<Vec<PathBuf>, String> {
    let data = read(exe)?;
    let top = dynamic(&data).map_err(|e| format!("{}: {e}", exe.display()))?;
    let env: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let system = system_dirs();
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    if let Some(i) = &top.interp {
        if let Ok(p) = std::fs::canonicalize(i) {
            out.push(p);
        }
    }
    let mut queue: std::collections::VecDeque<(String, PathBuf, Dynamic)> = top
        .needed
        .iter()
        .map(|n| {
            (
                n.clone(),
                exe.to_path_buf(),
                Dynamic {
                    rpath: top.rpath.clone(),
                    runpath: top.runpath.clone(),
                    ..Default::default()
                },
            )
        })
        .collect();
    while let Some((name, from, dy)) = queue.pop_front() {
        if !seen_names.insert(name.clone()) {
            continue;
        }
        let origin = from.parent().unwrap_or(Path::new("/")).to_path_buf();
        let found = if name.contains('/') {
            Some(PathBuf::from(&name))
        } else {
            let mut dirs = Vec::new();
            if dy.runpath.is_empty() {
                for r in &dy.rpath {
                    dirs.extend(path_list(r, &origin));
                }
            }
            dirs.extend(env.iter().cloned());
            for r in &dy.runpath {
                dirs.extend(path_list(r, &origin));
            }
            dirs.extend(system.iter().cloned());
            dirs.into_iter()
                .map(|d| d.join(&name))
                .find(|p| is_elf64(p))
        };
        let Some(found) = found.and_then(|p| std::fs::canonicalize(p).ok()) else {
            continue;
        };
        if out.contains(&found) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&found) {
            if let Ok(d) = dynamic(&bytes) {
                for n in &d.needed {
                    queue.push_back((
                        n.clone(),
                        found.clone(),
                        Dynamic {
                            rpath: d.rpath.clone(),
                            runpath: d.runpath.clone(),
                            ..Default::default()
                        },
                    ));
                }
            }
        }
        out.push(found);
    }
    Ok(out)
}

/// A 64-bit ELF file (the dynamic linker skips files of another class).
fn is_elf64(p: &Path) -> bool {
    use std::io::Read;
    let mut h = [0u8; 5];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut h))
        .is_ok()
        && h == [0x7f, b'E', b'L', b'F', 2]
}

/// Does `pattern` (a `.library(...)` argument) name `lib`? As stap does: a pattern
/// with wildcards is matched against the whole path; a path is compared after
/// canonicalisation; a bare name matches the library's file name (or what it
/// canonicalises from, e.g. `libc.so.6` for `/usr/lib/x86_64-linux-gnu/libc.so.6`).
pub(crate) fn library_matches(pattern: &str, lib: &Path) -> bool {
    let text = lib.to_string_lossy();
    if pattern.contains(['*', '?', '[']) {
        return debuginfo::wildcard_match(pattern, &text);
    }
    if pattern.contains('/') {
        return std::fs::canonicalize(pattern).is_ok_and(|p| p == lib);
    }
    lib.file_name()
        .is_some_and(|n| n.to_string_lossy() == pattern)
        || lib
            .parent()
            .map(|d| d.join(pattern))
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_some_and(|p| p == lib)
}

/// Link-time addresses of the functions `path` exports: `FUNC` (or `IFUNC`) symbols
/// that are global or weak, with default or protected visibility, in its symbol table
/// or, for a stripped file, its dynamic symbol table.
pub(crate) fn exported_addrs(path: &Path) -> Result<HashSet<u64>, String> {
    let data = read(path)?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashSet::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != object::SymbolKind::Text || sym.is_undefined() || !sym.is_global() {
            continue;
        }
        if let object::SymbolFlags::Elf { st_other, .. } = sym.flags() {
            let vis = st_other.visibility();
            if vis == elf::STV_HIDDEN || vis == elf::STV_INTERNAL {
                continue;
            }
        }
        out.insert(sym.address());
    }
    Ok(out)
}

/// The value of a context variable at a `.plt` site: `$$name` is the imported
/// function's name (a constant, as in stap); `$$parms`, `$$vars` and `$$locals` are
/// empty (no DWARF describes a PLT entry); anything else is stap's error.
pub(crate) fn plt_var(
    pp: &str,
    name: &str,
    t: &script_syntax::ast::TargetExpr,
) -> Result<capture_plan::Decode, String> {
    use capture_plan::{Decode, PrettyPart};
    let text = match t.name.as_str() {
        "$name" if t.path.is_empty() => name.to_string(),
        "$parms" | "$vars" | "$locals" if t.path.is_empty() => String::new(),
        _ => {
            return Err(format!(
                "unable to find plt variable '${}' (alternatives: $$name) in probe point {pp}",
                t.name
            ))
        }
    };
    Ok(Decode::Pretty(vec![PrettyPart::Text(text)]))
}
