//! Live tests of the harder paths: threads, stop requests, attach, fork and exec
//! following, shared libraries (linked and dlopen'ed), and a per-hit cost measurement.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use backend::TargetEnd;
use backend_ptrace::{Launch, Options};
use capture_plan::SiteKind;
use common::*;

const LOOP: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noipa)) long add(long a, long b, long c) { return a + b + c; }
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    setvbuf(out, NULL, _IOLBF, 0);
    int n = atoi(argv[2]);
    int us = atoi(argv[3]);
    long sum = 0;
    for (int i = 0; i < n; i++) {
        sum += add(i, 1, 2);
        if (us) { fprintf(out, "%d\n", i); usleep(us); }
    }
    fprintf(out, "done %ld\n", sum);
    return 0;
}
"#;

const THREADS: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#define NT 4
static int N;
__attribute__((noipa)) long work(long k, long i) { return k * 1000000 + i; }
static long counts[NT];
static void *run(void *arg) {
    long k = (long)arg;
    for (long i = 0; i < N; i++)
        if (work(k, i) == k * 1000000 + i) counts[k]++;
    return 0;
}
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    N = atoi(argv[2]);
    pthread_t t[NT];
    for (long k = 0; k < NT; k++) pthread_create(&t[k], 0, run, (void *)k);
    for (int k = 0; k < NT; k++) pthread_join(t[k], 0);
    long total = 0;
    for (int k = 0; k < NT; k++) { fprintf(out, "thread %d %ld\n", k, counts[k]); total += counts[k]; }
    fprintf(out, "total %ld\n", total);
    fclose(out);
    return 0;
}
"#;

const FORK: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
__attribute__((noipa)) long add(long a, long b) { return a + b; }
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    setvbuf(out, NULL, _IONBF, 0);
    pid_t c = fork();
    if (c == 0) {
        long s = 0;
        for (int i = 0; i < 5; i++) s += add(1000 + i, 0);
        fprintf(out, "child %d sum %ld\n", getpid(), s);
        _exit(0);
    }
    long s = 0;
    for (int i = 0; i < 3; i++) s += add(i, 0);
    int st;
    waitpid(c, &st, 0);
    fprintf(out, "parent child=%d status=%d sum %ld\n", c, st, s);
    return 0;
}
"#;

const FORKRET: &str = r#"
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
__attribute__((noipa)) long split(long x) {
    pid_t c = fork();
    return c == 0 ? x + 1 : x + 2;
}
int main(int argc, char **argv) {
    long r = split(40);
    if (r == 41) _exit(0);
    int st;
    wait(&st);
    FILE *out = fopen(argv[1], "w");
    fprintf(out, "ok %ld\n", r);
    fclose(out);
    return 0;
}
"#;

const LIBCYCLE: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    for (int i = 0; i < 3; i++) {
        void *h = dlopen(argv[2], RTLD_NOW);
        if (!h) { fprintf(out, "dlopen failed %s\n", dlerror()); return 1; }
        int (*f)(int) = (int (*)(int))dlsym(h, "dl_fn");
        fprintf(out, "%d\n", f(i));
        dlclose(h);
    }
    fclose(out);
    return 0;
}
"#;

const LIBFIX: &str = "__attribute__((noipa)) int lib_fn(int x) { return x * 2; }\n";
const LIBDYN: &str = "__attribute__((noipa)) int dl_fn(int x) { return x + 7; }\n";
const LIBMAIN: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
int lib_fn(int);
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    int a = lib_fn(3), b = lib_fn(4);
    fprintf(out, "lib %d %d\n", a, b);
    void *h = dlopen(argv[2], RTLD_NOW);
    if (!h) { fprintf(out, "dlopen failed %s\n", dlerror()); return 1; }
    int (*f)(int) = (int (*)(int))dlsym(h, "dl_fn");
    int c = f(5), d = f(6);
    fprintf(out, "dl %d %d\n", c, d);
    dlclose(h);
    fclose(out);
    return 0;
}
"#;

#[test]
fn threads_lose_no_hit_and_keep_values_per_thread() {
    threads_run(false);
}

#[test]
fn threads_lose_no_hit_with_single_stepping() {
    threads_run(true);
}

