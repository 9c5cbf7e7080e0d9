//! Live tests of USDT semaphores (raised while traced, lowered at detach, inherited by
//! forks, re-resolved after exec) and of the `ModuleMapped` announcements, checked
//! against the fixture's own view (/proc/self/maps, the semaphore value it reads).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use backend::{Event, TargetEnd};
use backend_ptrace::{Launch, Options};
use capture_plan::{Record, SiteKind};
use common::*;
use object::{Object, ObjectKind, ObjectSection, ObjectSegment};

const USDT: &str = r#"
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
__extension__ unsigned short snaptap_tick_semaphore __attribute__((unused))
    __attribute__((section(".probes")));
#define SNAPTAP_TICK_ENABLED() __builtin_expect(snaptap_tick_semaphore, 0)
__attribute__((noipa)) void tick(long i) { __asm__ volatile("" :: "r"(i)); }
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    setvbuf(out, NULL, _IONBF, 0);
    int n = atoi(argv[2]);
    int us = atoi(argv[3]);
    const char *mode = argc > 4 ? argv[4] : "";
    for (long i = 0; i < n; i++) {
        if (!strcmp(mode, "zero") && i == 3) snaptap_tick_semaphore = 0;
        fprintf(out, "%ld %s %u\n", i, SNAPTAP_TICK_ENABLED() ? "enabled" : "disabled",
                (unsigned)snaptap_tick_semaphore);
        if (SNAPTAP_TICK_ENABLED()) DTRACE_PROBE1(snaptap, tick, i);
        tick(i);
        if (us) usleep(us);
    }
    if (!strcmp(mode, "fork")) {
        pid_t c = fork();
        if (c == 0) {
            fprintf(out, "child %u\n", (unsigned)snaptap_tick_semaphore);
            _exit(0);
        }
        int st;
        waitpid(c, &st, 0);
        fprintf(out, "parent %u %d\n", (unsigned)snaptap_tick_semaphore, st);
    }
    return 0;
}
"#;

const LIBFIX: &str = "__attribute__((noipa)) int lib_fn(int x) { return x * 2; }\n";
const LIBDYN: &str = "__attribute__((noipa)) int dl_fn(int x) { return x + 7; }\n";
const MODS: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
int lib_fn(int);
int main(int argc, char **argv) {
    void *h = dlopen(argv[2], RTLD_NOW);
    if (!h) return 1;
    int (*f)(int) = (int (*)(int))dlsym(h, "dl_fn");
    FILE *out = fopen(argv[1], "w");
    FILE *m = fopen("/proc/self/maps", "r");
    char line[4096];
    while (fgets(line, sizeof line, m)) fputs(line, out);
    fclose(m);
    fprintf(out, "result %d %d\n", lib_fn(3), f(5));
    fclose(out);
    dlclose(h);
    return 0;
}
"#;

/// The semaphore address recorded in the `.note.stapsdt` of `exe` for `provider:name`
/// (link-time; what the planner hands the backend).
fn note_semaphore(exe: &Path, provider: &str, name: &str) -> u64 {
    let data = std::fs::read(exe).unwrap();
    let f = object::File::parse(&*data).unwrap();
    let notes = f.section_by_name(".note.stapsdt").unwrap().data().unwrap();
    let mut off = 0usize;
    while off + 12 <= notes.len() {
        let word = |o: usize| u32::from_le_bytes(notes[o..o + 4].try_into().unwrap()) as usize;
        let (namesz, descsz) = (word(off), word(off + 4));
        let name_at = off + 12;
        let desc_at = name_at + namesz.div_ceil(4) * 4;
        let desc = &notes[desc_at..desc_at + descsz];
        let sem = u64::from_le_bytes(desc[16..24].try_into().unwrap());
        let strs: Vec<&[u8]> = desc[24..].split(|&b| b == 0).collect();
        if strs[0] == provider.as_bytes() && strs[1] == name.as_bytes() {
            return sem;
        }
        off = desc_at + descsz.div_ceil(4) * 4;
    }
    panic!("no note {provider}:{name}");
}

