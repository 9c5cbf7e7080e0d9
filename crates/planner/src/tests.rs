//! Tests for the planner: C fixtures compiled at -O0 and -O2, scripts parsed with
//! script-syntax, plans executed with `backend::execute` against real stops of the
//! fixture taken by gdb (registers from `info registers`, memory from `gcore` and the
//! ELF file), and the decoded values compared with what the fixture passes.

use super::*;
use capture_plan::{Decode, DwarfReg, FieldStatus, Op, Record, SiteKind};
use std::collections::HashMap;
use std::process::Command;

const FIXTURE: &str = r#"
#include <stdio.h>
#include <string.h>
enum color { RED, GREEN = 5, BLUE };
struct req { int id; char name[16]; struct req *next; unsigned flags:3; int sflag:5; long big; enum color c; short arr[4]; };
int counter = 7; int step(int a); int shadow(int a); long long wide(int x); double scale(double d);
static inline int sq(int v) { return v * v; }
__attribute__((noipa)) int handle(struct req *r, int n) { int local = n * 2; counter += local + sq(n); return local + r->id; }
__attribute__((noipa)) long many(long a, long b, long c, long d, long e, long f, long g, long h) { return a+b+c+d+e+f+g+h; }
__attribute__((noipa)) const char *greet(const char *who, unsigned char u, short s) { printf("%s %d %d\n", who, u, s); return who; }
int main(int argc, char **argv) {
  struct req r = {0}; r.id = 42; strcpy(r.name, "hello"); r.flags = 5; r.sflag = -3; r.c = BLUE;
  r.big = -1234567890123; r.arr[0] = 10; r.arr[1] = -20; r.arr[2] = 30; r.arr[3] = 40;
  int t = handle(&r, argc + 2); t += many(1,2,3,4,5,6,7,8); greet("world", 200, -5); t += step(4); t += shadow(2); t += (int)(wide(3) >> 33); t += (int)scale(1.5);
  printf("%d %d\n", t, sq(argc+3)); return 0; }
int step(int a) {
  int b = a * 3;
  b += 1;
  { int inner = b * 2; b += inner; }
  return b;
}
int shadow(int a) {
  int v = a + 1;
  { int v = a * 10;
    a += v; }
  return a + v;
}
__attribute__((noipa)) long long wide(int x) { return (long long)x << 33; }
__attribute__((noipa)) double scale(double d) { return d * 2; }
"#;

fn compile(opt: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "planner-test-{}{}",
        std::process::id(),
        opt.replace(' ', "")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    // Tests run in parallel: compile once, under a lock, and publish by renaming.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let c = dir.join("app.c");
    let out = dir.join("app");
    if !out.exists() {
        std::fs::write(&c, FIXTURE).unwrap();
        let tmp = dir.join("app.tmp");
        let st = Command::new("gcc")
            .arg("-g")
            .args(opt.split_whitespace())
            .arg("-o")
            .arg(&tmp)
            .arg(&c)
            .status()
            .expect("gcc runs");
        assert!(st.success());
        std::fs::rename(&tmp, &out).unwrap();
    }
    std::fs::canonicalize(out).unwrap()
}

fn parse(text: &str) -> (Script, SourceMap) {
    let mut sources = SourceMap::default();
    let f = sources.add("<input>", text);
    let (script, diags) = script_syntax::parse(&sources, f, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    (script, sources)
}

fn plan_text(text: &str, exe: &Path) -> Result<Planned, Vec<Diagnostic>> {
    let (script, sources) = parse(text);
    let opts = PlanOptions {
        target_exe: Some(exe.to_path_buf()),
        ..PlanOptions::default()
    };
    plan(&script, &sources, &opts)
}

fn err_text(text: &str, exe: &Path) -> String {
    match plan_text(text, exe) {
        Ok(p) => panic!("expected an error, got {}", dump(&p)),
        Err(d) => d
            .iter()
            .map(|d| format!("{}: {} {}", d.kind, d.message, d.notes.join(" ")))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Expression ids of the `Target`/`Call` nodes in source order, by their text.
fn ids_by_text(script: &Script, sources: &SourceMap) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for item in &script.items {
        if let Item::Probe(p) = item {
            script_syntax::visit::walk_block(&p.body, &mut |e| {
                m.entry(sources.snippet(e.span).to_string())
                    .or_insert(e.id.0);
                script_syntax::visit::Walk::Descend
            });
        }
    }
    m
}

/// A stopped fixture: registers and memory from gdb.
struct Stop {
    regs: HashMap<u16, u64>,
    core: Vec<(u64, Vec<u8>)>,
    exe: Vec<(u64, Vec<u8>)>,
    bias: u64,
}

impl backend::TargetAccess for Stop {
    fn reg(&mut self, reg: DwarfReg) -> Option<u64> {
        self.regs.get(&reg.0).copied()
    }
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            let from = |segs: &[(u64, Vec<u8>)], a: u64| {
                segs.iter()
                    .find(|(s, d)| *s <= a && a < s + d.len() as u64)
                    .map(|(s, d)| d[(a - s) as usize])
            };
            *b = from(&self.core, a)
                .or_else(|| from(&self.exe, a.wrapping_sub(self.bias)))
                .ok_or(a)?;
        }
        Ok(())
    }
}

fn segments(path: &Path) -> Vec<(u64, Vec<u8>)> {
    use object::{Object, ObjectSegment};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.segments()
        .filter_map(|s| Some((s.address(), s.data().ok()?.to_vec())))
        .filter(|(_, d)| !d.is_empty())
        .collect()
}

fn gdb_available() -> bool {
    Command::new("gdb").arg("--version").output().is_ok()
}

/// Runs the fixture under gdb to the first hit of `func+off`, then (if `finish`) to the
/// return; gives the stop(s).
fn stops(bin: &Path, func: &str, off: u64, finish: bool) -> Vec<Stop> {
    let dir = bin.parent().unwrap();
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let c1 = dir.join(format!("core-{func}-{off}-{n}-1"));
    let c2 = dir.join(format!("core-{func}-{off}-{n}-2"));
    let mut args: Vec<String> = vec![
        "-batch".into(),
        "-nx".into(),
        "-ex".into(),
        "starti".into(),
        "-ex".into(),
        format!("break *({func}+{off})"),
        "-ex".into(),
        "continue".into(),
        "-ex".into(),
        "info registers".into(),
        "-ex".into(),
        format!("gcore {}", c1.display()),
    ];
    if finish {
        for a in ["finish", "info registers"] {
            args.push("-ex".into());
            args.push(a.into());
        }
        args.push("-ex".into());
        args.push(format!("gcore {}", c2.display()));
    }
    let out = Command::new("gdb").args(&args).arg(bin).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let names = [
        "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15", "rip",
    ];
    let mut blocks: Vec<HashMap<u16, u64>> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 2 {
            // 32-bit names map to the x86_64 numbering, as debuginfo maps i386 DWARF.
            let names32 = [
                "eax", "edx", "ecx", "ebx", "esi", "edi", "ebp", "esp", "", "", "", "", "", "", "",
                "", "eip",
            ];
            let pos = names
                .iter()
                .position(|n| *n == w[0])
                .or_else(|| names32.iter().position(|n| !n.is_empty() && *n == w[0]));
            if let Some(i) = pos {
                if i == 0 {
                    blocks.push(HashMap::new());
                }
                if let (Some(b), Some(v)) = (
                    blocks.last_mut(),
                    w[1].strip_prefix("0x")
                        .and_then(|h| u64::from_str_radix(h, 16).ok()),
                ) {
                    b.insert(i as u16, v);
                }
            }
        }
    }
    assert_eq!(
        blocks.len(),
        if finish { 2 } else { 1 },
        "gdb output:\n{text}"
    );
    let exe = segments(bin);
    blocks
        .into_iter()
        .zip([c1, c2])
        .map(|(regs, core)| {
            let segs = segments(&core);
            let _ = std::fs::remove_file(&core);
            Stop {
                regs,
                core: segs,
                exe: exe.clone(),
                bias: 0,
            }
        })
        .collect()
}

#[derive(Debug, PartialEq)]
enum V {
    I(i64),
    S(String),
}

fn decode(rec: &Record, d: &Decode) -> V {
    match d {
        Decode::Int {
            field,
            size,
            signed,
        } => {
            let b = rec.field(*field as usize).unwrap();
            let mut x = [0u8; 8];
            x[..b.len()].copy_from_slice(b);
            let v = u64::from_le_bytes(x);
            let bits = u32::from(*size) * 8;
            let v = if *signed && bits < 64 {
                ((v << (64 - bits)) as i64) >> (64 - bits)
            } else {
                v as i64
            };
            V::I(v)
        }
        Decode::Bitfield {
            field,
            signed,
            bit_offset,
            bit_size,
            ..
        } => {
            let b = rec.field(*field as usize).unwrap();
            let mut x = [0u8; 8];
            x[..b.len()].copy_from_slice(b);
            let v = u64::from_le_bytes(x) >> bit_offset;
            let n = u32::from(*bit_size);
            let v = v << (64 - n);
            V::I(if *signed {
                (v as i64) >> (64 - n)
            } else {
                (v >> (64 - n)) as i64
            })
        }
        Decode::Str { field } | Decode::Bytes { field } => {
            V::S(String::from_utf8_lossy(rec.field(*field as usize).unwrap()).into_owned())
        }
        Decode::Backtrace { .. } => V::S(String::new()),
        Decode::Pretty(parts) => {
            let mut s = String::new();
            for p in parts {
                match p {
                    capture_plan::PrettyPart::Text(t) => s.push_str(t),
                    capture_plan::PrettyPart::Dec(d) => match decode(rec, d) {
                        V::I(i) => s.push_str(&i.to_string()),
                        V::S(x) => s.push_str(&x),
                    },
                    capture_plan::PrettyPart::Hex(d) => match decode(rec, d) {
                        V::I(i) => s.push_str(&format!("{i:#x}")),
                        V::S(x) => s.push_str(&x),
                    },
                    capture_plan::PrettyPart::Quoted(d) => match decode(rec, d) {
                        V::S(x) => s.push_str(&format!("\"{x}\"")),
                        V::I(i) => s.push_str(&i.to_string()),
                    },
                    capture_plan::PrettyPart::Char(d) => match decode(rec, d) {
                        V::I(i) => s.push_str(&format!("'{}'", (i as u8) as char)),
                        V::S(x) => s.push_str(&x),
                    },
                }
            }
            V::S(s)
        }
    }
}

/// Plans `script` (one probe), runs its single site in the fixture under gdb, and
/// returns each expression's decoded value by its source text.
fn run(script: &str, bin: &Path) -> HashMap<String, V> {
    let mut all = run_all(script, bin);
    assert_eq!(all.len(), 1);
    all.remove(0).1
}

