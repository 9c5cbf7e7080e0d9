//! Tests for debuginfo: C fixtures compiled with gcc at -O0 and -O2, checked against
//! gdb's breakpoint addresses, `nm`, and values the fixture prints itself.

use super::*;
use capture_plan::{DwarfReg, Op};
use std::process::Command;

pub(crate) const FIXTURE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <string.h>
enum color { RED, GREEN = 5, BLUE };
struct req { int id; char name[16]; struct req *next; unsigned flags:3; int sflag:5; long big; enum color c; short arr[4]; };
int counter = 7;
static inline int sq(int v) { return v * v; }
__attribute__((noinline)) int handle(struct req *r, int n) { int local = n * 2; counter += local + sq(n); return local + r->id; }
__attribute__((noinline)) long many(long a, long b, long c, long d, long e, long f, long g, long h) { return a+b+c+d+e+f+g+h; }
__attribute__((noinline)) const char *greet(const char *who, unsigned char u, short s) { printf("%s %d %d\n", who, u, s); return who; }
int main(int argc, char **argv) {
  struct req r = {0}; r.id = 42; strcpy(r.name, "hello"); r.flags = 5; r.sflag = -3; r.c = BLUE;
  printf("offsets %zu %zu %zu %zu %zu\n", offsetof(struct req, name), offsetof(struct req, next), offsetof(struct req, big), offsetof(struct req, c), offsetof(struct req, arr));
  int t = handle(&r, argc + 2); t += many(1,2,3,4,5,6,7,8); greet("world", 200, -5);
  printf("%d %d\n", t, sq(argc+3)); return 0; }
"#;

/// Compiles `src` with gcc at `opt` into a fresh temp dir; returns the binary path.
pub(crate) fn compile(name: &str, src: &str, opt: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("debuginfo-test-{}-{name}{opt}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    // Tests run in parallel: compile once, under a lock, and publish by renaming.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !out.exists() {
        std::fs::write(&c, src).unwrap();
        let tmp = dir.join(format!("{name}.tmp"));
        let st = Command::new("gcc")
            .args(["-g", opt, "-o"])
            .arg(&tmp)
            .arg(&c)
            .status()
            .expect("gcc runs");
        assert!(st.success());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

fn gdb_break_addr(bin: &Path, func: &str) -> Option<u64> {
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", &format!("break {func}")])
        .arg(bin)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.split(" at 0x").nth(1)?;
    let hex: String = at.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    u64::from_str_radix(&hex, 16).ok()
}

fn nm_addr(bin: &Path, func: &str) -> u64 {
    let out = Command::new("nm").arg(bin).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() == 3 && w[2] == func {
            return u64::from_str_radix(w[0], 16).unwrap();
        }
    }
    panic!("{func} not in nm output");
}

fn func<'a>(di: &'a DebugInfo, name: &str) -> &'a Function {
    let m = di.match_functions(name);
    assert_eq!(m.len(), 1, "{name}");
    m[0]
}

#[test]
fn o0_functions_and_prologue_skip_match_gdb() {
    let bin = compile("f", FIXTURE, "-O0");
    let di = DebugInfo::open(&bin).unwrap();
    assert!(di.is_pie());
    assert!(di.build_id().is_some());
    for name in ["handle", "many", "greet", "main"] {
        let f = func(&di, name);
        assert_eq!(f.low_pc, nm_addr(&bin, name), "{name}");
        assert!(!f.optimized);
        if let Some(g) = gdb_break_addr(&bin, name) {
            assert_eq!(di.probe_addr(f), g, "{name}");
        }
    }
    assert_eq!(func(&di, "handle").decl_line, 9);
    assert_eq!(di.match_functions("h*").len(), 1);
    assert_eq!(
        di.match_functions("*@f.c").len(),
        5,
        "sq is out of line at -O0"
    );
    assert_eq!(di.match_functions("handle@f.c:9").len(), 1);
    assert_eq!(di.match_functions("handle@f.c:10").len(), 0);
    assert_eq!(di.match_functions("handle@g.c").len(), 0);
    assert_eq!(di.close_matches("handel"), vec!["handle".to_string()]);
}

#[test]
fn o0_variables_and_frame_base() {
    let bin = compile("f", FIXTURE, "-O0");
    let di = DebugInfo::open(&bin).unwrap();
    let f = func(&di, "handle");
    let pc = di.probe_addr(f);
    let vars = di.variables_at(f, pc);
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["r", "n", "local"]);
    assert!(vars[0].is_param && !vars[2].is_param);
    // After the prologue the CFA is rbp+16, and gcc's frame base is the CFA.
    assert_eq!(di.cfa_at(pc), Some((6, 16)));
    match &vars[0].location {
        Location::Memory(ops) => assert_eq!(ops[0], Op::Reg(DwarfReg(6))),
        other => panic!("{other:?}"),
    }
    // At the entry pc the CFA is rsp+8.
    assert_eq!(di.cfa_at(f.entry_pc), Some((7, 8)));
    let t = di.type_of(vars[0].ty);
    assert_eq!(t.name, "struct req*");
    let (_, st) = di.strip(match t.kind {
        TypeKind::Pointer(p) => p,
        _ => panic!(),
    });
    let TypeKind::Struct { members, .. } = st.kind else {
        panic!("{st:?}")
    };
    // The fixture prints: offsets 4 24 40 48 52.
    let off = |n: &str| members.iter().find(|m| m.name == n).unwrap().offset;
    assert_eq!(
        [off("name"), off("next"), off("big"), off("c"), off("arr")],
        [4, 24, 40, 48, 52]
    );
    let flags = members.iter().find(|m| m.name == "flags").unwrap();
    assert_eq!((flags.offset, flags.bits), (32, Some((0, 3, 1))));
    let sflag = members.iter().find(|m| m.name == "sflag").unwrap();
    assert_eq!((sflag.offset, sflag.bits), (32, Some((3, 5, 1))));
    let name_t = di.type_of(members.iter().find(|m| m.name == "name").unwrap().ty);
    // stap spells every array `ELEM[]`, whatever its dimensions.
    assert_eq!(name_t.name, "char[]");
    assert_eq!(name_t.size, Some(16));
    let c_t = di.type_of(members.iter().find(|m| m.name == "c").unwrap().ty);
    let TypeKind::Enum { enumerators, .. } = c_t.kind else {
        panic!()
    };
    assert_eq!(
        enumerators[2],
        Enumerator {
            name: "BLUE".into(),
            value: 6
        }
    );

    // The 7th and 8th arguments live in the caller's frame: CFA+0 and CFA+8.
    let m = func(&di, "many");
    let vars = di.variables_at(m, di.probe_addr(m));
    assert_eq!(vars.len(), 8);
    assert_eq!(
        vars[6].location,
        Location::Memory(vec![
            Op::Reg(DwarfReg(6)),
            Op::Const(16),
            Op::Add,
            Op::Const(0),
            Op::Add
        ])
    );
}