fn threads_run(single_step: bool) {
    let dir = TempDir::new();
    let exe = gcc(&dir, "threads", THREADS, &["-O2", "-pthread"]);
    let out = dir.path("out.txt");
    let n = 1500u64;
    let work = sym(&exe, "work");
    let o = run_cfg(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), &n.to_string()]),
        Options::default(),
        vec![
            entry_site(0, &exe, "work", vec![reg(5), reg(4)]),
            site(
                1,
                &exe,
                work,
                SiteKind::Return {
                    return_plan: plan(vec![reg(0)]),
                },
                plan(vec![reg(5), reg(4)]),
            ),
        ],
        None,
        single_step,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    let text = read(&out);
    assert!(text.contains(&format!("total {}", 4 * n)), "{text}");
    let entries = o.site(0);
    assert_eq!(entries.len() as u64, 4 * n);
    let mut per_k: BTreeMap<u64, (BTreeSet<u64>, BTreeSet<u32>)> = BTreeMap::new();
    for r in &entries {
        let e = per_k.entry(val(r, 0)).or_default();
        e.0.insert(val(r, 1));
        e.1.insert(r.tid);
        assert_eq!(r.pid, o.pid);
    }
    assert_eq!(per_k.len(), 4);
    let mut tids = BTreeSet::new();
    for (k, (is, ts)) in &per_k {
        assert_eq!(is.len() as u64, n, "thread {k}");
        assert_eq!(ts.len(), 1, "thread {k} seen on several tids");
        tids.extend(ts.iter().copied());
    }
    assert_eq!(tids.len(), 4);
    assert!(!tids.contains(&o.pid));
    let rets = o.site(1);
    assert_eq!(rets.len() as u64, 4 * n);
    for r in rets {
        assert_eq!(val(r, 2), val(r, 0) * 1_000_000 + val(r, 1));
    }
}

#[test]
fn stop_mid_run_leaves_the_target_running_unharmed() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "loop", LOOP, &["-O0"]);
    let out = dir.path("out.txt");
    let mut ret = site(
        1,
        &exe,
        sym(&exe, "add"),
        SiteKind::Return {
            return_plan: plan(vec![reg(0)]),
        },
        plan(vec![]),
    );
    ret.needs.cpu = true;
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "150", "2000"]),
        Options::default(),
        vec![entry_site(0, &exe, "add", vec![reg(5)]), ret],
        Some(6),
    );
    assert!(o.ended().is_none(), "the target must still run");
    let n = o.records.len();
    assert!((6..150).contains(&n), "{n} records");
    assert_eq!(wait_child(o.pid), 0, "exit status after detach");
    let text = read(&out);
    let expected: String = (0..150)
        .map(|i| format!("{i}\n"))
        .chain(std::iter::once(format!(
            "done {}\n",
            (0..150).sum::<i64>() + 450
        )))
        .collect();
    assert_eq!(text, expected);
}

#[test]
fn attach_and_detach() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "loop", LOOP, &["-O2"]);
    let out = dir.path("out.txt");
    let mut child = std::process::Command::new(&exe)
        .arg(&out)
        .arg("200")
        .arg("3000")
        .spawn()
        .expect("start fixture");
    std::thread::sleep(Duration::from_millis(100));
    let mut s = entry_site(0, &exe, "add", vec![reg(5), reg(4), reg(1)]);
    s.needs.comm = true;
    let begin = site(1, &exe, 0, SiteKind::ProcessBegin, plan(vec![]));
    let o = run_with(
        Launch::Attach { pid: child.id() },
        Options::default(),
        vec![s, begin],
        Some(6),
    );
    assert_eq!(o.pid, child.id());
    assert_eq!(o.site(1).len(), 1, "begin fires for an attached process");
    let adds = o.site(0);
    assert!(adds.len() >= 5);
    for w in adds.windows(2) {
        assert_eq!(val(w[1], 0), val(w[0], 0) + 1);
    }
    for r in &adds {
        assert_eq!((val(r, 1), val(r, 2)), (1, 2));
        assert_eq!(r.comm, "loop");
    }
    let st = child.wait().expect("wait fixture");
    assert!(st.success(), "{st:?}");
    assert!(read(&out).ends_with(&format!("done {}\n", (0..200).sum::<i64>() + 600)));
}