fn usdt(dir: &TempDir) -> PathBuf {
    usdt_opt(dir, "-O2")
}

fn usdt_opt(dir: &TempDir, opt: &str) -> PathBuf {
    gcc(dir, &format!("usdt{opt}"), USDT, &[opt])
}

fn semaphore_site(id: u32, exe: &Path) -> capture_plan::ProbeSite {
    let addr = note_semaphore(exe, "snaptap", "tick");
    assert_eq!(addr, sym(exe, "snaptap_tick_semaphore"));
    site(id, exe, addr, SiteKind::Semaphore, plan(vec![]))
}

/// `(i, enabled, value)` of each loop line the fixture printed.
fn states(text: &str) -> Vec<(u64, bool, u32)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            Some((
                w.first()?.parse().ok()?,
                *w.get(1)? == "enabled",
                w.get(2)?.parse().ok()?,
            ))
        })
        .collect()
}

/// A long-running process, polled: off before the attach, on while traced (exactly
/// one), off again after the detach; it emits no record of its own.
#[test]
fn semaphore_is_raised_while_attached_and_restored_after() {
    let dir = TempDir::new();
    let exe = usdt(&dir);
    let out = dir.path("out.txt");
    let mut child = std::process::Command::new(&exe)
        .arg(&out)
        .arg("90")
        .arg("10000")
        .spawn()
        .expect("start fixture");
    std::thread::sleep(Duration::from_millis(150));
    let o = run_with(
        Launch::Attach { pid: child.id() },
        Options::default(),
        vec![
            semaphore_site(0, &exe),
            entry_site(1, &exe, "tick", vec![reg(5)]),
        ],
        Some(10),
    );
    assert!(o.site(0).is_empty(), "a semaphore emits no record");
    assert_eq!(o.site(1).len(), 10);
    assert!(child.wait().expect("wait").success());
    let st = states(&read(&out));
    assert_eq!(
        st.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..90).collect::<Vec<_>>()
    );
    for s in &st {
        assert_eq!(s.1, s.2 != 0, "{s:?}");
        assert!(s.2 <= 1, "never raised twice: {s:?}");
    }
    // off*, on+, off+: exactly one traced stretch.
    let flips: Vec<usize> = st
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0].1 != w[1].1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(flips.len(), 2, "{st:?}");
    assert!(!st[0].1 && st[flips[0] + 1].1 && !st[89].1, "{st:?}");
    // Every tick hit but the first (the attach may fall between print and call) comes
    // from an iteration that printed "enabled".
    for r in &o.site(1)[1..] {
        assert!(st[val(r, 0) as usize].1, "tick {}", val(r, 0));
    }
}

/// Spawned through a shell that execs the fixture: the semaphore is set from the first
/// instruction (after exec), raised once although two sites name it; a followed fork
/// child inherits the raised counter (still 1), an unfollowed one is lowered back.
#[test]
fn semaphore_after_exec_and_in_fork_children() {
    for (follow, opt) in [(true, "-O2"), (false, "-O2"), (true, "-O0"), (false, "-O0")] {
        let dir = TempDir::new();
        let exe = usdt_opt(&dir, opt);
        let out = dir.path("out.txt");
        let cmd = format!("exec '{}' '{}' 4 0 fork", exe.display(), out.display());
        let o = run_with(
            spawn(&["/bin/sh", "-c", &cmd]),
            Options {
                follow_forks: follow,
            },
            vec![
                semaphore_site(0, &exe),
                entry_site(1, &exe, "tick", vec![reg(5)]),
                semaphore_site(2, &exe),
            ],
            None,
        );
        assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
        assert!(o.summary.failed_sites.is_empty(), "{:?}", o.summary);
        let text = read(&out);
        let st = states(&text);
        assert_eq!(st.len(), 4, "{text}");
        assert!(st.iter().all(|s| s.1 && s.2 == 1), "{text}");
        let child_val = if follow { 1 } else { 0 };
        assert!(text.contains(&format!("child {child_val}\n")), "{text}");
        assert!(text.contains("parent 1 0\n"), "{text}");
        assert_eq!(o.site(1).len(), 4);
    }
}