#[test]
fn o2_entry_pc_registers_and_inlines() {
    let bin = compile("f", FIXTURE, "-O2");
    let di = DebugInfo::open(&bin).unwrap();
    let f = func(&di, "handle");
    assert!(f.optimized);
    assert_eq!(di.probe_addr(f), nm_addr(&bin, "handle"));
    let vars = di.variables_at(f, f.entry_pc);
    let r = vars.iter().find(|v| v.name == "r").unwrap();
    assert_eq!(r.location, Location::Register(5));
    let n = vars.iter().find(|v| v.name == "n").unwrap();
    assert_eq!(n.location, Location::Register(4));
    // sq is inlined everywhere at -O2: into handle and main.
    assert!(di.match_functions("sq").is_empty());
    let inl = di.match_inlines("sq");
    assert!(inl.len() >= 2, "{inl:?}");
    for i in &inl {
        let vars = di.variables_at(i, i.entry_pc);
        assert_eq!(vars[0].name, "v");
    }
    // 7th argument at -O2: in the caller's frame, CFA+0 where CFA is rsp+8 at entry.
    let m = func(&di, "many");
    let vars = di.variables_at(m, m.entry_pc);
    assert_eq!(
        vars[6].location,
        Location::Memory(vec![
            Op::Reg(DwarfReg(7)),
            Op::Const(8),
            Op::Add,
            Op::Const(0),
            Op::Add
        ])
    );
}