/// Like [`run`] for every site: (the out-of-line function containing it, values).
fn run_all(script: &str, bin: &Path) -> Vec<(String, HashMap<String, V>)> {
    let (ast, sources) = parse(script);
    let opts = PlanOptions {
        target_exe: Some(bin.to_path_buf()),
        ..PlanOptions::default()
    };
    let p = plan(&ast, &sources, &opts).unwrap_or_else(|d| panic!("{d:?}"));
    p.plans.verify().unwrap();
    let di = debuginfo::DebugInfo::open(bin).unwrap();
    let ids = ids_by_text(&ast, &sources);
    let mut result = Vec::new();
    for (site, binding) in p.plans.sites.iter().zip(&p.bindings) {
        let f = di.function_at(site.addr.0).unwrap();
        let is_ret = matches!(site.kind, SiteKind::Return { .. });
        let mut st = stops(bin, &f.name, site.addr.0 - f.low_pc, is_ret);
        let mut rec = Record::new(site.id, 1, 1, 0, 0);
        let bias = st[0].regs[&16] - site.addr.0;
        for s in st.iter_mut() {
            s.bias = bias;
        }
        backend::execute(&site.plan, &mut st[0], &mut rec);
        if let SiteKind::Return { return_plan } = &site.kind {
            backend::execute(return_plan, &mut st[1], &mut rec);
        }
        for (i, s) in rec.fields.iter().enumerate() {
            assert!(
                matches!(s, FieldStatus::Ok { .. }),
                "field {i}: {s:?}\n{}",
                dump(&p)
            );
        }
        let mut out = HashMap::new();
        for (text, id) in &ids {
            if let Some(d) = binding.captures.get(id) {
                out.insert(text.clone(), decode(&rec, d));
            }
        }
        result.push((f.name.clone(), out));
    }
    result
}

#[test]
fn o2_inlined_instances_read_their_own_parameter() {
    if !gdb_available() {
        return;
    }
    let bin = compile("-O2");
    let all = run_all(r#"probe process.function("sq") { println($v) }"#, &bin);
    let mut seen: Vec<(String, V)> = all
        .into_iter()
        .map(|(f, mut v)| (f, v.remove("$v").unwrap()))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    // sq(n) in handle with n = 3; sq(argc + 3) in main with argc = 1.
    assert_eq!(
        seen,
        vec![
            ("handle".to_string(), V::I(3)),
            ("main".to_string(), V::I(4))
        ]
    );
}

fn check_handle_values(bin: &Path) {
    let v = run(
        r#"probe process.function("handle") {
            println($n, $r->id, user_string($r->name), $r->flags, $r->sflag, $r->c, $r->big,
                    $r->arr[1], $r->arr[$n], $r->name[1], user_string_n($r->name, 3), $r->next,
                    user_long(&$r->big), kernel_long(&$r->big))
        }"#,
        bin,
    );
    assert_eq!(v["$n"], V::I(3));
    assert_eq!(v["$r->id"], V::I(42));
    assert_eq!(v["user_string($r->name)"], V::S("hello".into()));
    assert_eq!(v["user_string_n($r->name, 3)"], V::S("hel".into()));
    assert_eq!(v["$r->flags"], V::I(5));
    assert_eq!(v["$r->sflag"], V::I(-3));
    assert_eq!(v["$r->c"], V::I(6));
    let big = if bin.to_string_lossy().contains("m32") {
        i64::from(-1234567890123i64 as i32)
    } else {
        -1234567890123
    };
    assert_eq!(v["$r->big"], V::I(big));
    // A C `long` of the target: 4 bytes on i386, not the 8 the host's would be.
    assert_eq!(v["user_long(&$r->big)"], V::I(big));
    assert_eq!(v["kernel_long(&$r->big)"], V::I(big));
    assert_eq!(v["$r->arr[1]"], V::I(-20));
    assert_eq!(v["$r->arr[$n]"], V::I(40));
    assert_eq!(v["$r->name[1]"], V::I(i64::from(b'e')));
    assert_eq!(v["$r->next"], V::I(0));
    let v = run(
        r#"probe process.function("handle") {
            println(@var("counter"), @var("counter@app.c"), @cast($r, "struct req")->c,
                    user_string(@cast($r, "struct req")->name), $r$)
        }"#,
        bin,
    );
    assert_eq!(v["@var(\"counter\")"], V::I(7));
    assert_eq!(v["@var(\"counter@app.c\")"], V::I(7));
    assert_eq!(v["@cast($r, \"struct req\")->c"], V::I(6));
    assert_eq!(
        v["user_string(@cast($r, \"struct req\")->name)"],
        V::S("hello".into())
    );
    assert_eq!(
        v["$r$"],
        V::S(format!(
            "{{.id=42, .name=[...], .next=0x0, .flags=5, .sflag=-3, .big={big}, .c=6, .arr=[...]}}"
        ))
    );
    let v = run(
        r#"probe process.function("handle") { println($r$$, $r->arr$) }"#,
        bin,
    );
    assert_eq!(
        v["$r$$"],
        V::S(format!("{{.id=42, .name=\"hello\", .next=0x0, .flags=5, .sflag=-3, .big={big}, .c=6, .arr=[10, -20, 30, 40]}}"))
    );
    assert_eq!(v["$r->arr$"], V::S("[10, -20, 30, 40]".into()));
}

#[test]
fn o0_entry_values_match_the_fixture() {
    if !gdb_available() {
        return;
    }
    check_handle_values(&compile("-O0"));
}

#[test]
fn o2_entry_values_match_the_fixture() {
    if !gdb_available() {
        return;
    }
    check_handle_values(&compile("-O2"));
}

fn check_many_and_greet(bin: &Path) {
    let v = run(
        r#"probe process.function("many") { println($a, $f, $g, $h) }"#,
        bin,
    );
    assert_eq!(v["$a"], V::I(1));
    assert_eq!(v["$f"], V::I(6));
    assert_eq!(v["$g"], V::I(7));
    assert_eq!(v["$h"], V::I(8));
    let v = run(
        r#"probe process.function("many") { println(register("rdi"), u_register("esi"), register("r9"), uaddr()) }"#,
        bin,
    );
    if bin.to_string_lossy().contains("O2") {
        // At -O2 the probe is at the entry, where the arguments are still in their
        // ABI registers.
        assert_eq!(v["register(\"rdi\")"], V::I(1));
        assert_eq!(v["u_register(\"esi\")"], V::I(2));
        assert_eq!(v["register(\"r9\")"], V::I(6));
    }
    let V::I(ip) = v["uaddr()"] else { panic!() };
    assert!(ip > 0x1000);
    let v = run(
        r#"probe process.function("greet") { println(user_string($who), $u, $s, $$parms, $$parms$) }"#,
        bin,
    );
    assert_eq!(v["user_string($who)"], V::S("world".into()));
    assert_eq!(v["$u"], V::I(200));
    assert_eq!(v["$s"], V::I(-5));
    let V::S(p) = &v["$$parms"] else { panic!() };
    assert!(
        p.starts_with("who=0x") && p.ends_with(" u=0xc8 s=0xfffffffffffffffb"),
        "{p}"
    );
    assert_eq!(v["$$parms$"], V::S("who=\"world\" u='\u{c8}' s=-5".into()));
}

#[test]
fn o0_stack_args_and_pretty() {
    if !gdb_available() {
        return;
    }
    check_many_and_greet(&compile("-O0"));
}

#[test]
fn o2_stack_args_and_pretty() {
    if !gdb_available() {
        return;
    }
    check_many_and_greet(&compile("-O2"));
}

fn check_return(bin: &Path) {
    let v = run(
        r#"probe process.function("handle").return { println($return, $n, @entry($r->id)) }"#,
        bin,
    );
    // handle returns local + r->id = 2n + 42 with n = 3.
    assert_eq!(v["$return"], V::I(48));
    // many returns a long: 36; wide a long long, in edx:eax on i386.
    let v2 = run(
        r#"probe process.function("many").return { println($return) }"#,
        bin,
    );
    assert_eq!(v2["$return"], V::I(36));
    let v3 = run(
        r#"probe process.function("wide").return { println($return, $x) }"#,
        bin,
    );
    assert_eq!(v3["$return"], V::I(3 << 33));
    assert_eq!(v3["$x"], V::I(3));
    assert_eq!(v["$n"], V::I(3));
    assert_eq!(v["@entry($r->id)"], V::I(42));
    let v = run(
        r#"probe process.function("handle").return { println($$return, $$parms) }"#,
        bin,
    );
    assert_eq!(v["$$return"], V::S("return=0x30".into()));
    let V::S(parms) = &v["$$parms"] else { panic!() };
    assert!(
        parms.starts_with("r=0x") && parms.ends_with(" n=0x3"),
        "{parms}"
    );
    let v = run(
        r#"probe process.function("greet").return { println(user_string($return)) }"#,
        bin,
    );
    assert_eq!(v["user_string($return)"], V::S("world".into()));
}

#[test]
fn o0_return_probe() {
    if !gdb_available() {
        return;
    }
    check_return(&compile("-O0"));
}

#[test]
fn o2_return_probe() {
    if !gdb_available() {
        return;
    }
    check_return(&compile("-O2"));
}

