//! Tests for the unwinder: a fixture built with `-O2 -fomit-frame-pointer` whose call
//! chain runs through a shared library of its own is stopped under gdb; its registers
//! and stack bytes are fed to the unwinder and the frames compared with gdb's `bt`.

use super::*;
use std::process::Command;

const MAIN_C: &str = r#"
#include <stdio.h>
int lib_outer(int n, int (*cb)(int));
__attribute__((noipa)) int leaf(int n) { volatile int x = n; return x * 2 + 1; }
__attribute__((noipa)) int back(int n) {
  volatile char pad[200]; pad[0] = (char)n; pad[199] = 1;
  return leaf(n + pad[0] - n + 1) + pad[199];
}
__attribute__((noipa)) int f2(int n) { return lib_outer(n + 1, back) * 3 + n; }
__attribute__((noipa)) int f1(int n) { int r = f2(n + 1); return r + (r >> 3); }
int main(int argc, char **argv) { int r = f1(argc); printf("%d\n", r); return r == 12345; }
"#;

const LIB_C: &str = r#"
__attribute__((noipa)) int lib_inner(int n, int (*cb)(int)) {
  long big[20]; for (int i = 0; i < 20; i++) big[i] = n + i;
  return cb(n + 1) + (int)big[(n & 7) + 3];
}
__attribute__((noipa)) int lib_outer(int n, int (*cb)(int)) { return lib_inner(n * 2, cb) - 1; }
"#;