#[test]
fn no_debug_info_names_the_file() {
    let dir = std::env::temp_dir().join(format!("debuginfo-nodebug-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("n.c");
    std::fs::write(&c, "int main(void){return 0;}\n").unwrap();
    let out = dir.join("n");
    assert!(Command::new("gcc")
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .status()
        .unwrap()
        .success());
    let err = DebugInfo::open(&out).unwrap_err();
    assert!(matches!(err, Error::NoDebugInfo(..)));
    assert!(err.to_string().contains(&out.display().to_string()));
}

#[test]
fn wildcards_and_distance() {
    assert!(wildcard_match("h*e", "handle"));
    assert!(wildcard_match("h?ndle", "handle"));
    assert!(!wildcard_match("h?ndle", "hndle"));
    assert!(wildcard_match("*", ""));
    assert!(file_matches("a.c", "/tmp/x/a.c"));
    assert!(file_matches("x/a.c", "/tmp/x/a.c"));
    assert!(!file_matches("b.c", "/tmp/x/ab.c"));
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert!(producer_optimized("GNU C17 12.2.0 -mtune=generic -g -O2"));
    assert!(!producer_optimized("GNU C17 12.2.0 -O2 -O0 -g"));
    assert!(!producer_optimized("GNU C17 12.2.0 -g"));
}

/// Exercises every query on `di`; used on corrupted files, where only "no panic"
/// matters.
fn exercise(di: &DebugInfo) {
    // The quick name path first, before the full list exists.
    for n in ["handle", "sq", "main", "greet"] {
        for f in di.match_functions(n).into_iter().chain(di.match_inlines(n)) {
            let _ = di.variables_at(f, di.probe_addr(f));
        }
    }
    for f in di.functions().iter().chain(di.inline_instances_all()) {
        let pc = di.probe_addr(f);
        let _ = di.cfa_at(pc);
        let _ = di.variables_at_entry(f);
        for v in di.variables_at(f, pc) {
            let t = di.type_of(v.ty);
            let (_, s) = di.strip(v.ty);
            if let TypeKind::Pointer(p) = s.kind {
                let _ = di.type_of(p);
                let _ = di.strip(p);
            }
            let _ = t.name.len();
        }
        let _ = di.inline_instances(f);
        let _ = di.line_at(pc);
    }
    let _ = di.line_addrs("*", 9);
    let _ = di.match_functions("*@*.c:9");
    let _ = di.close_matches("handel");
    let _ = di.global_at("counter", None, 0x1000);
    let _ = di.find_type("struct req");
}

#[test]
fn corrupted_dwarf_never_panics() {
    use object::{Object, ObjectSection};
    let bin = compile("f", FIXTURE, "-O2");
    let bytes = std::fs::read(&bin).unwrap();
    let ranges: Vec<(usize, usize)> = {
        let file = object::File::parse(&*bytes).unwrap();
        [
            ".debug_info",
            ".debug_abbrev",
            ".debug_line",
            ".debug_loclists",
            ".debug_rnglists",
            ".eh_frame",
            ".debug_str",
        ]
        .iter()
        .filter_map(|n| file.section_by_name(n)?.file_range())
        .map(|(o, l)| (o as usize, l as usize))
        .collect()
    };
    assert!(ranges.len() >= 5);
    let dir = bin.parent().unwrap().to_path_buf();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut opened = 0;
    for round in 0..200 {
        let mut b = bytes.clone();
        let (off, len) = ranges[(next() as usize) % ranges.len()];
        for _ in 0..1 + next() % 8 {
            let i = off + (next() as usize) % len.max(1);
            b[i] = next() as u8;
        }
        let p = dir.join(format!("corrupt-{round}"));
        std::fs::write(&p, &b).unwrap();
        if let Ok(di) = DebugInfo::open(&p) {
            exercise(&di);
            opened += 1;
        }
        let _ = std::fs::remove_file(&p);
    }
    // Most single-byte corruptions still open: the queries above really ran.
    assert!(opened > 50, "{opened}");
    // Compressed sections (read by the threads that inflate them) too.
    let gz = build(&scratch("corrupt-gz"), "gz", &["-gz"]);
    let gz_bytes = std::fs::read(&gz).unwrap();
    let gz_ranges: Vec<(usize, usize)> = {
        let file = object::File::parse(&*gz_bytes).unwrap();
        file.sections()
            .filter(|s| s.name().is_ok_and(|n| n.starts_with(".debug_")))
            .filter_map(|s| s.file_range())
            .map(|(o, l)| (o as usize, l as usize))
            .collect()
    };
    assert!(gz_ranges.len() >= 5);
    for round in 0..100 {
        let mut b = gz_bytes.clone();
        let (off, len) = gz_ranges[(next() as usize) % gz_ranges.len()];
        for _ in 0..1 + next() % 8 {
            let i = off + (next() as usize) % len.max(1);
            b[i] = next() as u8;
        }
        let p = dir.join(format!("corrupt-gz-{round}"));
        std::fs::write(&p, &b).unwrap();
        if let Ok(di) = DebugInfo::open(&p) {
            exercise(&di);
        }
        let _ = std::fs::remove_file(&p);
    }
    // Truncations and garbage never panic either.
    for cut in [0usize, 10, 64, 1000, bytes.len() / 2] {
        let p = dir.join("truncated");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert!(DebugInfo::open(&p).is_err() || cut > 1000);
    }
}

#[test]
fn compressed_debug_sections() {
    // `-gz` compresses the DWARF sections (SHF_COMPRESSED, zlib).
    let dir = std::env::temp_dir().join(format!("debuginfo-gz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("f.c");
    std::fs::write(&c, FIXTURE).unwrap();
    let out = dir.join("f");
    let ok = Command::new("gcc")
        .args(["-g", "-gz", "-O0", "-o"])
        .arg(&out)
        .arg(&c)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return; // The toolchain cannot compress: nothing to test.
    }
    let di = DebugInfo::open(&out).unwrap();
    let f = func(&di, "handle");
    assert_eq!(f.low_pc, nm_addr(&out, "handle"));
    let names: Vec<String> = di
        .variables_at(f, di.probe_addr(f))
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["r", "n", "local"]);
}

#[test]
fn separate_debug_file_by_build_id() {
    // Debian's libc6-dbg puts libc's DWARF under /usr/lib/debug/.build-id.
    let libc = Command::new("gcc")
        .arg("-print-file-name=libc.so.6")
        .output()
        .unwrap();
    let libc = std::fs::canonicalize(String::from_utf8_lossy(&libc.stdout).trim()).unwrap();
    match DebugInfo::open(&libc) {
        Ok(di) => {
            assert!(di.has_debug_info());
            let m = di.match_functions("malloc");
            assert!(!m.is_empty());
            let vars = di.variables_at(m[0], di.probe_addr(m[0]));
            assert_eq!(vars[0].name, "bytes");
        }
        Err(e) => {
            // No libc debug package here: the error names what was searched.
            let text = e.to_string();
            assert!(text.contains("no debug information found in"), "{text}");
            assert!(text.contains("/usr/lib/debug/.build-id/"), "{text}");
        }
    }
}

#[test]
fn split_hot_cold_function_enters_at_its_hot_part() {
    let src = r#"
#include <stdio.h>
#include <stdlib.h>
__attribute__((cold,noinline)) void oops(const char *m, int x) { fprintf(stderr, "%s %d\n", m, x); }
__attribute__((noipa)) int split(int x) {
  if (__builtin_expect(x > 1000, 0)) { oops("big", x); oops("very", x + 1); if (x > 5000) abort(); return -1; }
  return x * 2;
}
int main(int argc, char **argv) { return split(argc) + split(atoi(argc > 1 ? argv[1] : "0")); }
"#;
    let bin = compile("split", src, "-O2");
    let di = DebugInfo::open(&bin).unwrap();
    let f = func(&di, "split");
    // gcc puts split.cold (in .text.unlikely) below split itself.
    assert_eq!(f.ranges.len(), 2, "{f:?}");
    assert!(f.low_pc < f.entry_pc);
    assert_eq!(di.probe_addr(f), nm_addr(&bin, "split"));
    let vars = di.variables_at(f, f.entry_pc);
    assert_eq!(vars[0].location, Location::Register(5));
}

#[test]
fn sdt_notes_and_operands() {
    let src = r###"#include <stdio.h>
#define SDT_NOTE(prov, nm, argfmt) \
  "990: nop\n" \
  ".pushsection .note.stapsdt,\"?\",\"note\"\n" \
  ".balign 4\n" \
  ".4byte 992f-991f, 994f-993f, 3\n" \
  "991: .asciz \"stapsdt\"\n" \
  "992: .balign 4\n" \
  "993: .8byte 990b\n" \
  ".8byte _.stapsdt.base\n" \
  ".8byte 0\n" \
  ".asciz \"" #prov "\"\n" \
  ".asciz \"" #nm "\"\n" \
  ".asciz \"" argfmt "\"\n" \
  "994: .balign 4\n" \
  ".popsection\n" \
  ".ifndef _.stapsdt.base\n" \
  ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
  ".weak _.stapsdt.base\n" \
  ".hidden _.stapsdt.base\n" \
  "_.stapsdt.base: .space 1\n" \
  ".size _.stapsdt.base, 1\n" \
  ".popsection\n" \
  ".endif\n"
#define PROBE4(prov, nm, a, b, c, d) __asm__ __volatile__(SDT_NOTE(prov, nm, "-4@%[A] 8@%[B] 8@%[C] -2@%[D]") :: [A] "nor" (a), [B] "nor" (b), [C] "m" (c), [D] "n" (d))
long total = 5;
const char *names[] = { "zero", "one", "two", "three" };
__attribute__((noipa)) void work(int i, const char *name) {
  PROBE4(app, step, i, name, total, -7);
  total += i;
  printf("work %d %s\n", i, name);
}
int main(void) { for (int i = 0; i < 3; i++) work(i - 1, names[i]); return 0; }
"###;
    for opt in ["-O0", "-O2"] {
        let bin = compile("sdt", src, opt);
        let di = DebugInfo::open(&bin).unwrap();
        let p = &di.sdt_probes()[0];
        assert_eq!(
            (p.provider.as_str(), p.name.as_str(), p.semaphore),
            ("app", "step", 0)
        );
        assert_eq!(p.args.len(), 4);
        assert_eq!((p.args[0].size, p.args[0].signed), (4, true));
        assert_eq!((p.args[1].size, p.args[1].signed), (8, false));
        // `8@total(%rip)`: the global, relative to rip in this PIE.
        let total = di.global_at("total", None, p.pc).unwrap();
        assert_eq!(p.args[2].location, total.location, "{opt}");
        assert_eq!(
            p.args[3].location,
            Location::Constant((-7i64 as u64).to_le_bytes().to_vec())
        );
        // The probe address is the nop inside work().
        assert_eq!(di.function_at(p.pc).unwrap().name, "work");
    }
}

#[test]
fn declared_struct_resolves_to_its_definition() {
    let dir = std::env::temp_dir().join(format!("debuginfo-decl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.c"),
        "struct opaque;\nint use(struct opaque *o);\nint main(void) { return use(0) ; }\n\
         __attribute__((noipa)) int peek(struct opaque *o) { return o != 0; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.c"),
        "struct opaque { int x; long y; };\nint use(struct opaque *o) { return o ? o->x : 0; }\n",
    )
    .unwrap();
    let out = dir.join("ab");
    let st = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&out)
        .arg(dir.join("a.c"))
        .arg(dir.join("b.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let di = DebugInfo::open(&out).unwrap();
    let f = func(&di, "peek");
    let vars = di.variables_at(f, di.probe_addr(f));
    let TypeKind::Pointer(p) = di.type_of(vars[0].ty).kind else {
        panic!()
    };
    let (_, t) = di.strip(p);
    let TypeKind::Struct { members, .. } = t.kind else {
        panic!("{t:?}")
    };
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["x", "y"]);
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("debuginfo-sep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles FIXTURE (with `extra` defines/flags) to `dir/name`.
fn build(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, FIXTURE).unwrap();
    let out = dir.join(name);
    run_ok(
        Command::new("gcc")
            .args(["-g", "-O2"])
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&c),
    );
    out
}

/// The facts a probe on `handle` needs, to compare a split build with the whole one.
fn handle_facts(di: &DebugInfo) -> (u64, Vec<String>, usize) {
    let f = di.match_functions("handle");
    assert_eq!(f.len(), 1, "{}", di.path().display());
    let pc = di.probe_addr(f[0]);
    let vars = di.variables_at(f[0], pc);
    let names = vars.iter().map(|v| v.name.clone()).collect();
    (pc, names, di.match_inlines("sq").len())
}

#[test]
fn stripped_binary_finds_its_debuglink_file() {
    let dir = scratch("debuglink");
    // No build-id: the debuglink name and its CRC are all there is to go by.
    let full = build(&dir, "app", &["-Wl,--build-id=none"]);
    let want = handle_facts(&DebugInfo::open(&full).unwrap());
    let bin = dir.join("bin");
    std::fs::create_dir_all(bin.join(".debug")).unwrap();
    run_ok(
        Command::new("objcopy")
            .args(["--only-keep-debug"])
            .arg(&full)
            .arg(bin.join(".debug/app.debug")),
    );
    let stripped = bin.join("app");
    run_ok(
        Command::new("objcopy")
            .args(["--strip-debug", "--add-gnu-debuglink"])
            .arg(bin.join(".debug/app.debug"))
            .arg(&full)
            .arg(&stripped),
    );
    let di = DebugInfo::open_in(&stripped, &[]).unwrap();
    assert_eq!(handle_facts(&di), want);
    // The same name under a debug root, mirroring the binary's directory.
    let root = dir.join("root");
    let mirror = root.join(bin.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::rename(bin.join(".debug/app.debug"), mirror.join("app.debug")).unwrap();
    assert!(DebugInfo::open_in(&stripped, &[]).is_err());
    let di = DebugInfo::open_in(&stripped, std::slice::from_ref(&root)).unwrap();
    assert_eq!(handle_facts(&di), want);
    // Another build's debug file under that name is refused by its CRC.
    let other = build(
        &dir,
        "other",
        &["-Wl,--build-id=none", "-DOTHER=1", "-fno-inline"],
    );
    run_ok(
        Command::new("objcopy")
            .args(["--only-keep-debug"])
            .arg(&other)
            .arg(mirror.join("app.debug")),
    );
    let e = DebugInfo::open_in(&stripped, &[root]).unwrap_err();
    assert!(matches!(e, Error::BuildIdMismatch { .. }), "{e}");
    assert!(e.to_string().contains("crc"), "{e}");
}

#[test]
fn stripped_binary_finds_its_build_id_file_in_a_private_root() {
    let dir = scratch("buildid");
    let full = build(&dir, "app", &["-Wl,--build-id"]);
    let whole = DebugInfo::open(&full).unwrap();
    let want = handle_facts(&whole);
    let id = whole
        .build_id()
        .expect("gcc -Wl,--build-id gives one")
        .to_vec();
    let rel = build_id_rel(&id).unwrap();
    let stripped = dir.join("app.stripped");
    run_ok(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&full)
            .arg(&stripped),
    );
    let root = dir.join("root");
    // Nothing there yet: the error lists every place searched and what provides it.
    let e = DebugInfo::open_in(&stripped, std::slice::from_ref(&root)).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&root.join(&rel).display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&format!("providing /usr/lib/debug/{}", rel.display())),
        "{text}"
    );
    std::fs::create_dir_all(root.join(&rel).parent().unwrap()).unwrap();
    run_ok(
        Command::new("objcopy")
            .args(["--only-keep-debug"])
            .arg(&full)
            .arg(root.join(&rel)),
    );
    let di = DebugInfo::open_in(&stripped, &[dir.join("nothing"), root.clone()]).unwrap();
    assert_eq!(handle_facts(&di), want);
    // The session-wide setting reaches plain `open`.
    set_debug_dirs(Some(vec![root.clone()]));
    let via_setting = DebugInfo::open(&stripped).map(|d| handle_facts(&d));
    set_debug_dirs(None);
    assert_eq!(via_setting.unwrap(), want);
    // A debug file of another build at this build-id's path is refused.
    let other = build(
        &dir,
        "other",
        &["-Wl,--build-id", "-DOTHER=1", "-fno-inline"],
    );
    run_ok(
        Command::new("objcopy")
            .args(["--only-keep-debug"])
            .arg(&other)
            .arg(root.join(&rel)),
    );
    let e = DebugInfo::open_in(&stripped, &[root]).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::BuildIdMismatch { .. }), "{text}");
    assert!(text.contains(&hex(&id)), "{text}");
}