#[test]
fn pp_listing_and_kinds() {
    let bin = compile("-O0");
    let p = plan_text(
        r#"global n
        probe begin { n = 1 }
        probe process.function("h*") { n++ }
        probe process.function("many").return { n++ }
        probe timer.ms(100), end { n++ }"#,
        &bin,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let exe = bin.display().to_string();
    let c = bin.with_file_name("app.c").display().to_string();
    assert_eq!(
        p.listing,
        vec![
            "begin".to_string(),
            format!("process(\"{exe}\").function(\"handle@{c}:8\")"),
            format!("process(\"{exe}\").function(\"many@{c}:9\").return"),
            "timer.ms(100)".to_string(),
            "end".to_string(),
        ]
    );
    assert_eq!(p.begin, vec![0]);
    assert_eq!(p.end, vec![3]);
    assert_eq!(p.timers, vec![(3, Duration::from_millis(100))]);
    assert_eq!(p.bindings[1].probe, 2);
    assert_eq!(p.bindings[0].function, "handle");
    assert!(matches!(p.plans.sites[1].kind, SiteKind::Return { .. }));
    let text = dump(&p);
    assert!(text.contains("site 1 probe 2 return"), "{text}");
    // Context used by a script function reaches the sites whose handler calls it.
    let p = plan_text(
        r#"function who() { return execname() . sprint(cpu()) }
        probe process.function("handle") { println(who()) }
        probe process.function("many") { println(1) }"#,
        &bin,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let n = p.plans.sites[0].needs;
    assert!(n.comm && n.cpu && !n.ppid);
    assert_eq!(
        p.plans.sites[1].needs,
        capture_plan::ContextNeeds::default()
    );
}

#[test]
fn inlined_instances_are_sites() {
    let bin = compile("-O2");
    let p = plan_text(r#"probe process.function("sq") { println($v) }"#, &bin)
        .unwrap_or_else(|d| panic!("{d:?}"));
    assert!(p.plans.sites.len() >= 2, "{}", dump(&p));
    for b in &p.bindings {
        assert_eq!(b.function, "sq");
        assert_eq!(b.captures.len(), 1, "{}", dump(&p));
    }
    // `.call` excludes inlined instances; sq has no out-of-line copy at -O2.
    let e = err_text(r#"probe process.function("sq").call { }"#, &bin);
    assert!(e.contains("while resolving probe point"), "{e}");
    assert!(
        e.contains("semantic error: no match (similar functions: "),
        "{e}"
    );
}

#[test]
fn statement_probe() {
    let bin = compile("-O0");
    let p = plan_text(
        r#"probe process.statement("handle@app.c:8") { println($n, $local) }"#,
        &bin,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.plans.sites.len(), 1);
    assert!(p.listing[0].ends_with(&format!(
        "statement(\"handle@{}:8\")",
        bin.with_file_name("app.c").display()
    )));
    assert_eq!(p.bindings[0].captures.len(), 2);
}

#[test]
fn errors() {
    let bin = compile("-O0");
    let e = err_text(r#"probe process.function("handel") { }"#, &bin);
    // stap's two errors: where, then what (its closest names first).
    assert!(
        e.contains("semantic error: while resolving probe point"),
        "{e}"
    );
    assert!(
        e.contains("semantic error: no match (similar functions: handle, "),
        "{e}"
    );
    let e = err_text(r#"probe process.function("handle") { println($nn) }"#, &bin);
    assert!(e.contains("unable to find local 'nn'"), "{e}");
    assert!(e.contains("(alternatives: $r $n $local)"), "{e}");
    let e = err_text(
        r#"probe process.function("handle") { println($r->nope) }"#,
        &bin,
    );
    assert!(
        e.contains("unable to find member 'nope' for struct req (alternatives: id name next"),
        "{e}"
    );
    let e = err_text(
        r#"probe process.function("handle") { println($r[0]) }"#,
        &bin,
    );
    assert!(e.contains("cannot be used as a value"), "{e}");
    let e = err_text(
        r#"probe process.function("handle") { println($return) }"#,
        &bin,
    );
    assert!(e.contains("only available in .return probes"), "{e}");
    let e = err_text(
        r#"probe process.function("handle") { $n = 5; $r->id++ }"#,
        &bin,
    );
    assert!(e.contains("cannot write to target variable '$n'"), "{e}");
    assert!(e.contains("cannot write to target variable '$r'"), "{e}");
    let e = err_text(r#"probe begin { println($x) }"#, &bin);
    assert!(e.contains("unresolved target-symbol expression"), "{e}");
    let e = err_text(
        r#"global p probe process.function("handle") { println(user_string(p)) }"#,
        &bin,
    );
    assert!(e.contains("cannot read target memory later"), "{e}");
    let e = err_text(r#"probe process("/nonexistent/x").function("f") { }"#, &bin);
    assert!(e.contains("/nonexistent/x"), "{e}");
    // Optional probe points resolve to nothing silently.
    let p = plan_text(r#"probe process.function("nothere") ? { }"#, &bin).unwrap();
    assert!(p.plans.sites.is_empty());
    // @defined never errors.
    let p = plan_text(
        r#"probe process.function("handle") { if (@defined($nope)) println(1); if (@defined($n)) println($n) }"#,
        &bin,
    )
    .unwrap();
    assert_eq!(p.bindings[0].captures.len(), 2, "{}", dump(&p));
    // Branches guarded by a false @defined are elided, as in stap.
    let p = plan_text(
        r#"probe process.function("handle") {
            x = @defined($nope) ? $nope : $n
            if (@defined($nope) && $nope > 1) println($nope->a) else println($r->id)
            if (!@defined($nope)) println($n) else println($nope)
        }"#,
        &bin,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.bindings[0].captures.len(), 3, "{}", dump(&p));
    let e = err_text(
        r#"probe process.function("handle") { if (@defined($n)) println($nope) }"#,
        &bin,
    );
    assert!(e.contains("unable to find local 'nope'"), "{e}");
}

#[test]
fn o2_unavailable_variable_is_an_error() {
    let bin = compile("-O2");
    // At handle's entry, `local` (n * 2) is not computed yet: gcc gives it a location
    // list that starts later, or none at all.
    let e = err_text(
        r#"probe process.function("handle") { println($local) }"#,
        &bin,
    );
    assert!(
        e.contains("unable to find location for variable '$local' at process(")
            || e.contains("unable to find local 'local'"),
        "{e}"
    );
}

#[test]
fn list_with_vars() {
    let bin = compile("-O0");
    let (ast, sources) = parse(r#"probe process.function("g*") {}"#);
    let opts = PlanOptions {
        target_exe: Some(bin.clone()),
        ..PlanOptions::default()
    };
    let l = list_probes(&ast, &sources, &opts, true).unwrap();
    assert_eq!(l.len(), 1);
    assert!(
        l[0].ends_with(":10\") $who:char const* $u:unsigned char $s:short int"),
        "{l:?}"
    );
}

#[test]
fn shared_library_sites_use_the_library_module() {
    let dir = std::env::temp_dir().join(format!("planner-lib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("lib.c");
    std::fs::write(&c, "int lf(int x) {\n  return x + 1;\n}\n").unwrap();
    let so = dir.join("libx.so");
    let st = Command::new("gcc")
        .args(["-g", "-O0", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .status()
        .unwrap();
    assert!(st.success());
    let bin = compile("-O0");
    let p = plan_text(
        &format!(
            r#"probe process("{}").function("lf") {{ println($x) }}"#,
            so.display()
        ),
        &bin,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let so = std::fs::canonicalize(&so).unwrap();
    assert_eq!(p.plans.sites[0].module, so);
    assert_eq!(
        p.listing,
        vec![format!(
            "process(\"{}\").function(\"lf@{}:1\")",
            so.display(),
            dir.join("lib.c").display()
        )]
    );
    // A library without DWARF resolves from its symbol table, with a warning.
    let stripped = dir.join("libstripped.so");
    let st = Command::new("gcc")
        .args(["-O0", "-shared", "-fPIC", "-Wl,--build-id=none", "-o"])
        .arg(&stripped)
        .arg(&c)
        .status()
        .unwrap();
    assert!(st.success());
    let stripped = std::fs::canonicalize(&stripped).unwrap();
    let p = plan_text(
        &format!(
            r#"probe process("{}").function("lf") {{ }}"#,
            stripped.display()
        ),
        &bin,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.plans.sites.len(), 1);
    assert_eq!(p.plans.sites[0].module, stripped);
    assert_eq!(
        p.listing,
        vec![format!(
            "process(\"{}\").function(\"lf\")",
            stripped.display()
        )]
    );
    assert!(
        p.warnings[0]
            .message
            .contains("no debug information found in"),
        "{:?}",
        p.warnings
    );
    let e = err_text(
        &format!(
            r#"probe process("{}").function("lf") {{ println($x) }}"#,
            stripped.display()
        ),
        &bin,
    );
    assert!(e.contains("no debug information in"), "{e}");

    // With a separate debug file (Debian's libc6-dbg), glibc's `malloc` is the alias
    // of `__libc_malloc` and its parameter is available.
    let libc = Command::new("gcc")
        .arg("-print-file-name=libc.so.6")
        .output()
        .unwrap();
    let libc = std::fs::canonicalize(String::from_utf8_lossy(&libc.stdout).trim()).unwrap();
    if debuginfo::DebugInfo::open(&libc).is_ok() {
        let p = plan_text(
            &format!(
                r#"probe process("{}").function("malloc") {{ println($bytes) }}"#,
                libc.display()
            ),
            &bin,
        )
        .unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(p.plans.sites.len(), 1);
        assert_eq!(p.plans.sites[0].module, libc);
        assert!(
            p.listing[0].contains(".function(\"__libc_malloc@"),
            "{:?}",
            p.listing
        );
        assert!(p.warnings.is_empty());
    }
}

#[test]
fn dump_is_symbolic_and_deterministic() {
    let bin = compile("-O0");
    let text = r#"probe begin { }
        probe process.function("handle") { println($n, user_string($r->name), $r->flags, execname(), $$parms) }
        probe process.function("many").return { println($return, $h) }
        probe timer.s(2) { }"#;
    let a = dump(&plan_text(text, &bin).unwrap());
    let b = dump(&plan_text(text, &bin).unwrap());
    assert_eq!(a, b);
    let dir = bin.parent().unwrap().display().to_string();
    // Addresses and frame offsets depend on the compiler version: mask hex numbers.
    let mut masked = String::new();
    let mut rest = a.replace(&dir, "DIR");
    while let Some(i) = rest.find("0x") {
        masked.push_str(&rest[..i]);
        masked.push('X');
        rest = rest[i + 2..]
            .trim_start_matches(|c: char| c.is_ascii_hexdigit())
            .to_string();
    }
    masked.push_str(&rest);
    let expected = r#"begin: probe 0
timer: probe 3 every 2000000000ns
site 0 probe 1 entry DIR/app+X process("DIR/app").function("handle@DIR/app.c:8")
  function handle
  needs comm
  field 0 $n: reg(6) const(X) add const(X) add emit_bytes(4)
  field 1 user_string(...): reg(6) const(X) add const(X) add deref8 const(X) add emit_string(128)
  field 2 $r->flags: reg(6) const(X) add const(X) add deref8 const(X) add emit_bytes(1)
  field 3 $r: reg(6) const(X) add const(X) add emit_bytes(8)
  capture e0 = s32(field 0)
  capture e2 = str(field 1)
  capture e3 = ubits[0+3] of 8(field 2)
  capture e5 = pretty["r=", hex u64(field 3), " n=", hex s32(field 0)]
site 1 probe 2 return DIR/app+X process("DIR/app").function("many@DIR/app.c:9").return
  function many
  field 0 $h: reg(7) const(X) add emit_bytes(8)
  field 1 (at return) $return: reg(0) emit_value8
  capture e7 = s64(field 1)
  capture e8 = s64(field 0)
"#;
    assert_eq!(masked, expected);
}

#[test]
fn o0_statement_probe_values_and_scopes() {
    if !gdb_available() {
        return;
    }
    let bin = compile("-O0");
    let v = run(
        r#"probe process.statement("step@app.c:18") { println($a, $b) }"#,
        &bin,
    );
    assert_eq!(v["$a"], V::I(4));
    assert_eq!(v["$b"], V::I(12));
    let v = run(
        r#"probe process.statement("step@app.c:20") { println($b) }"#,
        &bin,
    );
    assert_eq!(v["$b"], V::I(39));
    // `inner` lives in a lexical block that does not contain line 20.
    let e = err_text(
        r#"probe process.statement("step@app.c:20") { println($inner) }"#,
        &bin,
    );
    assert!(e.contains("unable to find local 'inner'"), "{e}");
    assert!(e.contains("(alternatives: $a $b)"), "{e}");
    let p = plan_text(r#"probe process.statement("step@app.c:17-20") { }"#, &bin).unwrap();
    assert_eq!(p.plans.sites.len(), 4, "{:?}", p.listing);
    assert!(p.listing[3].ends_with("app.c:20\")"), "{:?}", p.listing);
    // An inner `v` shadows the outer one inside its block.
    let v = run(
        r#"probe process.statement("shadow@app.c:25") { println($v, $a) }"#,
        &bin,
    );
    assert_eq!(v["$v"], V::I(20));
    assert_eq!(v["$a"], V::I(2));
    let v = run(
        r#"probe process.statement("shadow@app.c:26") { println($v, $a) }"#,
        &bin,
    );
    assert_eq!(v["$v"], V::I(3));
    assert_eq!(v["$a"], V::I(22));
    // A double is its IEEE bits, as stap's fp_* functions take it.
    let v = run(
        r#"probe process.function("scale") { println($d, $d$) }"#,
        &bin,
    );
    assert_eq!(v["$d"], V::I(1.5f64.to_bits() as i64));
    assert_eq!(v["$d$"], V::S("?".into()));
    let e = err_text(r#"probe process.statement("step@app.c:99") { }"#, &bin);
    assert!(e.contains("no line records for app.c:99"), "{e}");
}

#[test]
fn non_pie_globals_and_values() {
    if !gdb_available() {
        return;
    }
    let bin = compile("-O0 -no-pie");
    assert!(!debuginfo::DebugInfo::open(&bin).unwrap().is_pie());
    let v = run(
        r#"probe process.function("handle") { println(@var("counter"), $n, $r->id) }"#,
        &bin,
    );
    assert_eq!(v["@var(\"counter\")"], V::I(7));
    assert_eq!(v["$n"], V::I(3));
    assert_eq!(v["$r->id"], V::I(42));
}

#[test]
fn odd_scripts_never_panic() {
    let bin = compile("-O2");
    let bodies = [
        "$r->next->next->next->id",
        "$r[99999999999]",
        "$r->arr[-1]",
        "user_string_n($r->name, -1)",
        "user_string_n($r->name, $n)",
        "user_string($n)",
        "user_string($r->name + $n * 2 - 1)",
        "user_string($r->id < 3)",
        "$n$ . $n$$ . $$parms$$ . $$foo . $$locals$ . $$vars",
        "@cast(0, \"struct nope\")->x",
        "@cast($n, \"int\")",
        "@cast($r, \"struct req\")$$",
        "@var(\"nope\")",
        "@var(\"counter\", \"/nonexistent\")",
        "@var(\"counter@nofile.c\")",
        "@entry($n)",
        "$return->x",
        "$r->id->x",
        "$r->flags[2]",
        "$n->x",
        "$$return",
        "@defined(@defined($n))",
        "user_char($r) + user_long($r->next) + user_uint16($r->name)",
        "kernel_string($r->name) . user_string2($r->name, \"err\") . user_string_quoted($r->name)",
        "user_string()",
        "user_string(1, 2, 3)",
    ];
    let points = [
        "process.function(\"handle\")",
        "process.function(\"handle\").return",
        "process.function(\"sq\")",
        "process.function(\"*\")",
        "process.statement(\"handle@app.c:8\")",
        "process.begin",
        "begin",
    ];
    for p in points {
        for b in bodies {
            let text = format!("probe {p} {{ println({b}) }}");
            let mut sources = SourceMap::default();
            let f = sources.add("<input>", text.clone());
            let (script, _) = script_syntax::parse(&sources, f, &[]);
            let opts = PlanOptions {
                target_exe: Some(bin.clone()),
                ..PlanOptions::default()
            };
            if let Ok(planned) = plan(&script, &sources, &opts) {
                planned
                    .plans
                    .verify()
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
                let _ = dump(&planned);
            }
        }
    }
    for p in [
        "process(\"\").function(\"\")",
        "timer.ms(0)",
        "timer.foo(1)",
        "foo.bar",
        "process.statement(\"handle\")",
        "process.statement(\"x@y:z\")",
        "process.statement(-1)",
        "process.function(\"handle\").foo",
        "process(12345678).function(\"f\")",
        "process.function(\"handle\") if ($n > 1)",
    ] {
        let text = format!("probe {p} {{ }}");
        let mut sources = SourceMap::default();
        let f = sources.add("<input>", text.clone());
        let (script, _) = script_syntax::parse(&sources, f, &[]);
        let opts = PlanOptions {
            target_exe: Some(bin.clone()),
            ..PlanOptions::default()
        };
        let _ = plan(&script, &sources, &opts);
        let _ = list_probes(&script, &sources, &opts, true);
    }
}

#[test]
fn dwarf4_loc_and_bit_offset() {
    if !gdb_available() {
        return;
    }
    // DWARF 4: .debug_loc location lists and DW_AT_bit_offset bitfields.
    check_handle_values(&compile("-O2 -gdwarf-4"));
    check_handle_values(&compile("-O0 -gdwarf-4"));
    check_return(&compile("-O2 -gdwarf-4"));
}

/// A program with an SDT probe written the way `<sys/sdt.h>` writes it (that header
/// is not installed here): a `nop`, a `.note.stapsdt` note, `.stapsdt.base`.
const SDT_FIXTURE: &str = r###"#include <stdio.h>
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

#[test]
fn sdt_marks_read_their_arguments() {
    if !gdb_available() {
        return;
    }
    for opt in ["-O0", "-O2"] {
        let dir = std::env::temp_dir().join(format!("planner-sdt-{}{opt}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = dir.join("s.c");
        std::fs::write(&c, SDT_FIXTURE).unwrap();
        let bin = dir.join("s");
        let st = Command::new("gcc")
            .args(["-g", opt, "-o"])
            .arg(&bin)
            .arg(&c)
            .status()
            .unwrap();
        assert!(st.success());
        let bin = std::fs::canonicalize(bin).unwrap();
        let v = run(
            r#"probe process.provider("app").mark("st*") {
                println($arg1, user_string($arg2), $arg3, $arg4, $$name, $$provider, $$parms)
            }"#,
            &bin,
        );
        // The first hit is work(-1, "zero") with total = 5.
        assert_eq!(v["$arg1"], V::I(-1), "{opt}");
        assert_eq!(v["user_string($arg2)"], V::S("zero".into()), "{opt}");
        assert_eq!(v["$arg3"], V::I(5), "{opt}");
        assert_eq!(v["$arg4"], V::I(-7), "{opt}");
        assert_eq!(v["$$name"], V::S("step".into()));
        assert_eq!(v["$$provider"], V::S("app".into()));
        let V::S(parms) = &v["$$parms"] else { panic!() };
        assert!(
            parms.starts_with("arg1=0xffffffffffffffff arg2=0x"),
            "{parms}"
        );
        assert!(
            parms.ends_with(" arg3=0x5 arg4=0xfffffffffffffff9"),
            "{parms}"
        );
        let p = plan_text(r#"probe process.mark("step") { }"#, &bin).unwrap();
        assert_eq!(
            p.listing,
            vec![format!(
                "process(\"{}\").provider(\"app\").mark(\"step\")",
                bin.display()
            )]
        );
        let (ast, sources) = parse(r#"probe process.mark("*") {}"#);
        let opts = PlanOptions {
            target_exe: Some(bin.clone()),
            ..PlanOptions::default()
        };
        let l = list_probes(&ast, &sources, &opts, true).unwrap();
        assert!(
            l[0].ends_with(".mark(\"step\") $arg1:long $arg2:long $arg3:long $arg4:long"),
            "{l:?}"
        );
        let e = err_text(r#"probe process.mark("step") { println($arg5) }"#, &bin);
        assert!(e.contains("(alternatives: $arg1 $arg2 $arg3 $arg4"), "{e}");
    }
}

#[test]
fn kernel_points_resolve_against_the_given_elf() {
    // Any ELF with DWARF stands in for a kernel image here.
    let bin = compile("-O0 -no-pie");
    let (ast, sources) = parse(
        r#"probe kernel.function("handle") { println($n) } probe kernel.function("many").return { println($return) }"#,
    );
    let opts = PlanOptions::default();
    let p = plan_with_kernel(&ast, &sources, &opts, Some(&bin)).unwrap_or_else(|d| panic!("{d:?}"));
    let c = bin.with_file_name("app.c").display().to_string();
    assert_eq!(
        p.listing,
        vec![
            format!("kernel.function(\"handle@{c}:8\")"),
            format!("kernel.function(\"many@{c}:9\").return"),
        ]
    );
    assert_eq!(p.plans.sites[0].module, bin);
    let e = match plan(&ast, &sources, &opts) {
        Ok(_) => panic!("kernel probes without a kernel"),
        Err(d) => d[0].message.clone(),
    };
    assert!(
        e.contains("kernel probes need the kernel's ELF file"),
        "{e}"
    );
    let l = list_probes_with_kernel(&ast, &sources, &opts, true, Some(&bin)).unwrap();
    assert!(l[0].ends_with(" $r:struct req* $n:int $local:int"), "{l:?}");
}

#[test]
fn i386_binaries() {
    if !gdb_available() {
        return;
    }
    // 32-bit code: i386 DWARF registers, 4-byte pointers, cdecl stack arguments.
    for opt in ["-O0 -m32", "-O2 -m32"] {
        let bin = compile(opt);
        check_handle_values(&bin);
        check_return(&bin);
    }
}

/// Whether a distribution file a test needs exists; prints why the test is skipped.
fn have(path: &str, package: &str) -> bool {
    let ok = Path::new(path).exists();
    if !ok {
        eprintln!("skipped: {path} is missing (install {package})");
    }
    ok
}

fn plan_abs(text: &str) -> Result<Planned, Vec<Diagnostic>> {
    let (script, sources) = parse(text);
    plan(&script, &sources, &PlanOptions::default())
}

fn list_abs(text: &str, with_vars: bool) -> Vec<String> {
    let (script, sources) = parse(text);
    list_probes(&script, &sources, &PlanOptions::default(), with_vars).unwrap()
}

/// The address of a dynamic symbol of an ELF file.
fn dynsym_addr(path: &Path, name: &str) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(path).ok()?;
    let f = object::File::parse(&*bytes).ok()?;
    let addr = f
        .dynamic_symbols()
        .chain(f.symbols())
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address());
    addr
}

#[test]
fn debian_libc_malloc_reads_bytes_through_libc6_dbg() {
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    if !have(libc, "libc6") {
        return;
    }
    let bytes = std::fs::read(libc).unwrap();
    let id = {
        use object::Object;
        let f = object::File::parse(&*bytes).unwrap();
        f.build_id().ok().flatten().map(|b| b.to_vec())
    };
    let Some(id) = id else {
        eprintln!("skipped: {libc} has no build-id");
        return;
    };
    let hexid: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let dbg = format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &hexid[..2],
        &hexid[2..]
    );
    if !have(&dbg, "libc6-dbg") {
        // Without the package the failure must say what to install.
        let e = match plan_abs(&format!(
            r#"probe process("{libc}").function("malloc") {{ println($bytes) }}"#
        )) {
            Ok(_) => panic!("$bytes without debug info planned"),
            Err(d) => format!("{d:?}"),
        };
        eprintln!("{e}");
        return;
    }
    let p = plan_abs(&format!(
        r#"probe process("{libc}").function("malloc") {{ println($bytes) }}"#
    ))
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.plans.sites.len(), 1, "{}", dump(&p));
    let site = &p.plans.sites[0];
    assert_eq!(Some(site.addr.0), dynsym_addr(Path::new(libc), "malloc"));
    assert!(
        // The file as stap (libdw) spells it: Debian's relative directory as written.
        p.listing[0].contains("malloc@./malloc/malloc.c:"),
        "{:?}",
        p.listing
    );
    assert_eq!(p.bindings[0].captures.len(), 1, "{}", dump(&p));
    // In optimised libc, `bytes` is in rdi at the entry.
    let d = dump(&p);
    assert!(d.contains("$bytes: reg(5) emit_value8"), "{d}");
    let l = list_abs(
        &format!(r#"probe process("{libc}").function("malloc") {{}}"#),
        true,
    );
    assert!(l[0].contains("$bytes:size_t"), "{l:?}");
}

#[test]
fn debian_python_debug_interpreter_struct_pointer_parameters() {
    let py = "/usr/bin/python3.11d";
    if !have(py, "python3.11-dbg") {
        return;
    }
    let p = plan_abs(&format!(
        r#"probe process("{py}").function("_PyEval_EvalFrameDefault") {{
               println($tstate->interp, $frame->f_code, $throwflag, $tstate$, $frame->f_code->co_argcount)
           }}
           probe process("{py}").function("PyObject_GetAttr") {{
               println(user_string($v->ob_type->tp_name), $name->ob_refcnt)
           }}"#
    ))
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.plans.sites.len(), 2, "{}", dump(&p));
    assert_eq!(
        p.listing,
        vec![
            format!(
                r#"process("{py}").function("_PyEval_EvalFrameDefault@../Python/ceval.c:1634")"#
            ),
            format!(r#"process("{py}").function("PyObject_GetAttr@../Objects/object.c:904")"#),
        ]
    );
    // gdb stops at the same address (after the prologue: python3.11d is built -O0).
    if gdb_available() {
        let out = Command::new("gdb")
            .args(["-batch", "-nx", "-ex", "break PyObject_GetAttr", py])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!(" at {:#x}: ", p.plans.sites[1].addr.0)),
            "{text}"
        );
    }
    assert_eq!(p.bindings[0].captures.len(), 5, "{}", dump(&p));
    assert_eq!(p.bindings[1].captures.len(), 2, "{}", dump(&p));
    let l = list_abs(
        &format!(r#"probe process("{py}").function("PyObject_GetAttr") {{}}"#),
        true,
    );
    // As `stap -L` lists it: the locals `tp` and `result` have no location at the
    // probe address yet, so stap leaves them out.
    assert!(l[0].ends_with(") $v:PyObject* $name:PyObject*"), "{l:?}");
}

#[test]
fn debian_python_usdt_markers_list_with_their_arguments() {
    let py = "/usr/bin/python3.11";
    if !have(py, "python3.11-minimal") {
        return;
    }
    let l = list_abs(&format!(r#"probe process("{py}").mark("*") {{}}"#), false);
    let names: Vec<&str> = l
        .iter()
        .filter_map(|s| s.split(".mark(\"").nth(1))
        .map(|s| s.trim_end_matches("\")"))
        .collect();
    for want in [
        "function__entry",
        "function__return",
        "line",
        "gc__start",
        "gc__done",
        "import__find__load__start",
        "import__find__load__done",
        "audit",
    ] {
        assert!(names.contains(&want), "{want} missing from {l:?}");
    }
    assert!(
        l.iter()
            .all(|s| s.starts_with(&format!(r#"process("{py}").provider("python").mark(""#))),
        "{l:?}"
    );
    let lv = list_abs(
        &format!(r#"probe process("{py}").mark("function__entry") {{}}"#),
        true,
    );
    assert_eq!(lv.len(), 1, "{lv:?}");
    assert!(
        lv[0].ends_with("$arg1:long $arg2:long $arg3:long"),
        "{lv:?}"
    );
    // The markers' operands as the notes spell them; every one lowers to a location.
    let di = debuginfo::DebugInfo::open_or_symbols(Path::new(py)).unwrap();
    let fe = di
        .sdt_probes()
        .iter()
        .find(|p| p.name == "function__entry")
        .unwrap();
    let texts: Vec<&str> = fe.args.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(texts.len(), 3);
    assert!(
        texts[0].starts_with("8@") && texts[2].starts_with("-4@"),
        "{texts:?}"
    );
    assert_ne!(fe.semaphore, 0);
    let gc = di
        .sdt_probes()
        .iter()
        .find(|p| p.name == "gc__start")
        .unwrap();
    assert_eq!(gc.args.len(), 1);
    assert!(gc.args[0].signed && gc.args[0].size == 4, "{:?}", gc.args);
    // Planning a marker arms its semaphore: a Semaphore site at its address.
    let p = plan_abs(&format!(
        r#"probe process("{py}").mark("function__entry") {{ println(user_string($arg1), user_string($arg2), $arg3) }}"#
    ))
    .unwrap_or_else(|d| panic!("{d:?}"));
    let sems: Vec<_> = p
        .plans
        .sites
        .iter()
        .filter(|s| s.kind == SiteKind::Semaphore)
        .collect();
    assert_eq!(sems.len(), 1, "{}", dump(&p));
    assert_eq!(sems[0].addr.0, fe.semaphore);
    assert!(sems[0].plan.fields.is_empty());
}

const SDT_H_SEM: &str = r#"
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
unsigned short app_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));
void plain(int i, const char *s);
__attribute__((noipa)) void tick(long v, int i) {
  if (app_tick_semaphore) STAP_PROBE2(app, tick, v, i);
  printf("tick %ld %d\n", v, i);
}
int main(void) { for (int i = 0; i < 3; i++) { tick(100 + i, -i); plain(i, "str"); } return 0; }
"#;

const SDT_H_PLAIN: &str = r#"
#include <sys/sdt.h>
#include <stdio.h>
__attribute__((noipa)) void plain(int i, const char *s) {
  STAP_PROBE2(app, plain, i * 7 - 3, s);
  printf("plain %d %s\n", i, s);
}
"#;

#[test]
fn sys_sdt_h_markers_with_and_without_semaphores() {
    if !have(
        "/usr/include/x86_64-linux-gnu/sys/sdt.h",
        "systemtap-sdt-dev",
    ) && !have("/usr/include/sys/sdt.h", "systemtap-sdt-dev")
    {
        return;
    }
    for opt in ["-O0", "-O2"] {
        let dir = std::env::temp_dir().join(format!("planner-sdth-{}{opt}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.c"), SDT_H_SEM).unwrap();
        std::fs::write(dir.join("b.c"), SDT_H_PLAIN).unwrap();
        let bin = dir.join("s");
        let st = Command::new("gcc")
            .args(["-g", opt, "-o"])
            .arg(&bin)
            .arg(dir.join("a.c"))
            .arg(dir.join("b.c"))
            .status()
            .unwrap();
        assert!(st.success());
        let bin = std::fs::canonicalize(bin).unwrap();
        let p = plan_text(
            r#"probe process.mark("tick") { println($arg1, $arg2) }
               probe process.mark("plain") { println($arg1, user_string($arg2)) }"#,
            &bin,
        )
        .unwrap_or_else(|d| panic!("{d:?}"));
        let sems: Vec<_> = p
            .plans
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::Semaphore)
            .collect();
        assert_eq!(sems.len(), 1, "{opt}: {}", dump(&p));
        let want = {
            use object::{Object, ObjectSymbol};
            let bytes = std::fs::read(&bin).unwrap();
            let f = object::File::parse(&*bytes).unwrap();
            let a = f
                .symbols()
                .find(|s| s.name() == Ok("app_tick_semaphore"))
                .unwrap()
                .address();
            a
        };
        assert_eq!(sems[0].addr.0, want, "{opt}");
        assert_eq!(p.plans.sites.len(), 3, "{opt}: {}", dump(&p));
        assert_eq!(p.bindings.len(), 3);
        // The marker without a semaphore fires as the program runs: its values.
        if gdb_available() {
            let v = run(
                r#"probe process.mark("plain") { println($arg1, user_string($arg2), $$name) }"#,
                &bin,
            );
            assert_eq!(v["$arg1"], V::I(-3), "{opt}");
            assert_eq!(v["user_string($arg2)"], V::S("str".into()), "{opt}");
            assert_eq!(v["$$name"], V::S("plain".into()));
        }
    }
}

#[test]
fn progress_hook_hears_about_reading_and_indexing() {
    // A copy of its own: a file opened by another test is shared, not read again.
    let bin = {
        let b = compile("-O2");
        let copy = b.with_file_name("app-progress");
        std::fs::copy(&b, &copy).unwrap();
        copy
    };
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let h = heard.clone();
    set_progress(Some(std::sync::Arc::new(move |m: &str| {
        h.lock().unwrap().push(m.to_string())
    })));
    let r = plan_text(r#"probe process.function("handle") { println($n) }"#, &bin);
    set_progress(None);
    assert!(r.is_ok());
    let heard = heard.lock().unwrap();
    let me = bin.display().to_string();
    // Other tests run in parallel and may add their own messages: look for ours.
    assert!(heard.contains(&format!("reading {me}")), "{heard:?}");
    assert!(
        heard
            .iter()
            .any(|m| m.starts_with("indexing ") && m.ends_with(&format!("units of {me}"))),
        "{heard:?}"
    );
}

#[test]
fn user_stack_functions_capture_registers_and_stack_pages() {
    let bin = compile("-O2");
    for call in [
        "print_ubacktrace()",
        "println(sprint_ubacktrace())",
        "println(ubacktrace())",
        "println(ucallers(3))",
        "print_ubacktrace_brief()",
    ] {
        let text = format!(r#"probe process.function("handle") {{ {call} }}"#);
        let p = plan_text(&text, &bin).unwrap_or_else(|e| panic!("{call}: {e:?}"));
        let b = &p.bindings[0];
        let d = b
            .captures
            .values()
            .find(|d| matches!(d, Decode::Backtrace { .. }))
            .unwrap_or_else(|| panic!("{call}: {:?}", b.captures));
        let Decode::Backtrace {
            regs,
            stack,
            more_pages,
        } = d
        else {
            unreachable!()
        };
        assert_eq!(regs.len(), 17, "{call}");
        let fields = &p.plans.sites[0].plan.fields;
        for (n, f) in regs.iter().enumerate() {
            let f = f.expect("every register captured") as usize;
            assert_eq!(
                fields[f].ops,
                vec![Op::Reg(DwarfReg(n as u16)), Op::EmitValue(8)],
                "{call}"
            );
        }
        // The pages are consecutive, page-aligned and 4 KiB each.
        assert_eq!(*more_pages, 3, "{call}");
        for k in 0..=*more_pages {
            let ops = &fields[(stack + k) as usize].ops;
            assert_eq!(
                ops[..3],
                [Op::Reg(DwarfReg::RSP), Op::Const(!0xfff), Op::And]
            );
            assert_eq!(ops.last(), Some(&Op::EmitBytes(4096)), "{call}");
        }
    }
    // Symbolising an address needs nothing more than the address.
    for call in [
        "println(usymname(uaddr()))",
        "println(umodname(uaddr()))",
        "println(usymdata(uaddr()))",
        "print_ustack(\"0x1 0x2\")",
    ] {
        let text = format!(r#"probe process.function("handle") {{ {call} }}"#);
        let p = plan_text(&text, &bin).unwrap_or_else(|e| panic!("{call}: {e:?}"));
        assert!(
            !p.bindings[0]
                .captures
                .values()
                .any(|d| matches!(d, Decode::Backtrace { .. })),
            "{call}"
        );
    }
}

/// Memory for [`Regs`]: one string at a fixed address.
const SYSCALL_BUF: u64 = 0x7000_1000;

/// A syscall stop: given registers, and "hello\0" at [`SYSCALL_BUF`].
struct Regs(HashMap<u16, u64>);

impl backend::TargetAccess for Regs {
    fn reg(&mut self, reg: DwarfReg) -> Option<u64> {
        self.0.get(&reg.0).copied()
    }
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        let mem = b"hello\0";
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.wrapping_add(i as u64);
            *b = *a
                .checked_sub(SYSCALL_BUF)
                .and_then(|o| mem.get(o as usize))
                .ok_or(a)?;
        }
        Ok(())
    }
}

#[test]
fn syscall_sites_read_the_linux_registers() {
    // A stripped program: system call probes need no debug information.
    let bin = std::fs::canonicalize("/bin/true").unwrap();
    let text = r#"
probe process("/bin/true").syscall { if ($syscall == 1) printf("%d %d %d %d %d %d %s\n", $arg1, $arg2, $arg3, $arg4, $arg5, $arg6, user_string($arg2)) }
probe process.syscall.return { printf("%d %d %d\n", $syscall, $return, $arg1) }
"#;
    let (script, sources) = parse(text);
    let opts = PlanOptions {
        target_exe: Some(bin.clone()),
        ..PlanOptions::default()
    };
    let p = plan(&script, &sources, &opts).unwrap_or_else(|d| panic!("{d:?}"));
    let pp = format!("process(\"{}\")", bin.display());
    assert_eq!(
        p.listing,
        vec![format!("{pp}.syscall"), format!("{pp}.syscall.return")]
    );
    assert_eq!(p.plans.sites.len(), 2);
    assert_eq!(p.plans.sites[0].kind, SiteKind::SyscallEntry);
    assert_eq!(p.plans.sites[1].kind, SiteKind::SyscallReturn);
    for s in &p.plans.sites {
        assert_eq!(s.module, bin);
        assert_eq!(s.addr.0, 0);
    }
    assert_eq!(p.bindings[1].pp, format!("{pp}.syscall.return"));
    p.plans.verify().unwrap();
    // Execute each plan against registers holding write(1, buf, 5)'s entry (and
    // its exit with -2 in rax), and decode the captures as the runtime will.
    let regs: HashMap<u16, u64> = [
        (DwarfReg::SYSCALL_NR.0, 1),
        (5, 1),
        (4, SYSCALL_BUF),
        (1, 5),
        (10, 0xa),
        (8, 0x8),
        (9, (-9i64) as u64),
        (0, (-2i64) as u64),
    ]
    .into_iter()
    .collect();
    // Expression ids by (probe, text): both probes spell `$syscall`.
    let mut ids = HashMap::new();
    let probes = script.items.iter().filter_map(|i| match i {
        Item::Probe(p) => Some(p),
        _ => None,
    });
    for (k, probe) in probes.enumerate() {
        script_syntax::visit::walk_block(&probe.body, &mut |e| {
            ids.entry((k as u32, sources.snippet(e.span).to_string()))
                .or_insert(e.id.0);
            script_syntax::visit::Walk::Descend
        });
    }
    let mut values = HashMap::new();
    for (site, b) in p.plans.sites.iter().zip(&p.bindings) {
        let mut rec = Record::new(site.id, 1, 1, 0, 0);
        backend::execute(&site.plan, &mut Regs(regs.clone()), &mut rec);
        for ((probe, text), id) in &ids {
            if let (true, Some(d)) = (*probe == b.probe, b.captures.get(id)) {
                values.insert((site.id.0, text.clone()), decode(&rec, d));
            }
        }
    }
    let want = [
        (0, "$syscall", V::I(1)),
        (0, "$arg1", V::I(1)),
        (0, "$arg2", V::I(SYSCALL_BUF as i64)),
        (0, "$arg3", V::I(5)),
        (0, "$arg4", V::I(0xa)),
        (0, "$arg5", V::I(8)),
        (0, "$arg6", V::I(-9)),
        (0, "user_string($arg2)", V::S("hello".into())),
        (1, "$syscall", V::I(1)),
        (1, "$return", V::I(-2)),
        (1, "$arg1", V::I(1)),
    ];
    for (site, text, v) in want {
        assert_eq!(
            values.get(&(site, text.to_string())),
            Some(&v),
            "site {site} {text}: {values:?}"
        );
    }
    // Listing with variables (-L).
    let l = list_abs(r#"probe process("/bin/true").syscall.return {}"#, true);
    assert_eq!(
        l,
        vec![format!(
            "{pp}.syscall.return $syscall:long $arg1:long $arg2:long $arg3:long $arg4:long $arg5:long $arg6:long $return:long"
        )]
    );
    // Unknown names list what is there; $return only at the exit.
    for (probe, var, alts) in [
        (
            "syscall",
            "$return",
            "$syscall $arg1 $arg2 $arg3 $arg4 $arg5 $arg6)",
        ),
        ("syscall", "$arg7", "$arg6)"),
        ("syscall.return", "$fd", "$arg6 $return)"),
        ("syscall", "$$parms", "$arg6)"),
    ] {
        let e = err_text(&format!("probe process.{probe} {{ println({var}) }}"), &bin);
        assert!(
            e.contains(&format!(
                "unable to find '{var}' in probe point {pp}.{probe} (alternatives: "
            )) && e.contains(alts),
            "{e}"
        );
    }
    let e = err_text("probe process.syscall { println($arg1->x) }", &bin);
    assert!(e.contains("has no members"), "{e}");
    let e = err_text("probe process.syscall.entry { }", &bin);
    assert!(e.contains("alternatives: return"), "{e}");
}

/// The GNU Mach kernel with debug information (Debian's gnumach-dbg image, as the
/// `/boot` file of the test machine), unpacked once per test process.
fn gnumach_dbg() -> Option<PathBuf> {
    let gz = "/boot/gnumach-1.8-486-dbg.gz";
    if !have(gz, "gnumach-dbg") {
        return None;
    }
    let out = std::env::temp_dir().join(format!("planner-gnumach-{}", std::process::id()));
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !out.exists() {
        let bytes = Command::new("gzip").args(["-dc", gz]).output().unwrap();
        assert!(bytes.status.success());
        std::fs::write(&out, bytes.stdout).unwrap();
    }
    Some(out)
}

/// Expression ids of the expressions in function bodies, by their text (first one).
fn function_ids(script: &Script, sources: &SourceMap) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for item in &script.items {
        if let Item::Function(f) = item {
            if let script_syntax::ast::FunctionBody::Script(b) = &f.body {
                script_syntax::visit::walk_block(b, &mut |e| {
                    m.entry(sources.snippet(e.span).to_string())
                        .or_insert(e.id.0);
                    script_syntax::visit::Walk::Descend
                });
            }
        }
    }
    m
}

#[test]
fn functions_called_by_a_probe_are_captured_at_its_sites() {
    let Some(kernel) = gnumach_dbg() else {
        return;
    };
    // task_name() and thread_id() as mach/tapset/mach.stp defines them, called
    // directly, through another function, and by a recursive one; thread_id() from
    // two probes.
    let text = r#"
function task_name:string() { return kernel_string(@var("active_threads")[0]->task->name) }
function thread_id:long() { return @var("active_threads")[0] }
function outer:string() { return task_name() }
function depth(n) { if (n > 0) return depth(n - 1) + thread_id(); return 0 }
function unused() { return @var("active_threads")[1] }
probe kernel.function("mach_msg_trap") { if ($option & 1) printf("%s\n", outer()); println(depth(2)) }
probe kernel.function("mach_print") { println(thread_id()) }
"#;
    let (script, sources) = parse(text);
    let p = plan_with_kernel(&script, &sources, &PlanOptions::default(), Some(&kernel))
        .unwrap_or_else(|d| panic!("{d:?}"));
    let ids = function_ids(&script, &sources);
    let name = ids[r#"kernel_string(@var("active_threads")[0]->task->name)"#];
    let tid = ids[r#"@var("active_threads")[0]"#];
    let unused = ids[r#"@var("active_threads")[1]"#];
    assert_eq!(p.bindings.len(), 2, "{}", dump(&p));
    let (trap, print) = (&p.bindings[0], &p.bindings[1]);
    assert_eq!(trap.function, "mach_msg_trap");
    assert_eq!(print.function, "mach_print");
    // The task name: a string copied from active_threads[0]->task->name, read at
    // the probe from the symbol's link-time address.
    let Some(Decode::Str { field }) = trap.captures.get(&name) else {
        panic!("no capture of task_name()'s string: {}", dump(&p));
    };
    let ops = &p.plans.sites[0].plan.fields[*field as usize].ops;
    let sym = dynsym_addr(&kernel, "active_threads").unwrap();
    assert_eq!(ops.first(), Some(&Op::Const(sym)), "{ops:?}");
    // The image is an x86_64 build: 8-byte pointers.
    assert_eq!(
        ops.iter().filter(|o| **o == Op::Deref(8)).count(),
        2,
        "{ops:?}"
    );
    assert_eq!(ops.last(), Some(&Op::EmitString(128)), "{ops:?}");
    // thread_id(): an 8-byte pointer at both sites (through depth() at the first).
    for b in [trap, print] {
        assert_eq!(
            b.captures
                .get(&tid)
                .map(|d| matches!(d, Decode::Int { size: 8, .. })),
            Some(true),
            "{}",
            dump(&p)
        );
        assert!(!b.captures.contains_key(&unused), "{}", dump(&p));
    }
    assert!(!print.captures.contains_key(&name), "{}", dump(&p));
    // Errors in a function are reported once however many sites call it, and
    // `$name` stays illegal in functions.
    let (script, sources) = parse(
        r#"function f() { return @var("no_such_global") + $x }
probe kernel.function("mach_msg_trap") { println(f()) }
probe kernel.function("mach_print") { println(f()) }"#,
    );
    let errs = match plan_with_kernel(&script, &sources, &PlanOptions::default(), Some(&kernel)) {
        Ok(p) => panic!("expected errors, got {}", dump(&p)),
        Err(d) => d,
    };
    let msgs: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].contains("unable to find global 'no_such_global'"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("'$x' can only be used in a probe handler"),
        "{msgs:?}"
    );
    // Probes without a target context cannot call a function reading target data;
    // other functions are fine there.
    let (script, sources) = parse(
        r#"function tid() { return @var("active_threads")[0] }
function twice(n) { return 2 * n }
function via() { return tid() }
probe begin { println(twice(2)) }
probe end { println(via()) }
probe kernel.function("mach_print") { println(via()) }"#,
    );
    let errs = match plan_with_kernel(&script, &sources, &PlanOptions::default(), Some(&kernel)) {
        Ok(p) => panic!("expected errors, got {}", dump(&p)),
        Err(d) => d,
    };
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .message
            .contains("'@var(\"active_threads\")' is not available")
            && errs[0].notes[0].contains("function 'tid' is called by a probe without"),
        "{errs:?}"
    );
}

/// The field a capture decodes.
fn field_of(d: &Decode) -> u32 {
    match d {
        Decode::Int { field, .. } | Decode::Str { field } | Decode::Bitfield { field, .. } => {
            *field
        }
        other => panic!("not a one-field decode: {other:?}"),
    }
}

/// In a return probe, target expressions are evaluated whole at the entry (stap's
/// saved return variables), while the handler's own reads (`user_int`, `@cast`,
/// `register`) happen at the return through entry values saved in entry fields.
fn check_return_read_times(bin: &Path) {
    let script = r#"probe process.function("handle").return {
        println(user_int($r), $r->id, @entry(user_int($r)), @cast($r, "struct req")->id,
                register("rsp"), @entry(register("rsp")), user_int($r + 4 * $n))
    }"#;
    let (ast, sources) = parse(script);
    let p = plan_text(script, bin).unwrap();
    p.plans.verify().unwrap();
    let ids = ids_by_text(&ast, &sources);
    let site = &p.plans.sites[0];
    let SiteKind::Return { return_plan } = &site.kind else {
        panic!("not a return site")
    };
    let n_entry = site.plan.fields.len() as u32;
    let at_return = |text: &str| {
        let f = field_of(&p.bindings[0].captures[&ids[text]]);
        assert!(f < n_entry + return_plan.fields.len() as u32, "{text}");
        f >= n_entry
    };
    assert!(at_return("user_int($r)"), "{}", dump(&p));
    assert!(at_return("@cast($r, \"struct req\")->id"), "{}", dump(&p));
    assert!(at_return("register(\"rsp\")"), "{}", dump(&p));
    assert!(at_return("user_int($r + 4 * $n)"), "{}", dump(&p));
    assert!(!at_return("$r->id"), "{}", dump(&p));
    assert!(!at_return("@entry(user_int($r))"), "{}", dump(&p));
    assert!(!at_return("@entry(register(\"rsp\"))"), "{}", dump(&p));
    // The return reads start from saved entry values, never from the registers of
    // the return stop (where $r's register is long overwritten).
    let reads = &return_plan.fields
        [(field_of(&p.bindings[0].captures[&ids["user_int($r)"]]) - n_entry) as usize];
    assert!(
        matches!(reads.ops[0], Op::EntryField(k) if k < n_entry),
        "{reads:?}"
    );
    if !gdb_available() {
        return;
    }
    let v = run(script, bin);
    // handle(&r, 3) with r.id = 42 and the short r.arr[...] past it.
    assert_eq!(v["user_int($r)"], V::I(42));
    assert_eq!(v["@entry(user_int($r))"], V::I(42));
    assert_eq!(v["@cast($r, \"struct req\")->id"], V::I(42));
    assert_eq!(v["$r->id"], V::I(42));
    // The return pops the return address: rsp is 8 above the entry's.
    let (V::I(at_ret), V::I(at_entry)) = (&v["register(\"rsp\")"], &v["@entry(register(\"rsp\"))"])
    else {
        panic!("{v:?}")
    };
    assert_eq!(at_ret - at_entry, 8);
    // r + 12 is name[8..12] of "hello": zeroes.
    assert_eq!(v["user_int($r + 4 * $n)"], V::I(0));
}

#[test]
fn o0_return_reads_happen_at_the_return() {
    check_return_read_times(&compile("-O0"));
}

#[test]
fn o2_return_reads_happen_at_the_return() {
    check_return_read_times(&compile("-O2"));
}

#[test]
fn printf_memory_conversion_positions_and_lengths() {
    use crate::printf::{memory_conversions, MemConv, MemLen};
    let c = memory_conversions("%d %.4m %*.*M %%m %5s %m %-3.0M %.99999m");
    assert_eq!(
        c,
        vec![
            MemConv {
                conv: 'm',
                arg: 1,
                len: MemLen::Bytes(4)
            },
            MemConv {
                conv: 'M',
                arg: 4,
                len: MemLen::Arg(3)
            },
            MemConv {
                conv: 'm',
                arg: 6,
                len: MemLen::Bytes(1)
            },
            MemConv {
                conv: 'M',
                arg: 7,
                len: MemLen::Bytes(1)
            },
            MemConv {
                conv: 'm',
                arg: 8,
                len: MemLen::Bytes(crate::printf::MAX_MEMORY_BYTES)
            },
        ]
    );
    // Malformed formats are the runtime's to report.
    assert!(memory_conversions("%m %q").is_empty());
    assert!(memory_conversions("%.").is_empty());
    assert!(memory_conversions("100%").is_empty());
}

#[test]
fn printf_memory_is_copied_at_the_probe() {
    let bin = compile("-O0");
    let script = r#"probe process.function("handle") { printf("%d %.3M %s %.*m\n", $n, $r->name, "x", 2, $r->name + 1) }"#;
    let (ast, sources) = parse(script);
    let p = plan_text(script, &bin).unwrap();
    p.plans.verify().unwrap();
    let ids = ids_by_text(&ast, &sources);
    let caps = &p.bindings[0].captures;
    let plan = &p.plans.sites[0].plan;
    for (text, n) in [("$r->name", 3), ("$r->name + 1", 2)] {
        let Decode::Bytes { field } = caps[&ids[text]] else {
            panic!("{text}: {}", dump(&p))
        };
        assert_eq!(
            plan.fields[field as usize].ops.last(),
            Some(&Op::EmitBytes(n)),
            "{text}"
        );
    }
    assert!(matches!(caps[&ids["$n"]], Decode::Int { .. }));
    if gdb_available() {
        let v = run(script, &bin);
        // Bytes come back as their text here: "hel" and "el".
        assert_eq!(v["$r->name"], V::S("hel".into()));
        assert_eq!(v["$r->name + 1"], V::S("el".into()));
    }
    let e = err_text(
        r#"global g probe process.function("handle") { printf("%m", g) }"#,
        &bin,
    );
    assert!(
        e.contains("the address printed by %m must be computed from target variables"),
        "{e}"
    );
    let e = err_text(
        r#"probe process.function("handle") { w = 3; printf("%.*M", w, $r) }"#,
        &bin,
    );
    assert!(
        e.contains("the precision of %M must be a literal number"),
        "{e}"
    );
}

/// `-D MAXUSTACKBYTES`: the stack copy is that many bytes rounded up to pages, at
/// least one page and at most `MAX_USTACK_PAGES`.
#[test]
fn ustack_bytes_set_the_pages_copied() {
    let bin = compile("-O0");
    let (ast, sources) = parse(r#"probe process.function("handle") { print_ubacktrace() }"#);
    for (bytes, pages) in [
        (DEFAULT_MAX_USTACK_BYTES, 4),
        (1, 1),
        (4096, 1),
        (4097, 2),
        (65536, 16),
        (u32::MAX, MAX_USTACK_PAGES),
    ] {
        let opts = PlanOptions {
            target_exe: Some(bin.clone()),
            max_ustack_bytes: bytes,
            ..PlanOptions::default()
        };
        let p = plan(&ast, &sources, &opts).unwrap();
        p.plans.verify().unwrap();
        let Some(Decode::Backtrace {
            stack, more_pages, ..
        }) = p.bindings[0].captures.values().next()
        else {
            panic!("{}", dump(&p))
        };
        assert_eq!(more_pages + 1, pages, "{bytes}");
        let fields = &p.plans.sites[0].plan.fields;
        assert_eq!(fields.len() as u32, 17 + pages, "{bytes}");
        for k in 0..pages {
            let ops = &fields[(stack + k) as usize].ops;
            assert_eq!(ops.last(), Some(&Op::EmitBytes(4096)), "{bytes}");
            if k > 0 {
                assert_eq!(ops[3], Op::Const(u64::from(k) * 4096), "{bytes}");
            }
        }
    }
}

fn check_address_of(bin: &Path) {
    let script = r#"probe process.function("handle") {
        println($r, &$r->id, &$r->name, &$r->arr[2], user_short(&$r->arr[1]),
                user_int(&@var("counter")), user_int(&@cast($r, "struct req")->id),
                &$r->arr[$n] - &$r->arr[0])
    }"#;
    let p = plan_text(script, bin).unwrap();
    p.plans.verify().unwrap();
    if !gdb_available() {
        return;
    }
    let v = run(script, bin);
    let V::I(r) = v["$r"] else { panic!("{v:?}") };
    assert_eq!(v["&$r->id"], V::I(r));
    assert_eq!(v["&$r->name"], V::I(r + 4));
    assert_eq!(v["&$r->arr[2]"], V::I(r + 56));
    // Reads through the addresses see the fixture's data: r.arr[1] = -20, counter 7
    // before handle() adds to it, r.id = 42.
    assert_eq!(v["user_short(&$r->arr[1])"], V::I(-20));
    assert_eq!(v["user_int(&@var(\"counter\"))"], V::I(7));
    assert_eq!(v["user_int(&@cast($r, \"struct req\")->id)"], V::I(42));
}

#[test]
fn o0_address_of_target_expressions() {
    check_address_of(&compile("-O0"));
}

#[test]
fn o2_address_of_target_expressions() {
    check_address_of(&compile("-O2"));
}

#[test]
fn address_of_what_has_no_address_is_stap_error() {
    let bin = compile("-O2");
    for (expr, want) in [
        ("&$r->flags", "cannot take the address of a bit field"),
        ("&$$parms", "cannot take address of context variable"),
        ("&$r$", "cannot take address of pretty-printed variable"),
        ("&1", "unknown type in dereference: operator '&'"),
        ("&$n", "cannot take address of object in register"),
    ] {
        let e = err_text(
            &format!(r#"probe process.function("handle") {{ println({expr}) }}"#),
            &bin,
        );
        assert!(e.contains(want), "{expr}: {e}");
    }
    let e = err_text(
        r#"probe process.function("handle").return { println(&$return) }"#,
        &bin,
    );
    assert!(
        e.contains("cannot take address of object in register"),
        "{e}"
    );
    // No target context: the operand is reported like any target variable.
    let e = err_text(r#"probe begin { println(&$x) }"#, &bin);
    assert!(e.contains("'$x' is not available in this probe"), "{e}");
}

#[test]
fn assembler_functions_have_no_return_value() {
    // GNU as gives a function of a `.S` file DW_TAG_unspecified_type as its type, as
    // glibc's syscall wrappers have: `$return` is refused with a reason and `-L` leaves
    // it out, instead of an empty type name.
    let dir = std::env::temp_dir().join(format!("planner-asm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.S"),
        ".text\n.globl asm_add\n.type asm_add, @function\nasm_add:\n lea (%rdi,%rsi), %rax\n ret\n.size asm_add, .-asm_add\n.section .note.GNU-stack,\"\",@progbits\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("m.c"),
        "long asm_add(long, long);\nint main(void) { return (int)asm_add(40, 2) - 42; }\n",
    )
    .unwrap();
    let bin = dir.join("m");
    let st = Command::new("gcc")
        .args(["-g", "-o"])
        .arg(&bin)
        .arg(dir.join("m.c"))
        .arg(dir.join("a.S"))
        .status()
        .expect("gcc runs");
    assert!(st.success());
    let e = err_text(
        r#"probe process.function("asm_add").return { println($return) }"#,
        &bin,
    );
    assert!(e.contains("'asm_add' has no return type"), "{e}");
    let (ast, sources) = parse(r#"probe process.function("asm_add").return {}"#);
    let opts = PlanOptions {
        target_exe: Some(bin.clone()),
        ..PlanOptions::default()
    };
    let l = list_probes(&ast, &sources, &opts, true).unwrap();
    assert_eq!(l.len(), 1);
    assert!(l[0].ends_with(".return"), "{l:?}");
    // The return register itself stays readable.
    plan_text(
        r#"probe process.function("asm_add").return { println(register("rax")) }"#,
        &bin,
    )
    .unwrap();
}

#[test]
fn plt_jump_decoding() {
    use crate::dynelf::got_jump;
    // jmp *0x2fe2(%rip) at 0x1030: the slot is 0x1036 + 0x2fe2.
    let plain = [
        0xff, 0x25, 0xe2, 0x2f, 0, 0, 0x68, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0,
    ];
    assert_eq!(got_jump(&plain, 0x1030), Some(0x1036 + 0x2fe2));
    // endbr64; bnd jmp *0x2f86(%rip) at 0x1070 (.plt.sec with MPX prefix).
    let ibt = [
        0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0x86, 0x2f, 0, 0, 0x0f, 0x1f, 0x44, 0, 0,
    ];
    assert_eq!(got_jump(&ibt, 0x1070), Some(0x107b + 0x2f86));
    // A negative displacement.
    let back = [
        0xff, 0x25, 0xf0, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(got_jump(&back, 0x2000), Some(0x2006 - 0x10));
    // A lazy IBT .plt stub (endbr64; push; bnd jmp rel32) jumps through no slot.
    let lazy = [
        0xf3, 0x0f, 0x1e, 0xfa, 0x68, 1, 0, 0, 0, 0xf2, 0xe9, 0, 0, 0, 0, 0x90,
    ];
    assert_eq!(got_jump(&lazy, 0x1030), None);
    assert_eq!(got_jump(&[0xff], 0), None);
}

#[test]
fn plt_sites_pp_listing_and_name() {
    let bin = compile("-O0");
    let exe = bin.display().to_string();
    // The fixture calls printf through the PLT.
    let text = r#"probe process.plt("print*") { println($$name) }"#;
    let (script, sources) = parse(text);
    let p = plan_text(text, &bin).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(p.plans.sites.len(), 1);
    let site = &p.plans.sites[0];
    assert_eq!(site.kind, SiteKind::Entry);
    assert!(site.plan.fields.is_empty());
    assert_eq!(
        p.bindings[0].pp,
        format!("process(\"{exe}\").statement({:#x})", site.addr.0)
    );
    let ids = ids_by_text(&script, &sources);
    let d = p.bindings[0].captures.values().next().cloned();
    assert!(!ids.is_empty());
    assert_eq!(
        d,
        Some(Decode::Pretty(vec![capture_plan::PrettyPart::Text(
            "printf".to_string()
        )]))
    );
    let opts = PlanOptions {
        target_exe: Some(bin.clone()),
        ..PlanOptions::default()
    };
    let l = list_probes(&script, &sources, &opts, true).unwrap();
    assert_eq!(l, vec![format!("process(\"{exe}\").plt(\"printf\")")]);
    let e = err_text(r#"probe process.plt("printf") { println($x) }"#, &bin);
    assert!(e.contains("unable to find plt variable '$x'"), "{e}");
    let e = err_text(r#"probe process.plt("printf").call { }"#, &bin);
    assert!(e.contains("probe point mismatch at position 2"), "{e}");
    let p = plan_text(r#"probe process.plt("printf").return { }"#, &bin).unwrap();
    assert!(matches!(p.plans.sites[0].kind, SiteKind::Return { .. }));
    assert!(
        p.bindings[0].pp.ends_with(").return"),
        "{}",
        p.bindings[0].pp
    );
}

#[test]
fn thread_sites_and_spelling() {
    let bin = compile("-O0");
    let exe = bin.display().to_string();
    let p = plan_text(
        &format!(
            "probe process.thread.begin {{ }} probe process(\"{exe}\").thread.end {{ }} probe process.begin {{ }}"
        ),
        &bin,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let kinds: Vec<_> = p.plans.sites.iter().map(|s| s.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            SiteKind::ThreadBegin,
            SiteKind::ThreadEnd,
            SiteKind::ProcessBegin
        ]
    );
    assert_eq!(p.bindings[0].pp, "process.thread.begin");
    assert_eq!(p.bindings[1].pp, format!("process(\"{exe}\").thread.end"));
    assert_eq!(p.bindings[2].pp, format!("process(\"{exe}\").begin"));
    assert!(p.plans.sites.iter().all(|s| s.module == bin));
    let e = err_text("probe process.thread.start { }", &bin);
    assert!(e.contains("alternatives: begin end"), "{e}");
    let e = err_text("probe process.thread.begin { println($x) }", &bin);
    assert!(e.contains("'$x' is not available"), "{e}");
}

#[test]
fn library_patterns() {
    use crate::dynelf::library_matches;
    let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
    assert!(library_matches("libc.so.6", libc));
    assert!(library_matches("*libc*", libc));
    assert!(library_matches("*", libc));
    // A wildcard pattern is matched against the whole path, as stap does.
    assert!(!library_matches("libc*", libc));
    assert!(!library_matches("libm.so.6", libc));
    let bin = compile("-O0");
    let libs = crate::dynelf::loaded_libraries(&bin).unwrap();
    assert!(
        libs.iter()
            .any(|l| l.file_name().is_some_and(|n| n == "libc.so.6")),
        "{libs:?}"
    );
    assert!(
        libs.iter().all(|l| l.is_absolute() && l.exists()),
        "{libs:?}"
    );
}

#[test]
fn thread_probes_are_refused_with_a_kernel_target() {
    let bin = compile("-O0");
    let (script, sources) = parse("probe process.thread.end { }");
    let opts = PlanOptions {
        target_exe: Some(bin.clone()),
        ..PlanOptions::default()
    };
    let e = plan_with_kernel(&script, &sources, &opts, Some(&bin)).unwrap_err();
    assert!(
        e[0].message
            .contains("probe point process.thread.end is not available on a --gdb/--vm target"),
        "{:?}",
        e[0].message
    );
}

/// stap's pn() (`stap -p3` writes it as each probe's `.pn`): the resolved point, equal
/// to pp(), except for a point reached through an alias, which is the alias as written.
#[test]
fn pn_names_the_alias_or_the_resolved_point() {
    let bin = compile("-O0");
    let (script, sources) = parse(
        r#"probe myal = process.function("handle") {}
probe myal, process.function("ha*") { println(pn()) }"#,
    );
    let (script, d) = script_syntax::expand_script(&script);
    assert!(d.is_empty(), "{d:?}");
    let opts = PlanOptions {
        target_exe: Some(bin.clone()),
        ..PlanOptions::default()
    };
    let p = plan(&script, &sources, &opts).unwrap_or_else(|d| panic!("{d:?}"));
    let pns: Vec<(&str, &str)> = p
        .bindings
        .iter()
        .map(|b| (b.pn.as_str(), b.pp.as_str()))
        .collect();
    assert_eq!(pns.len(), 2, "{pns:?}");
    assert!(pns.iter().any(|(pn, _)| *pn == "myal"), "{pns:?}");
    // Empty: the runtime answers pp() for it.
    assert!(
        pns.iter()
            .any(|(pn, pp)| pn.is_empty() && pp.contains(".function(\"handle@")),
        "{pns:?}"
    );
}

#[test]
fn linux_kernel_tapsets_are_refused_with_the_reason() {
    let bin = compile("-O0");
    for point in [
        "syscall.open",
        "vfs.read",
        "netdev.receive",
        "scheduler.cpu_on",
    ] {
        let e = err_text(&format!("probe {point} {{ println(1) }}"), &bin);
        assert!(
            e.contains("Linux kernel tapsets, which need a Linux kernel runtime"),
            "{point}: {e}"
        );
    }
    let e = err_text("probe nosuchfamily.x { println(1) }", &bin);
    assert!(e.contains("unknown probe point 'nosuchfamily'"), "{e}");
}