fn gdb_available() -> bool {
    Command::new("gdb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn build(dir: &Path) -> PathBuf {
    build_with(dir, &[])
}

fn build_with(dir: &Path, extra: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("main.c"), MAIN_C).unwrap();
    std::fs::write(dir.join("lib.c"), LIB_C).unwrap();
    let flags = ["-g", "-O2", "-fomit-frame-pointer"];
    let st = Command::new("gcc")
        .args(flags)
        .args(extra)
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("libdeep.so"))
        .arg(dir.join("lib.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("gcc")
        .args(flags)
        .args(extra)
        .arg("-o")
        .arg(dir.join("deep"))
        .arg(dir.join("main.c"))
        .arg(format!("-L{}", dir.display()))
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-ldeep")
        .status()
        .unwrap();
    assert!(st.success());
    dir.join("deep")
}

/// One line of gdb's `bt`: pc (None for frame 0), function, file basename and line.
type BtLine = (Option<u64>, String, Option<(String, u32)>);

/// One stop of the fixture at `leaf`, as gdb saw it.
struct Stop {
    regs: [u64; 17],
    stack: Vec<u8>,
    rsp: u64,
    /// (pc or None for frame 0, function, file basename and line)
    bt: Vec<BtLine>,
    /// (start, file) of each mapping at file offset 0.
    maps: Vec<(u64, PathBuf)>,
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn stop_at_leaf(bin: &Path) -> Stop {
    let out = Command::new("gdb")
        .args(["-batch", "-nx"])
        .args(["-ex", "break leaf", "-ex", "run", "-ex", "info registers"])
        .args([
            "-ex",
            "x/2048xb $rsp",
            "-ex",
            "set backtrace past-main on",
            "-ex",
            "bt",
        ])
        .args(["-ex", "info proc mappings"])
        .arg(bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let names = [
        "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15", "rip",
    ];
    let mut regs = [0u64; 17];
    let mut seen = 0;
    let mut stack = Vec::new();
    let mut rsp = None;
    let mut bt = Vec::new();
    let mut maps = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 2 {
            if let Some(i) = names.iter().position(|n| *n == w[0]) {
                if let Some(v) = hex(w[1]) {
                    regs[i] = v;
                    seen |= 1 << i;
                }
                continue;
            }
        }
        if line.starts_with("0x") && line.contains(":\t0x") {
            // x/xb: "0x7ffe...:\t0x01\t0x00..." (the address may carry a <symbol>).
            let (addr, bytes) = line.split_once(":\t").unwrap();
            let addr = hex(addr.split_whitespace().next().unwrap()).unwrap();
            if rsp.is_none() {
                rsp = Some(addr);
            }
            for b in bytes.split_whitespace() {
                stack.push(hex(b).unwrap() as u8);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            // "#1  0x00005555555551d6 in back (n=...) at /tmp/x/main.c:7" or
            // "#0  leaf (n=5) at /tmp/x/main.c:3".
            let rest = rest.split_once(' ').map_or("", |r| r.1).trim_start();
            let (pc, rest) = match rest.split_once(" in ") {
                Some((a, r)) if a.starts_with("0x") => (hex(a), r),
                _ => (None, rest),
            };
            let func = rest.split(' ').next().unwrap_or("").to_string();
            let file_line = rest.rsplit_once(" at ").and_then(|(_, fl)| {
                let (f, l) = fl.rsplit_once(':')?;
                let base = Path::new(f).file_name()?.to_string_lossy().into_owned();
                Some((base, l.trim().parse().ok()?))
            });
            bt.push((pc, func, file_line));
            continue;
        }
        if w.len() >= 6 && w[0].starts_with("0x") && w[3] == "0x0" && w[5].starts_with('/') {
            maps.push((hex(w[0]).unwrap(), PathBuf::from(w[5])));
        }
    }
    assert_eq!(seen, (1 << 17) - 1, "registers missing in:\n{text}");
    assert!(stack.len() >= 512, "no stack bytes in:\n{text}");
    assert!(bt.len() >= 7, "short bt in:\n{text}");
    Stop {
        regs,
        stack,
        rsp: rsp.unwrap(),
        bt,
        maps,
    }
}

fn unwinder_for(stop: &Stop) -> Unwinder {
    let mut u = Unwinder::new();
    let mut added = Vec::new();
    for (start, path) in &stop.maps {
        if added.contains(path) {
            continue;
        }
        added.push(path.clone());
        // gcc's PIE executables and shared objects link their first segment at 0.
        u.add_module(path, *start).unwrap();
    }
    u
}

#[test]
fn deep_stack_without_frame_pointers_matches_gdb_bt() {
    if !gdb_available() {
        eprintln!("skipped: no gdb");
        return;
    }
    let dir = std::env::temp_dir().join(format!("unwind-test-{}", std::process::id()));
    let bin = build(&dir);
    let stop = stop_at_leaf(&bin);
    assert_eq!(stop.rsp, stop.regs[RSP]);
    let u = unwinder_for(&stop);
    let frames = u.unwind(&stop.regs, stop.rsp, &stop.stack, 64);
    let got: Vec<String> = frames
        .iter()
        .map(|f| format!("{:#x} {}", f.pc, f.function.as_deref().unwrap_or("??")))
        .collect();
    let want: Vec<String> = stop
        .bt
        .iter()
        .enumerate()
        .map(|(i, (pc, name, _))| {
            let pc = if i == 0 {
                stop.regs[RIP]
            } else {
                pc.unwrap_or(0)
            };
            format!("{pc:#x} {name}")
        })
        .collect();
    // Our own frames must match exactly; below main, libc's frames too.
    let upto_main = want.iter().position(|w| w.ends_with(" main")).unwrap() + 1;
    assert_eq!(
        &got[..upto_main.min(got.len())],
        &want[..upto_main],
        "got {got:#?}\nwant {want:#?}"
    );
    let names: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect();
    assert_eq!(
        &names[..7],
        &["leaf", "back", "lib_inner", "lib_outer", "f2", "f1", "main"]
    );
    assert_eq!(got, want, "frames below main differ");
    // Modules, offsets and lines agree with gdb's.
    assert_eq!(frames[2].module.file_name().unwrap(), "libdeep.so");
    assert_eq!(
        frames[1].module,
        std::fs::canonicalize(&bin).unwrap_or(bin.clone())
    );
    for (i, (f, (_, _, fl))) in frames.iter().zip(&stop.bt).enumerate().take(7) {
        let ours = f.file_line.as_ref().map(|(p, l)| {
            (
                Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                *l,
            )
        });
        assert_eq!(&ours, fl, "frame {i}");
    }
    // usymname/umodname of a return address.
    let s = u.symbolize(frames[3].pc).unwrap();
    assert_eq!(s.function.as_deref(), Some("lib_outer"));
    assert_eq!(s.offset, frames[3].offset);
    assert!(s.offset > 0);
    assert_eq!(
        u.module_name(frames[3].pc),
        Some(frames[3].module.as_path())
    );
}

#[test]
fn truncated_stack_ends_the_walk_quietly() {
    if !gdb_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("unwind-trunc-{}", std::process::id()));
    let bin = build(&dir);
    let stop = stop_at_leaf(&bin);
    let u = unwinder_for(&stop);
    let full = u.unwind(&stop.regs, stop.rsp, &stop.stack, 64);
    // Each shorter copy gives a prefix of the full walk, never garbage or a panic.
    for n in [0, 7, 8, 64, 200, 255, 256, 300, 511] {
        let part = u.unwind(&stop.regs, stop.rsp, &stop.stack[..n], 64);
        assert!(!part.is_empty(), "{n}");
        assert!(part.len() <= full.len());
        assert_eq!(&full[..part.len()], &part[..], "{n}");
    }
    // max_frames is honoured.
    assert_eq!(u.unwind(&stop.regs, stop.rsp, &stop.stack, 3).len(), 3);
    // Garbage registers end the walk at once.
    let mut bad = stop.regs;
    bad[RIP] = 0x10;
    let f = u.unwind(&bad, stop.rsp, &stop.stack, 64);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].function, None);
}