fn fork_run(follow: bool) {
    let dir = TempDir::new();
    let exe = gcc(&dir, "fork", FORK, &["-O2"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
        Options {
            follow_forks: follow,
        },
        vec![
            entry_site(0, &exe, "add", vec![reg(5)]),
            site(1, &exe, 0, SiteKind::ProcessBegin, plan(vec![])),
            site(2, &exe, 0, SiteKind::ProcessEnd, plan(vec![])),
        ],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    let text = read(&out);
    let child: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("child ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("child line missing: {text}"));
    assert!(text.contains("sum 5010"), "{text}");
    assert!(
        text.contains(&format!("child={child} status=0 sum 3")),
        "{text}"
    );
    let mine: Vec<u64> = o
        .site(0)
        .iter()
        .filter(|r| r.pid == o.pid)
        .map(|r| val(r, 0))
        .collect();
    assert_eq!(mine, vec![0, 1, 2]);
    let theirs: Vec<u64> = o
        .site(0)
        .iter()
        .filter(|r| r.pid == child)
        .map(|r| val(r, 0))
        .collect();
    let begins: BTreeSet<u32> = o.site(1).iter().map(|r| r.pid).collect();
    let ends: BTreeSet<u32> = o.site(2).iter().map(|r| r.pid).collect();
    if follow {
        assert_eq!(theirs, vec![1000, 1001, 1002, 1003, 1004]);
        assert_eq!(begins, BTreeSet::from([o.pid, child]));
        assert_eq!(ends, BTreeSet::from([o.pid, child]));
    } else {
        assert!(theirs.is_empty());
        assert_eq!(begins, BTreeSet::from([o.pid]));
        assert_eq!(ends, BTreeSet::from([o.pid]));
    }
}

#[test]
fn fork_followed() {
    fork_run(true);
}

#[test]
fn fork_not_followed_child_is_unharmed() {
    fork_run(false);
}

#[test]
fn exec_re_resolves_sites() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "loop", LOOP, &["-O0"]);
    let out = dir.path("out.txt");
    let cmd = format!("exec '{}' '{}' 4 0", exe.display(), out.display());
    let o = run_with(
        spawn(&["/bin/sh", "-c", &cmd]),
        Options::default(),
        vec![
            entry_site(0, &exe, "add", vec![reg(5)]),
            site(1, &exe, 0, SiteKind::ProcessBegin, plan(vec![])),
        ],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(
        o.site(0).iter().map(|r| val(r, 0)).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(o.site(1).len(), 1);
    assert_eq!(o.site(1)[0].pid, o.pid);
    assert_eq!(read(&out), "done 18\n");
}

#[test]
fn shared_libraries_linked_and_dlopened() {
    let dir = TempDir::new();
    let libfix = gcc(&dir, "libfix.so", LIBFIX, &["-O2", "-shared", "-fPIC"]);
    let libdyn = gcc(&dir, "libdyn.so", LIBDYN, &["-O2", "-shared", "-fPIC"]);
    let d = dir.0.to_str().unwrap().to_string();
    let exe = gcc(
        &dir,
        "libmain",
        LIBMAIN,
        &[
            "-O2",
            &format!("-L{d}"),
            "-lfix",
            &format!("-Wl,-rpath,{d}"),
            "-ldl",
        ],
    );
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[
            exe.to_str().unwrap(),
            out.to_str().unwrap(),
            libdyn.to_str().unwrap(),
        ]),
        Options::default(),
        vec![
            entry_site(0, &libfix, "lib_fn", vec![reg(5)]),
            site(
                1,
                &libdyn,
                sym(&libdyn, "dl_fn"),
                SiteKind::Return {
                    return_plan: plan(vec![reg(0)]),
                },
                plan(vec![reg(5)]),
            ),
        ],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(read(&out), "lib 6 8\ndl 12 13\n");
    let lib: BTreeSet<u64> = o.site(0).iter().map(|r| val(r, 0) & 0xffff_ffff).collect();
    assert_eq!(lib, BTreeSet::from([3, 4]));
    let dl: Vec<(u64, u64)> = o
        .site(1)
        .iter()
        .map(|r| (val(r, 0) & 0xffff_ffff, val(r, 1) & 0xffff_ffff))
        .collect();
    assert_eq!(dl, vec![(5, 12), (6, 13)]);
    assert!(
        o.summary.failed_sites.is_empty(),
        "{:?}",
        o.summary.failed_sites
    );
}

#[test]
fn never_loaded_module_is_reported() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "loop", LOOP, &["-O0"]);
    let libdyn = gcc(&dir, "libdyn.so", LIBDYN, &["-O2", "-shared", "-fPIC"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "2", "0"]),
        Options::default(),
        vec![entry_site(0, &libdyn, "dl_fn", vec![reg(5)])],
        None,
    );
    assert_eq!(o.summary.failed_sites.len(), 1);
    assert!(o.summary.failed_sites[0].contains("never loaded"));
}