/// The compression format of `.debug_info` in `path`, if compressed.
fn debug_info_compression(path: &Path) -> Option<object::CompressionFormat> {
    let bytes = std::fs::read(path).unwrap();
    let f = object::File::parse(&*bytes).unwrap();
    let s = f.section_by_name(".debug_info")?;
    let r = s.compressed_file_range().ok()?;
    (r.format != object::CompressionFormat::None).then_some(r.format)
}

#[test]
fn compressed_debug_sections_zlib_and_zstd() {
    let dir = scratch("compressed");
    let full = build(&dir, "app", &[]);
    let want = handle_facts(&DebugInfo::open(&full).unwrap());
    let gz = build(&dir, "gz", &["-gz=zlib"]);
    assert_eq!(
        debug_info_compression(&gz),
        Some(object::CompressionFormat::Zlib)
    );
    assert_eq!(handle_facts(&DebugInfo::open(&gz).unwrap()), want);
    // gcc 12 has no -gz=zstd; binutils' objcopy can compress with zstd.
    let zst = dir.join("zst");
    let ok = Command::new("objcopy")
        .arg("--compress-debug-sections=zstd")
        .arg(&full)
        .arg(&zst)
        .status()
        .is_ok_and(|s| s.success());
    match debug_info_compression(&zst) {
        Some(fmt) if ok => {
            assert_eq!(fmt, object::CompressionFormat::Zstandard);
            assert_eq!(handle_facts(&DebugInfo::open(&zst).unwrap()), want);
        }
        _ => eprintln!("skipped zstd: objcopy cannot compress debug sections with zstd here"),
    }
    // A compressed separate debug file.
    let stripped = dir.join("app.stripped");
    run_ok(
        Command::new("objcopy")
            .args(["--only-keep-debug", "--compress-debug-sections=zlib"])
            .arg(&full)
            .arg(dir.join("app.debug")),
    );
    run_ok(
        Command::new("objcopy")
            .args(["--strip-debug", "--add-gnu-debuglink"])
            .arg(dir.join("app.debug"))
            .arg(&full)
            .arg(&stripped),
    );
    assert_eq!(
        handle_facts(&DebugInfo::open_in(&stripped, &[]).unwrap()),
        want
    );
}