/// The program itself clears the counter: the detach must not take it below zero.
#[test]
fn semaphore_never_goes_below_zero() {
    let dir = TempDir::new();
    let exe = usdt(&dir);
    let out = dir.path("out.txt");
    let o = run_until(
        spawn(&[
            exe.to_str().unwrap(),
            out.to_str().unwrap(),
            "12",
            "20000",
            "zero",
        ]),
        Options::default(),
        vec![
            semaphore_site(0, &exe),
            entry_site(1, &exe, "tick", vec![reg(5)]),
        ],
        |recs: &[Record]| recs.last().is_some_and(|r| val(r, 0) == 5),
        false,
    );
    assert_eq!(wait_child(o.pid), 0);
    let st = states(&read(&out));
    assert_eq!(st.len(), 12);
    assert_eq!(&st[..3], &[(0, true, 1), (1, true, 1), (2, true, 1)]);
    for s in &st[3..] {
        assert_eq!((s.1, s.2), (false, 0), "{st:?}");
    }
}

/// `(path, expected bias)` of every executable file mapping in a maps text.
fn expected_modules(maps: &str) -> BTreeMap<PathBuf, u64> {
    let mut lowest: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut exec: BTreeSet<PathBuf> = BTreeSet::new();
    for l in maps.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 6 || !w[5].starts_with('/') {
            continue;
        }
        let path = PathBuf::from(w[5]);
        let start = u64::from_str_radix(w[0].split('-').next().unwrap(), 16).unwrap();
        if w[1].contains('x') {
            exec.insert(path.clone());
        }
        if u64::from_str_radix(w[2], 16).unwrap() == 0 {
            let e = lowest.entry(path).or_insert(start);
            *e = (*e).min(start);
        }
    }
    exec.into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            let f = object::File::parse(&*data).unwrap();
            let bias = if f.kind() == ObjectKind::Executable {
                0
            } else {
                let first = f.segments().map(|s| s.address()).min().unwrap_or(0);
                lowest[&p] - (first & !0xfff)
            };
            (p, bias)
        })
        .collect()
}