#[test]
fn empty_unwinder_and_per_pid_map() {
    let u = Unwinder::new();
    let regs = [0u64; 17];
    assert!(u.unwind(&regs, 0, &[], 10).is_empty());
    assert!(u.symbolize(0x1234).is_none());
    let mut m = Unwinders::new();
    assert!(UserStacks::symbolize(&m, 1, 0).is_none());
    assert!(m.add_module(1, Path::new("/nonexistent/x"), 0).is_err());
    let me = std::env::current_exe().unwrap();
    m.add_module(7, &me, 0).unwrap();
    assert!(m.get(7).is_some());
    m.remove_pid(7);
    assert!(m.get(7).is_none());
}

#[test]
fn debug_frame_alone_unwinds_too() {
    if !gdb_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("unwind-dbgframe-{}", std::process::id()));
    // No unwind tables: the fixture's own CFI is only in .debug_frame.
    let bin = build_with(
        &dir,
        &["-fno-asynchronous-unwind-tables", "-fno-unwind-tables"],
    );
    let lib = DebugInfo::open(&dir.join("libdeep.so")).unwrap();
    let inner = lib.match_functions("lib_inner")[0].entry_pc;
    assert!(lib.unwind_row(inner).is_some());
    let stop = stop_at_leaf(&bin);
    let u = unwinder_for(&stop);
    let frames = u.unwind(&stop.regs, stop.rsp, &stop.stack, 64);
    let names: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect();
    assert!(
        names.starts_with(&["leaf", "back", "lib_inner", "lib_outer", "f2", "f1", "main"]),
        "{names:?}"
    );
    for (i, f) in frames.iter().enumerate().take(7).skip(1) {
        assert_eq!(Some(f.pc), stop.bt[i].0, "frame {i}");
    }
}

#[test]
fn random_registers_and_stacks_never_panic() {
    // The test binary itself (PIE at a made-up bias) and libc, with garbage inputs.
    let mut u = Unwinder::new();
    let me = std::env::current_exe().unwrap();
    u.add_module(&me, 0x5555_0000_0000).unwrap();
    let text: Vec<(u64, u64)> = DebugInfo::open_or_symbols(&me)
        .unwrap()
        .exec_ranges()
        .to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..500 {
        let mut regs = [0u64; 17];
        for r in regs.iter_mut() {
            *r = next();
        }
        // Often a pc inside the module, so that real CFI rows are applied to junk.
        if let Some((a, b)) = text.first() {
            if next() % 4 != 0 && b > a {
                regs[RIP] = 0x5555_0000_0000 + a + next() % (b - a);
            }
        }
        let len = (next() % 4096) as usize;
        let stack: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let base = if next() % 2 == 0 { regs[RSP] } else { next() };
        let frames = u.unwind(&regs, base, &stack, 32);
        assert!(frames.len() <= 32);
        let _ = u.symbolize(next());
    }
}