#[test]
fn crc32_is_zlibs() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

/// Runs every query the planner and the unwinder make, as the fuzz target does.
fn exercise_like_fuzz(di: &DebugInfo) {
    let _ = di.match_functions("main");
    let _ = di.match_inlines("handle");
    let _ = di.sdt_probes();
    let _ = di.global_names();
    let _ = di.find_type("struct req");
    let _ = di.close_matches("mian");
    for f in di.functions().iter().take(50) {
        let pc = di.probe_addr(f);
        for v in di.variables_at(f, pc).iter().take(20) {
            let _ = di.type_of(v.ty);
            let _ = di.strip(v.ty);
        }
        let _ = di.variables_at_entry(f);
        let _ = di.line_at(pc);
        let _ = di.unwind_row(pc);
        let _ = di.cfa_at(pc);
        let _ = di.symbol_at(pc);
        let _ = di.inline_instances(f);
        let _ = di.match_functions(&f.name);
        let _ = di.type_of(f.return_type);
    }
    for f in di.inline_instances_all().iter().take(20) {
        let _ = di.variables_at(f, f.entry_pc);
    }
    let _ = di.match_functions("*");
    let _ = di.match_inlines("*");
    let _ = di.line_addrs("*.c", 10);
    for (a, _) in di.exec_ranges().iter().take(4) {
        let _ = di.function_at(*a);
        let _ = di.scope_at(*a);
        let _ = di.unwind_row(*a);
    }
}

/// Inputs on which the fuzz target (crates/debuginfo/fuzz) once panicked.
#[test]
fn fuzz_regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/fuzz");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        if let Ok(di) = DebugInfo::from_bytes(Path::new("/nonexistent/fuzz.elf"), &bytes, &[]) {
            exercise_like_fuzz(&di);
        }
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn exact_name_queries_agree_with_the_full_list() {
    // The quick path (prescan + unit scans) must find what the full list finds.
    let bin = compile("fixture", FIXTURE, "-O2");
    let quick = DebugInfo::open(&bin).unwrap();
    let full = DebugInfo::open(&bin).unwrap();
    let _ = full.functions();
    for name in ["handle", "many", "greet", "main", "sq", "printf", "nothing"] {
        let q: Vec<u64> = quick
            .match_functions(name)
            .iter()
            .map(|f| f.entry_pc)
            .collect();
        let f: Vec<u64> = full
            .match_functions(name)
            .iter()
            .map(|f| f.entry_pc)
            .collect();
        assert_eq!(q, f, "{name}");
        let q: Vec<u64> = quick
            .match_inlines(name)
            .iter()
            .map(|f| f.entry_pc)
            .collect();
        let f: Vec<u64> = full
            .match_inlines(name)
            .iter()
            .map(|f| f.entry_pc)
            .collect();
        assert_eq!(q, f, "{name} inlines");
    }
    assert!(!quick.match_inlines("sq").is_empty());
}

#[test]
fn missing_debug_hint_names_the_debian_package() {
    let id = [0x93u8, 0xac, 0x61, 0xec];
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let h = missing_debug_hint(Some(&id), libc);
    assert!(
        h.contains("providing /usr/lib/debug/.build-id/93/ac61ec.debug"),
        "{h}"
    );
    if dpkg_owner(libc).as_deref() == Some("libc6") {
        assert!(h.starts_with("install libc6-dbg,"), "{h}");
    } else {
        eprintln!(
            "skipped the package name: dpkg does not know {}",
            libc.display()
        );
    }
    let py = Path::new("/usr/bin/python3.11");
    if dpkg_owner(py).is_some() {
        let h = missing_debug_hint(Some(&id), py);
        assert!(h.starts_with("install python3.11-dbg,"), "{h}");
    }
    // A file no package owns: the build-id path is the advice.
    let h = missing_debug_hint(Some(&id), Path::new("/nonexistent/a.out"));
    assert!(
        h.starts_with("install the -dbg/-dbgsym package providing"),
        "{h}"
    );
    assert_eq!(
        missing_debug_hint(None, Path::new("/nonexistent/a.out")),
        "compile with -g"
    );
}

#[test]
fn sparse_read_matches_whole_file() {
    // open() leaves code and data unread; from_bytes() has every byte.
    let dir = scratch("sparse");
    let bin = build(&dir, "app", &["-Wl,--build-id"]);
    let bytes = std::fs::read(&bin).unwrap();
    let whole = DebugInfo::from_bytes(&bin, &bytes, &[]).unwrap();
    let sparse = DebugInfo::open(&bin).unwrap();
    assert_eq!(handle_facts(&whole), handle_facts(&sparse));
    assert_eq!(whole.build_id(), sparse.build_id());
    assert_eq!(whole.exec_ranges(), sparse.exec_ranges());
    let f = sparse.match_functions("handle")[0].entry_pc;
    assert_eq!(whole.unwind_row(f), sparse.unwind_row(f));
    assert!(sparse.unwind_row(f).is_some());
    assert_eq!(whole.symbol_at(f), sparse.symbol_at(f));
    let img = read_image(&bin).unwrap();
    assert_eq!(img.bytes.len(), bytes.len());
}

/// Two units with the same static function, a static inline helper inlined in both,
/// an alias symbol, and short names (which gcc may spell inline, DW_FORM_string).
const TWO_UNITS_H: &str =
    "static inline int helper(int v) { volatile int k = v; return k * 3 + 1; }\n";