fn modules_run(pie: &str) {
    let dir = TempDir::new();
    let d = dir.0.to_str().unwrap().to_string();
    let _libfix = gcc(&dir, "libfix.so", LIBFIX, &["-O2", "-shared", "-fPIC"]);
    let libdyn = gcc(&dir, "libdyn.so", LIBDYN, &["-O2", "-shared", "-fPIC"]);
    let exe = gcc(
        &dir,
        "mods",
        MODS,
        &[
            "-O2",
            pie,
            &format!("-L{d}"),
            "-lfix",
            &format!("-Wl,-rpath,{d}"),
            "-ldl",
        ],
    );
    let out = dir.path("out.txt");
    // No site at all: the announcements need none.
    let o = run_with(
        spawn(&[
            exe.to_str().unwrap(),
            out.to_str().unwrap(),
            libdyn.to_str().unwrap(),
        ]),
        Options::default(),
        vec![],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    let text = read(&out);
    assert!(text.contains("result 6 12"), "{text}");
    let want = expected_modules(&text);
    let mut got: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for e in &o.others {
        if let Event::ModuleMapped { pid, path, bias } = e {
            assert_eq!(*pid, o.pid);
            assert!(seen.insert((path.clone(), *bias)), "announced twice: {e:?}");
            got.insert(path.clone(), *bias);
        }
    }
    assert_eq!(got, want, "{text}");
    let names: Vec<String> = got.keys().map(|p| p.display().to_string()).collect();
    assert!(got.contains_key(&exe), "{names:?}");
    assert!(got.contains_key(&libdyn), "{names:?}");
    assert!(got.contains_key(&dir.path("libfix.so")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("libc.so")), "{names:?}");
    if pie == "-no-pie" {
        assert_eq!(got[&exe], 0);
    } else {
        assert_ne!(got[&exe], 0);
    }
}

#[test]
fn modules_are_announced_with_their_bias_pie() {
    modules_run("-pie");
}

#[test]
fn modules_are_announced_with_their_bias_non_pie() {
    modules_run("-no-pie");
}

/// A followed fork child gets its own announcements (same mappings, its pid); after an
/// exec the new image is announced again.
#[test]
fn modules_announced_for_fork_children_and_after_exec() {
    let dir = TempDir::new();
    let exe = usdt(&dir);
    let out = dir.path("out.txt");
    let cmd = format!("exec '{}' '{}' 1 0 fork", exe.display(), out.display());
    let o = run_with(
        spawn(&["/bin/sh", "-c", &cmd]),
        Options { follow_forks: true },
        vec![],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    let mut by_pid: BTreeMap<u32, BTreeMap<PathBuf, u64>> = BTreeMap::new();
    for e in &o.others {
        if let Event::ModuleMapped { pid, path, bias } = e {
            by_pid.entry(*pid).or_default().insert(path.clone(), *bias);
        }
    }
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let main = &by_pid[&o.pid];
    assert!(main.contains_key(&sh), "{main:?}");
    assert!(main.contains_key(&exe), "{main:?}");
    let child = by_pid
        .iter()
        .find(|(p, _)| **p != o.pid)
        .map(|(_, m)| m)
        .expect("child announcements");
    assert_eq!(child.get(&exe), main.get(&exe));
    assert!(!child.contains_key(&sh));
}

const LIBSEM: &str = r#"
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
__extension__ unsigned short snaptap_lib_semaphore __attribute__((unused))
    __attribute__((section(".probes")));
int lib_value(int x) {
    if (__builtin_expect(snaptap_lib_semaphore, 0)) DTRACE_PROBE1(snaptap, lib, x);
    return snaptap_lib_semaphore;
}
"#;

const LOADER: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    for (int i = 0; i < 2; i++) {
        void *h = dlopen(argv[2], RTLD_NOW);
        if (!h) { fprintf(out, "dlopen failed\n"); return 1; }
        int (*f)(int) = (int (*)(int))dlsym(h, "lib_value");
        fprintf(out, "%d\n", f(i));
        dlclose(h);
    }
    fclose(out);
    return 0;
}
"#;

/// A semaphore in a library loaded later: raised once the dynamic linker reports the
/// load, forgotten with the unload, raised again in the reloaded copy.
#[test]
fn semaphore_in_a_library_loaded_twice() {
    let dir = TempDir::new();
    let lib = gcc(&dir, "libsem.so", LIBSEM, &["-O2", "-shared", "-fPIC"]);
    let exe = gcc(&dir, "loader", LOADER, &["-O2", "-ldl"]);
    let out = dir.path("out.txt");
    let addr = note_semaphore(&lib, "snaptap", "lib");
    let o = run_with(
        spawn(&[
            exe.to_str().unwrap(),
            out.to_str().unwrap(),
            lib.to_str().unwrap(),
        ]),
        Options::default(),
        vec![site(0, &lib, addr, SiteKind::Semaphore, plan(vec![]))],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(read(&out), "1\n1\n");
    assert!(o.summary.failed_sites.is_empty(), "{:?}", o.summary);
    // Untraced, the same program sees it off.
    let st = std::process::Command::new(&exe)
        .arg(&out)
        .arg(&lib)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(read(&out), "0\n0\n");
}