/// Prints the cost of one hit (3 register fields) in a single-threaded target.
#[test]
fn bench_ns_per_hit() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "loop", LOOP, &["-O2"]);
    let out = dir.path("out.txt");
    let n = 20_000u64;
    let t0 = Instant::now();
    let st = std::process::Command::new(&exe)
        .arg(&out)
        .arg(n.to_string())
        .arg("0")
        .status()
        .unwrap();
    assert!(st.success());
    let plain = t0.elapsed();
    let t1 = Instant::now();
    let o = run_with(
        spawn(&[
            exe.to_str().unwrap(),
            out.to_str().unwrap(),
            &n.to_string(),
            "0",
        ]),
        Options::default(),
        vec![entry_site(0, &exe, "add", vec![reg(5), reg(4), reg(1)])],
        None,
    );
    let traced = t1.elapsed();
    assert_eq!(o.site(0).len() as u64, n);
    let per_hit = traced.saturating_sub(plain).as_nanos() as u64 / n;
    eprintln!(
        "ptrace backend: {per_hit} ns per hit ({n} hits, traced {traced:?}, untraced {plain:?})"
    );
    assert!(per_hit < 300_000, "{per_hit} ns per hit");
    let n2 = n / 4;
    let t2 = Instant::now();
    let o = run_cfg(
        spawn(&[
            exe.to_str().unwrap(),
            out.to_str().unwrap(),
            &n2.to_string(),
            "0",
        ]),
        Options::default(),
        vec![entry_site(0, &exe, "add", vec![reg(5), reg(4), reg(1)])],
        None,
        true,
    );
    let stepped = t2.elapsed().as_nanos() as u64 / n2;
    assert_eq!(o.site(0).len() as u64, n2);
    eprintln!("ptrace backend, single-step path: {stepped} ns per hit");
}

#[test]
fn fork_child_inherits_pending_returns() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "forkret", FORKRET, &["-O0"]);
    let out = dir.path("out.txt");
    for follow in [true, false] {
        let o = run_with(
            spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
            Options {
                follow_forks: follow,
            },
            vec![site(
                0,
                &exe,
                sym(&exe, "split"),
                SiteKind::Return {
                    return_plan: plan(vec![reg(0)]),
                },
                plan(vec![reg(5)]),
            )],
            None,
        );
        assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
        assert_eq!(read(&out), "ok 42\n");
        let mut got: Vec<(bool, u64, u64)> = o
            .site(0)
            .iter()
            .map(|r| (r.pid == o.pid, val(r, 0), val(r, 1)))
            .collect();
        got.sort();
        if follow {
            assert_eq!(got, vec![(false, 40, 41), (true, 40, 42)]);
        } else {
            assert_eq!(got, vec![(true, 40, 42)]);
        }
    }
}

#[test]
fn library_loaded_unloaded_and_loaded_again() {
    let dir = TempDir::new();
    let libdyn = gcc(&dir, "libdyn.so", LIBDYN, &["-O2", "-shared", "-fPIC"]);
    let exe = gcc(&dir, "libcycle", LIBCYCLE, &["-O2", "-ldl"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[
            exe.to_str().unwrap(),
            out.to_str().unwrap(),
            libdyn.to_str().unwrap(),
        ]),
        Options::default(),
        vec![
            entry_site(0, &libdyn, "dl_fn", vec![reg(5)]),
            site(
                1,
                &libdyn,
                sym(&libdyn, "dl_fn"),
                SiteKind::Return {
                    return_plan: plan(vec![reg(0)]),
                },
                plan(vec![reg(5)]),
            ),
        ],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(read(&out), "7\n8\n9\n");
    let entries: Vec<u64> = o.site(0).iter().map(|r| val(r, 0) & 0xffff_ffff).collect();
    assert_eq!(entries, vec![0, 1, 2]);
    let rets: Vec<(u64, u64)> = o
        .site(1)
        .iter()
        .map(|r| (val(r, 0) & 0xffff_ffff, val(r, 1) & 0xffff_ffff))
        .collect();
    assert_eq!(rets, vec![(0, 7), (1, 8), (2, 9)]);
}