const TWO_UNITS_A: &str = r#"
#include "common.h"
static __attribute__((noinline)) int twin(int x) { return helper(x) + 1; }
static __attribute__((noinline)) int f2(int x) { return x - 1; }
int from_a(int x) { return twin(x) * 2 + f2(x); }
int real_fn(int x) { return x + 40; }
extern int alias_fn(int) __attribute__((alias("real_fn")));
"#;
const TWO_UNITS_B: &str = r#"
#include <stdio.h>
#include "common.h"
int from_a(int x);
int alias_fn(int x);
static __attribute__((noinline)) int twin(int x) { return helper(x) - 1; }
static __attribute__((noinline)) int f2(int x) { return x + 1; }
int from_b(int x) { return twin(x) * 3 + f2(x); }
int main(int argc, char **argv) {
  (void)argv;
  printf("%d %d %d\n", from_a(argc), from_b(argc), alias_fn(argc));
  return 0;
}
"#;

/// Builds the two-unit fixture with `flags` into `dir/name`.
fn build_two_units(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    std::fs::write(dir.join("common.h"), TWO_UNITS_H).unwrap();
    std::fs::write(dir.join("a.c"), TWO_UNITS_A).unwrap();
    std::fs::write(dir.join("b.c"), TWO_UNITS_B).unwrap();
    let out = dir.join(name);
    run_ok(
        Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(dir.join("a.c"))
            .arg(dir.join("b.c")),
    );
    out
}

/// The addresses of the local text symbols named `func` (`nm` prints `t NAME`), or
/// `func.SUFFIX` as gcc names clones.
fn nm_locals(bin: &Path, func: &str) -> Vec<u64> {
    let out = Command::new("nm").arg(bin).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // LTO renames them `twin.lto_priv.0`, and so on.
            let named = w.get(2).is_some_and(|n| {
                *n == func || n.strip_prefix(func).is_some_and(|r| r.starts_with('.'))
            });
            (w.len() == 3 && w[1] == "t" && named).then(|| u64::from_str_radix(w[0], 16).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Every name of `path` (functions, aliases, inlined instances) gives the same
/// functions and inlined instances by the quick path as by the full list.
fn assert_quick_matches_full(path: &Path, names_limit: usize) -> usize {
    let full = DebugInfo::open(path).unwrap();
    let mut names: Vec<String> = full
        .functions()
        .iter()
        .chain(full.inline_instances_all())
        .flat_map(|f| std::iter::once(f.name.clone()).chain(f.aliases.iter().cloned()))
        .collect();
    names.sort();
    names.dedup();
    // Spread the sample over the whole list.
    let step = names.len().div_ceil(names_limit.max(1)).max(1);
    let names: Vec<&String> = names.iter().step_by(step).collect();
    let quick = DebugInfo::open(path).unwrap();
    let key = |v: Vec<&Function>| -> Vec<(u64, String, bool)> {
        v.iter()
            .map(|f| (f.entry_pc, f.cu_name.clone(), f.inlined))
            .collect()
    };
    for n in &names {
        assert_eq!(
            key(quick.match_functions(n)),
            key(full.match_functions(n)),
            "{n} in {}",
            path.display()
        );
        assert_eq!(
            key(quick.match_inlines(n)),
            key(full.match_inlines(n)),
            "{n} inlines in {}",
            path.display()
        );
    }
    // The quick path really was taken: the full scan was never needed.
    assert!(quick.full.get().is_none(), "{}", path.display());
    names.len()
}

#[test]
fn same_static_function_in_two_units_and_inlines_across_units() {
    let dir = scratch("two-units");
    for (name, flags) in [
        ("o2-dwarf5", &["-g", "-O2", "-gdwarf-5"][..]),
        ("o2-dwarf4", &["-g", "-O2", "-gdwarf-4"][..]),
        ("o0", &["-g", "-O0"][..]),
        // LTO: concrete and inlined instances name their origin in another unit.
        ("o2-lto", &["-g", "-O2", "-flto"][..]),
    ] {
        let bin = build_two_units(&dir, name, flags);
        let di = DebugInfo::open(&bin).unwrap();
        // Both static copies, at the addresses of their two local symbols.
        let twins: Vec<u64> = di
            .match_functions("twin")
            .iter()
            .map(|f| f.entry_pc)
            .collect();
        assert_eq!(twins, nm_locals(&bin, "twin"), "{name}");
        assert_eq!(twins.len(), 2, "{name}");
        let f2: Vec<u64> = di
            .match_functions("f2")
            .iter()
            .map(|f| f.entry_pc)
            .collect();
        assert_eq!(f2, nm_locals(&bin, "f2"), "{name}");
        // The alias symbol finds the function it names (LTO inlines both away).
        if name != "o2-lto" {
            let al = di.match_functions("alias_fn");
            assert_eq!(al.len(), 1, "{name}");
            assert_eq!(al[0].name, "real_fn");
            assert_eq!(al[0].entry_pc, nm_addr(&bin, "alias_fn"));
        }
        if name == "o2-lto" {
            // The code is in LTO's own unit: the instances are found through their
            // origins in the source units.
            assert!(!di.match_inlines("helper").is_empty(), "{name}");
        } else if name.starts_with("o2") {
            // The header's helper is inlined in both units.
            let mut cus: Vec<String> = di
                .match_inlines("helper")
                .iter()
                .map(|f| f.cu_name.rsplit('/').next().unwrap_or_default().to_string())
                .collect();
            cus.sort();
            cus.dedup();
            assert_eq!(cus, ["a.c", "b.c"], "{name}");
        } else {
            // At -O0 each unit has its own out-of-line copy.
            assert_eq!(di.match_functions("helper").len(), 2, "{name}");
        }
        assert!(di.full.get().is_none(), "{name}: the quick path was taken");
        assert_quick_matches_full(&bin, usize::MAX);
    }
}

#[test]
fn symbol_aliases_without_debug_aranges() {
    // Without .debug_aranges the unit around a symbol comes from the units' ranges.
    let dir = scratch("no-aranges");
    let bin = build_two_units(&dir, "app", &["-g", "-O2"]);
    let stripped = dir.join("app-noaranges");
    run_ok(
        Command::new("objcopy")
            .args(["--remove-section", ".debug_aranges"])
            .arg(&bin)
            .arg(&stripped),
    );
    let di = DebugInfo::open(&stripped).unwrap();
    assert!(di.read_aranges().is_none());
    let al = di.match_functions("alias_fn");
    assert_eq!(al.len(), 1);
    assert_eq!(al[0].name, "real_fn");
    assert_eq!(al[0].entry_pc, nm_addr(&stripped, "alias_fn"));
    assert_quick_matches_full(&stripped, usize::MAX);
}

#[test]
fn quick_path_agrees_on_compressed_and_fixture_builds() {
    let dir = scratch("quick-agrees");
    let gz = build(&dir, "gz", &["-gz"]);
    assert_quick_matches_full(&gz, usize::MAX);
    for opt in ["-O0", "-O2"] {
        assert_quick_matches_full(&compile("fixture", FIXTURE, opt), usize::MAX);
    }
}

#[test]
fn quick_path_agrees_on_distribution_debug_info() {
    // Real GCC DWARF 5 of large programs and of libc (separate, compressed debug
    // files), when installed: a sample of names spread over the whole list.
    let mut checked = 0;
    // DEBUGINFO_TEST_NAMES=N compares N names of each (a release build makes
    // thousands quick).
    let limit = std::env::var("DEBUGINFO_TEST_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    // python3.11 is built with LTO: its units name their origins in other units.
    for p in [
        "/usr/bin/python3.11d",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/bin/python3.11",
    ] {
        let p = Path::new(p);
        if !p.exists() || DebugInfo::open(p).is_err() {
            eprintln!(
                "skipped {}: not installed with debug information",
                p.display()
            );
            continue;
        }
        checked += assert_quick_matches_full(p, limit);
    }
    eprintln!("{checked} names compared");
}

#[test]
fn raw_abbreviation_reading() {
    // code 1: subprogram, external (flag_present), name (strp), decl_file (data1).
    // code 2: subprogram declaration (flag_present), name (strp).
    // code 3: variable, name (strp).
    // code 4: subprogram, decl_line (udata), name (strp).
    let t1 = [1u8, 0x2e, 0, 0x3f, 0x19, 0x03, 0x0e, 0x3a, 0x0b, 0, 0];
    let t2 = [2u8, 0x2e, 0, 0x3c, 0x19, 0x03, 0x0e, 0, 0];
    let t3 = [3u8, 0x34, 0, 0x03, 0x0e, 0, 0];
    let t4 = [4u8, 0x2e, 0, 0x3b, 0x0f, 0x03, 0x0e, 0, 0];
    let table = |parts: &[&[u8]]| -> Vec<u8> {
        let mut v: Vec<u8> = parts.concat();
        v.push(0);
        v
    };
    let ok = table(&[&t1, &t2, &t3]);
    assert_eq!(names::definition_names(&ok, 0, 5, 4, 8), Some(vec![(1, 0)]));
    assert!(!names::abbrev_table_opaque(&ok, 0));
    // A definition whose name follows an attribute of variable size: no answer.
    assert_eq!(
        names::definition_names(&table(&[&t1, &t4]), 0, 5, 4, 8),
        None
    );
    // A definition completing a declaration: named elsewhere, no answer.
    let spec = [5u8, 0x2e, 0, 0x47, 0x13, 0, 0];
    assert_eq!(names::definition_names(&table(&[&spec]), 0, 5, 4, 8), None);
    // An address before the name counts its size.
    let t6 = [6u8, 0x2e, 0, 0x11, 0x01, 0x03, 0x08, 0, 0];
    assert_eq!(
        names::definition_names(&table(&[&t6]), 0, 5, 4, 8),
        Some(vec![(6, 8)])
    );
    assert_eq!(
        names::definition_names(&table(&[&t6]), 0, 5, 4, 4),
        Some(vec![(6, 4)])
    );
    // Names in strx forms, and origins in other units, defeat the byte search.
    assert!(names::abbrev_table_opaque(
        &table(&[&[7u8, 0x2e, 0, 0x03, 0x25, 0, 0]]),
        0
    ));
    assert!(names::abbrev_table_opaque(
        &table(&[&[8u8, 0x1d, 0, 0x31, 0x10, 0, 0]]),
        0
    ));
    assert!(!names::abbrev_table_opaque(
        &table(&[&[8u8, 0x1d, 0, 0x31, 0x13, 0, 0]]),
        0
    ));
    // Tables read one after the other agree with tables read on their own.
    let strx = table(&[&[7u8, 0x2e, 0, 0x03, 0x25, 0, 0]]);
    let both = [ok.clone(), strx.clone(), ok.clone()].concat();
    let scan = names::AbbrevScan::new(&both);
    let (a, b2, c) = (0, ok.len(), ok.len() + strx.len());
    for off in [a, b2, c] {
        assert_eq!(
            scan.opaque_at(off),
            Some(names::abbrev_table_opaque(&both, off)),
            "{off}"
        );
    }
    assert_eq!(scan.opaque_at(b2), Some(true));
    assert_eq!(scan.opaque_at(1), None);
    // Truncated tables never panic and are opaque or unreadable.
    for cut in 0..ok.len() - 1 {
        assert!(names::abbrev_table_opaque(&ok[..cut], 0));
        assert_eq!(names::definition_names(&ok[..cut], 0, 5, 4, 8), None);
    }
    // The codes that can end before a position: one byte, or more with the high bit
    // set on all but the last.
    let b = [0x10u8, 0x85, 0x01, 0x07];
    let codes = |end| names::codes_ending_at(&b, 0, end).collect::<Vec<u64>>();
    assert_eq!(codes(3), vec![1, 0x85 & 0x7f | (1 << 7)]);
    assert_eq!(codes(4), vec![7]);
    assert_eq!(codes(2), Vec::<u64>::new());
    assert_eq!(
        names::codes_ending_at(&b, 2, 3).collect::<Vec<u64>>(),
        vec![1]
    );
}

/// Functions known only from symbols, with aliases, locals, weak and `IFUNC` symbols.
const SYMBOLS_FIXTURE: &str = r#"
#include <stdio.h>
int foo(int x) { return x + 1; }
int bar(int x) __attribute__((alias("foo")));
static int sfoo(int x) { return x * 3; }
int sbar(int) __attribute__((alias("sfoo")));
__asm__(".text\n"
        ".type asm_loc1,@function\nasm_loc1:\n"
        ".globl asm_glob1\n.type asm_glob1,@function\nasm_glob1:\n ret\n.size asm_glob1,1\n.size asm_loc1,1\n"
        ".globl asm_glob2\n.type asm_glob2,@function\nasm_glob2:\n"
        ".type asm_loc2,@function\nasm_loc2:\n ret\n"
        ".weak asm_weak\n.type asm_weak,@function\nasm_weak:\n ret\n"
        ".type asm_obj,@object\nasm_obj:\n ret\n"
        ".type foo_ifunc_impl,@function\nfoo_ifunc_impl: ret\n"
        ".globl my_ifunc\n.type my_ifunc,@gnu_indirect_function\nmy_ifunc:\n lea foo_ifunc_impl(%rip),%rax\n ret\n"
        ".type main_dup,@function\nmain_dup: ret\n");
int main(void) { printf("%d\n", foo(1) + sfoo(2)); return 0; }
"#;

fn symbol_names(v: &[Function]) -> Vec<String> {
    let mut n: Vec<String> = v.iter().map(|f| f.name.clone()).collect();
    n.sort();
    n
}

/// What `stap -l 'process("al").function("*")'` listed without a source file for this
/// fixture (stap 4.8): every STT_FUNC symbol, local, weak or without a size, the first
/// of each address, not where a DWARF function starts (`bar`, `sbar`), no IFUNC.
const STAP_SYMBOL_ONLY: &[&str] = &[
    "__do_global_dtors_aux",
    "_fini",
    "_init",
    "_start",
    "asm_loc1",
    "asm_loc2",
    "asm_weak",
    "deregister_tm_clones",
    "foo_ifunc_impl",
    "frame_dummy",
    "main_dup",
    "register_tm_clones",
];

#[test]
fn symbol_only_functions_follow_stap() {
    let bin = compile("symbols", SYMBOLS_FIXTURE, "-O0");
    let di = DebugInfo::open(&bin).unwrap();
    assert_eq!(
        symbol_names(&di.match_symbol_functions("*")),
        STAP_SYMBOL_ONLY
    );
    assert_eq!(
        symbol_names(&di.match_symbol_functions("asm_*")),
        ["asm_loc1", "asm_loc2", "asm_weak"]
    );
    // An exact name is looked up by name, even the second name of an address.
    assert_eq!(
        symbol_names(&di.match_symbol_functions("asm_glob1")),
        ["asm_glob1"]
    );
    // An alias of a DWARF function is that function; IFUNC resolvers are not functions.
    assert_eq!(di.match_functions("bar")[0].name, "foo");
    assert_eq!(symbol_names(&di.match_symbol_functions("bar")), ["foo"]);
    assert!(di.match_symbol_functions("my_ifunc").is_empty());
    // A source file pattern never matches a symbol.
    assert!(di.match_symbol_functions("*@symbols.c").is_empty());
    // Stripped, with its DWARF and `.symtab` in a separate file: the same table.
    let dir = scratch("symtab-debuglink");
    let debug = dir.join("symbols.debug");
    run_ok(
        Command::new("objcopy")
            .args(["--only-keep-debug"])
            .arg(&bin)
            .arg(&debug),
    );
    let stripped = dir.join("symbols");
    run_ok(
        Command::new("objcopy")
            .args(["--strip-all", "--add-gnu-debuglink"])
            .arg(&debug)
            .arg(&bin)
            .arg(&stripped),
    );
    let di = DebugInfo::open_in(&stripped, &[]).unwrap();
    assert_eq!(
        symbol_names(&di.match_symbol_functions("*")),
        STAP_SYMBOL_ONLY
    );
}

/// stap's choice of similar names (util.cxx `levenshtein_suggest`), as `stap -p2`
/// printed them for `process("golden").function(NAME)` with the names of the golden
/// fixture (DWARF functions and function symbols).
#[test]
fn similar_names_rank_as_stap_ranks_them() {
    let names = [
        "f",
        "neg",
        "name",
        "pt",
        "main",
        "__do_global_dtors_aux",
        "_fini",
        "_init",
        "_start",
        "deregister_tm_clones",
        "frame_dummy",
        "register_tm_clones",
    ];
    for (target, want) in [
        ("nosuch", "f, pt, neg, main, name"),
        ("ma", "f, main, name, pt, neg"),
        ("nam", "name, f, neg, pt, _init"),
        ("neh", "neg, f, pt, _init, name"),
        ("xyz", "f, pt, neg, main, name"),
    ] {
        assert_eq!(stap_suggest(target, names, 5).join(", "), want, "{target}");
    }
    // Case differences cost half a substitution.
    assert!(stap_levenshtein("Main", "main") < stap_levenshtein("xain", "main"));
}

/// Types as `stap -L` spelled them for these parameters and locals (stap 4.8).
#[test]
fn types_are_spelled_as_stap_spells_them() {
    let src = r#"
struct point { int x, y; };
typedef int (*cb_t)(int);
__attribute__((noinline)) int ty(const char *a, char *const b, const char *const c,
  unsigned char d, const struct point *f, volatile int *g, int (*h)(int, char), cb_t i,
  const char **k, int *restrict z)
{
  int arr[3] = {0}; const int carr[2] = {1,2}; char m2[2][3] = {{0}}; int (*parr)[3] = &arr;
  int *aptr[2] = {0}; void (*fp)(void) = 0; const char *const strs[2] = {"a","b"};
  volatile const int vc = 3;
  return a[0] + b[0] + c[0] + d + f->x + *g + h(1,'a') + i(2) + k[0][0] + *z + arr[0]
    + carr[0] + m2[0][0] + (*parr)[0] + (aptr[0]!=0) + (fp!=0) + strs[0][0] + vc;
}
static int h1(int a, char b) { return a + b; }
static int i1(int a) { return a; }
int main(void) { char buf[2] = "x"; struct point pt = {1,2}; volatile int g = 1; int z = 1;
  const char *kk = "k";
  return ty("a", buf, "c", 1, &pt, &g, h1, i1, &kk, &z) == 0; }
"#;
    let bin = compile("types", src, "-O0");
    let di = DebugInfo::open(&bin).unwrap();
    let f = func(&di, "ty");
    let vars = di.variables_at(f, di.probe_addr(f));
    let ty = |n: &str| {
        let v = vars.iter().find(|v| v.name == n).unwrap();
        di.type_of(v.ty).name
    };
    for (var, want) in [
        ("a", "char const*"),
        ("b", "char* const"),
        ("c", "char const* const"),
        ("d", "unsigned char"),
        ("f", "struct point const*"),
        ("g", "int volatile*"),
        ("h", "int (*) (int, char)"),
        ("i", "cb_t"),
        ("k", "char const**"),
        ("z", "int* restrict"),
        ("arr", "int[]"),
        ("carr", "int const[] const"),
        ("m2", "char[]"),
        ("parr", "int[]*"),
        ("aptr", "int*[]"),
        ("fp", "void (*) (void)"),
        ("strs", "char const* const[] const"),
        ("vc", "int volatile const"),
    ] {
        assert_eq!(ty(var), want, "${var}");
    }
}
