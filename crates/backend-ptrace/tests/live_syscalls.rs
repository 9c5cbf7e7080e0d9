//! Live tests of system call sites: entry arguments and return values checked against
//! what the fixtures print, threads, function probes at the same time, exec and forks,
//! and a stop request while the target is blocked in a system call.

mod common;

use std::collections::BTreeMap;

use backend::TargetEnd;
use backend_ptrace::Options;
use capture_plan::{DwarfReg, FieldPlan, FieldStatus, Op, ProbeSite, Record, SiteKind};
use common::*;

const SYS_READ: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_GETPID: u64 = 39;
const SYS_EXECVE: u64 = 59;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_OPENAT: u64 = 257;

const CALLS: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static const char buf[] = "hello";
int main(int argc, char **argv) {
    int o = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    close(o);
    long w = write(1, buf, 5);
    pid_t p = getpid();
    int fd = open("/nonexistent/snaptap-missing", O_RDONLY);
    int e = errno;
    FILE *out = fopen(argv[1], "w");
    fprintf(out, "buf %lu\nwrite %ld\ngetpid %d\nopen %d %d\n", (unsigned long)buf, w, p, fd, e);
    fclose(out);
    return 0;
}
"#;

const THREADED: &str = r#"
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#define NT 4
static int N, devnull;
static const char buf[] = "0123456789";
static long wrote[NT], hits[NT];
__attribute__((noipa)) long work(long k, long i) { return k * 1000 + i; }
static void *run(void *arg) {
    long k = (long)arg;
    for (long i = 0; i < N; i++) {
        if (work(k, i) == k * 1000 + i) hits[k]++;
        wrote[k] += syscall(SYS_write, devnull, buf, k + 1);
    }
    return 0;
}
int main(int argc, char **argv) {
    N = atoi(argv[2]);
    devnull = open("/dev/null", O_WRONLY);
    pthread_t t[NT];
    for (long k = 0; k < NT; k++) pthread_create(&t[k], 0, run, (void *)k);
    for (int k = 0; k < NT; k++) pthread_join(t[k], 0);
    FILE *out = fopen(argv[1], "w");
    fprintf(out, "devnull %d\n", devnull);
    for (int k = 0; k < NT; k++) fprintf(out, "thread %d wrote %ld hits %ld\n", k, wrote[k], hits[k]);
    fclose(out);
    return 0;
}
"#;

const BLOCKING: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    setvbuf(out, NULL, _IONBF, 0);
    int fds[2];
    if (pipe(fds)) return 2;
    pid_t c = fork();
    if (c == 0) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, 0);
        write(fds[1], "x", 1);
        _exit(0);
    }
    char b[4] = {0};
    long n = read(fds[0], b, sizeof b - 1);
    fprintf(out, "read %ld %s\n", n, b);
    struct timespec ts = {1, 0}, rem = {0, 0};
    int r = nanosleep(&ts, &rem);
    fprintf(out, "sleep %d\n", r);
    int st;
    waitpid(c, &st, 0);
    fprintf(out, "child %d\n", st);
    return 0;
}
"#;

/// A field copying the system call number.
fn nr() -> FieldPlan {
    FieldPlan {
        ops: vec![Op::Reg(DwarfReg::SYSCALL_NR), Op::EmitValue(8)],
        label: "nr".into(),
    }
}

/// Entry site: number, the six arguments, and the string the second one points to.
fn sys_entry(id: u32, exe: &std::path::Path) -> ProbeSite {
    let args = [5, 4, 1, 10, 8, 9].map(reg);
    let mut fields = vec![nr()];
    fields.extend(args);
    fields.push(string_at_reg(4, 64));
    site(id, exe, 0, SiteKind::SyscallEntry, plan(fields))
}

/// Return site: number and return value.
fn sys_return(id: u32, exe: &std::path::Path) -> ProbeSite {
    site(
        id,
        exe,
        0,
        SiteKind::SyscallReturn,
        plan(vec![nr(), reg(0)]),
    )
}

/// The value printed after `key ` on its own line.
fn printed(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no '{key}' line in {text}"))
        .split(' ')
        .map(str::to_string)
        .collect()
}

/// Checks that, per thread, entries (site `e`) and returns (site `r`) alternate with
/// the same call number: an optional leading return (the exec of the image), then
/// entry/return pairs, then optionally a final entry that never returns (exit).
fn check_pairing(recs: &[Record], e: u32, r: u32) -> BTreeMap<u32, Vec<(u64, bool)>> {
    let mut per: BTreeMap<u32, Vec<(u64, bool)>> = BTreeMap::new();
    for x in recs.iter().filter(|x| x.site.0 == e || x.site.0 == r) {
        per.entry(x.tid)
            .or_default()
            .push((val(x, 0), x.site.0 == e));
    }
    for (tid, seq) in &per {
        let mut i = 0;
        if seq.first().is_some_and(|s| !s.1) {
            assert_eq!(seq[0].0, SYS_EXECVE, "thread {tid}: first record {seq:?}");
            i = 1;
        }
        while i < seq.len() {
            assert!(
                seq[i].1,
                "thread {tid}: return without entry at {i}: {seq:?}"
            );
            if i + 1 == seq.len() {
                assert!(
                    [SYS_EXIT_GROUP, 60].contains(&seq[i].0),
                    "thread {tid}: unanswered entry {:?}",
                    seq[i]
                );
                break;
            }
            assert!(!seq[i + 1].1, "thread {tid}: two entries at {i}: {seq:?}");
            assert_eq!(seq[i].0, seq[i + 1].0, "thread {tid}: pair {i}");
            i += 2;
        }
    }
    per
}

#[test]
fn syscall_arguments_and_returns_match_fixture() {
    for opt in ["-O0", "-O2"] {
        let dir = TempDir::new();
        let exe = gcc(&dir, &format!("calls{opt}"), CALLS, &[opt]);
        let out = dir.path("out.txt");
        let stdout = dir.path("stdout.txt");
        let mut ent = sys_entry(0, &exe);
        ent.needs.comm = true;
        let o = run_with(
            spawn(&[
                exe.to_str().unwrap(),
                out.to_str().unwrap(),
                stdout.to_str().unwrap(),
            ]),
            Options::default(),
            vec![ent, sys_return(1, &exe)],
            None,
        );
        assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
        assert_eq!(read(&stdout), "hello");
        let text = read(&out);
        let buf: u64 = printed(&text, "buf")[0].parse().unwrap();
        assert_eq!(printed(&text, "write"), ["5"]);
        assert_eq!(printed(&text, "getpid"), [o.pid.to_string()]);
        assert_eq!(printed(&text, "open"), ["-1", "2"]);
        check_pairing(&o.records, 0, 1);
        // The first record is the return of the execve that started the image.
        let first = &o.records[0];
        assert_eq!((first.site.0, val(first, 0), val(first, 1)), (1, 59, 0));
        let entries = o.site(0);
        let rets = o.site(1);
        for r in o.records.iter() {
            assert_eq!((r.pid, r.tid), (o.pid, o.pid));
        }
        // write(1, buf, 5) = 5.
        let w: Vec<&&Record> = entries
            .iter()
            .filter(|r| val(r, 0) == SYS_WRITE && val(r, 1) == 1 && val(r, 3) == 5)
            .collect();
        assert_eq!(w.len(), 1, "{opt}");
        assert_eq!(val(w[0], 2), buf);
        assert_eq!(w[0].field(7).unwrap(), b"hello");
        assert!(w[0].comm.starts_with("calls"), "{}", w[0].comm);
        let ret_of = |n: u64| -> Vec<i64> {
            rets.iter()
                .filter(|r| val(r, 0) == n)
                .map(|r| val(r, 1) as i64)
                .collect()
        };
        assert!(ret_of(SYS_WRITE).contains(&5));
        assert_eq!(ret_of(SYS_GETPID), vec![i64::from(o.pid)]);
        // open("/nonexistent/...") is openat(AT_FDCWD, path, O_RDONLY) = -ENOENT.
        let opens: Vec<(i64, Vec<u8>)> = entries
            .iter()
            .filter(|r| val(r, 0) == SYS_OPENAT)
            // The dirfd is an int: only the low 32 bits of rdi are meaningful.
            .map(|r| {
                (
                    i64::from(val(r, 1) as u32 as i32),
                    r.field(7).unwrap().to_vec(),
                )
            })
            .collect();
        let missing = opens
            .iter()
            .position(|(_, p)| p == b"/nonexistent/snaptap-missing")
            .expect("openat of the missing file");
        assert_eq!(opens[missing].0, i64::from(libc::AT_FDCWD));
        let open_rets = ret_of(SYS_OPENAT);
        assert_eq!(open_rets.len(), opens.len());
        assert_eq!(open_rets[missing], -i64::from(libc::ENOENT));
        assert_eq!(
            entries.last().map(|r| val(r, 0)),
            Some(SYS_EXIT_GROUP),
            "{opt}"
        );
        assert_eq!(o.summary.hits as usize, o.records.len());
    }
}

#[test]
fn syscall_number_is_no_register_at_a_breakpoint() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "threaded", THREADED, &["-O2", "-pthread"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "2"]),
        Options::default(),
        vec![entry_site(0, &exe, "work", vec![nr(), reg(5)])],
        None,
    );
    assert_eq!(o.site(0).len(), 8);
    for r in o.site(0) {
        assert_eq!(
            r.field(0),
            Err(FieldStatus::NoRegister(DwarfReg::SYSCALL_NR.0))
        );
    }
}

fn threaded_run(with_function: bool, single_step: bool) {
    let dir = TempDir::new();
    let exe = gcc(&dir, "threaded", THREADED, &["-O2", "-pthread"]);
    let out = dir.path("out.txt");
    let n = 60u64;
    let mut sites = vec![sys_entry(0, &exe), sys_return(1, &exe)];
    if with_function {
        sites.push(entry_site(2, &exe, "work", vec![reg(5), reg(4)]));
    }
    let o = run_cfg(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), &n.to_string()]),
        Options::default(),
        sites,
        None,
        single_step,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    let text = read(&out);
    let devnull: u64 = printed(&text, "devnull")[0].parse().unwrap();
    for k in 0..4u64 {
        assert!(
            text.contains(&format!("thread {k} wrote {} hits {n}", n * (k + 1))),
            "{text}"
        );
    }
    let per = check_pairing(&o.records, 0, 1);
    // The writes to /dev/null: per thread, all of one length, with their returns.
    let mut by_len: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    for r in o.site(0) {
        if val(r, 0) == SYS_WRITE && val(r, 1) == devnull {
            let e = by_len.entry(val(r, 3)).or_insert((r.tid, 0));
            assert_eq!(e.0, r.tid, "one thread per length");
            e.1 += 1;
        }
    }
    assert_eq!(by_len.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    for (len, (tid, count)) in &by_len {
        assert_eq!(*count, n, "writes of length {len}");
        assert!(per.contains_key(tid));
        let vals: Vec<i64> = o
            .site(1)
            .iter()
            .filter(|r| r.tid == *tid && val(r, 0) == SYS_WRITE)
            .map(|r| val(r, 1) as i64)
            .collect();
        assert_eq!(vals, vec![*len as i64; n as usize]);
    }
    if with_function {
        let mut work: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for r in o.site(2) {
            work.entry(val(r, 0)).or_default().push(val(r, 1));
        }
        for k in 0..4u64 {
            assert_eq!(work[&k], (0..n).collect::<Vec<_>>(), "thread {k}");
        }
        // The function hit and its write are in program order in each thread.
        for (len, (tid, _)) in &by_len {
            let kinds: Vec<u32> = o
                .records
                .iter()
                .filter(|r| {
                    r.tid == *tid && (r.site.0 == 2 || (r.site.0 == 0 && val(r, 0) == SYS_WRITE))
                })
                .map(|r| r.site.0)
                .collect();
            let want: Vec<u32> = (0..n).flat_map(|_| [2, 0]).collect();
            assert_eq!(kinds, want, "thread of length {len}");
        }
    }
}

#[test]
fn syscalls_in_threads() {
    threaded_run(false, false);
}

#[test]
fn syscalls_and_function_probes_together() {
    threaded_run(true, false);
}

#[test]
fn syscalls_and_function_probes_single_stepped() {
    threaded_run(true, true);
}

/// Only processes running the module stop at system calls: the shell that forks and
/// execs the fixture gives no record, the fixture's records start with its execve's
/// return (the exec event comes first), and its syscalls are all seen.
#[test]
fn syscalls_follow_exec_and_skip_other_programs() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "calls", CALLS, &["-O2"]);
    let out = dir.path("out.txt");
    let stdout = dir.path("stdout.txt");
    let cmd = format!(
        "'{}' '{}' '{}'; echo $? > '{}'",
        exe.display(),
        out.display(),
        stdout.display(),
        dir.path("status").display()
    );
    let o = run_with(
        spawn(&["/bin/sh", "-c", &cmd]),
        Options { follow_forks: true },
        vec![sys_entry(0, &exe), sys_return(1, &exe)],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(read(&dir.path("status")), "0\n");
    assert_eq!(read(&stdout), "hello");
    let text = read(&out);
    let child: u32 = printed(&text, "getpid")[0].parse().unwrap();
    assert_ne!(child, o.pid);
    assert!(!o.records.is_empty());
    assert!(o.records.iter().all(|r| r.pid == child), "only the fixture");
    let first = &o.records[0];
    assert_eq!(
        (first.site.0, val(first, 0), val(first, 1)),
        (1, SYS_EXECVE, 0)
    );
    check_pairing(&o.records, 0, 1);
    let pids: Vec<i64> = o
        .site(1)
        .iter()
        .filter(|r| val(r, 0) == SYS_GETPID)
        .map(|r| val(r, 1) as i64)
        .collect();
    assert_eq!(pids, vec![i64::from(child)]);
}

/// A stop requested while the target is blocked in `read` (then in `nanosleep`): the
/// target, detached at or inside the system call, still gets the right results.
#[test]
fn stop_while_blocked_in_a_syscall() {
    for (what, nr_) in [("read", SYS_READ), ("nanosleep", 230u64)] {
        let dir = TempDir::new();
        let exe = gcc(&dir, "blocking", BLOCKING, &["-O2"]);
        let out = dir.path("out.txt");
        let o = run_until(
            spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
            Options::default(),
            vec![sys_entry(0, &exe), sys_return(1, &exe)],
            move |recs: &[Record]| {
                // The pipe read asks for 3 bytes (the dynamic linker's reads ask more).
                recs.last().is_some_and(|r| {
                    r.site.0 == 0 && val(r, 0) == nr_ && (nr_ != SYS_READ || val(r, 3) == 3)
                })
            },
            false,
        );
        assert!(o.ended().is_none(), "{what}: the target must still run");
        // The entry was the last thing seen: no return for it (the calls block for a
        // second, so the stop lands inside them even on a loaded machine).
        let last = o
            .records
            .iter()
            .rposition(|r| r.site.0 == 0 && val(r, 0) == nr_);
        let last = last.expect("entry seen");
        assert!(
            o.records[last + 1..]
                .iter()
                .all(|r| !(r.site.0 == 1 && val(r, 0) == nr_)),
            "{what}"
        );
        assert_eq!(wait_child(o.pid), 0, "{what}: exit status after detach");
        assert_eq!(read(&out), "read 1 x\nsleep 0\nchild 0\n", "{what}");
    }
}

/// A followed fork child runs the module too: its system calls are seen under its own
/// pid, and both processes get the right results.
#[test]
fn syscalls_in_a_followed_fork_child() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "blocking", BLOCKING, &["-O2"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
        Options { follow_forks: true },
        vec![sys_entry(0, &exe), sys_return(1, &exe)],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(read(&out), "read 1 x\nsleep 0\nchild 0\n");
    let child = o
        .records
        .iter()
        .map(|r| r.pid)
        .find(|&p| p != o.pid)
        .expect("child records");
    let seq: Vec<(u32, u64, u64)> = o
        .records
        .iter()
        .filter(|r| r.pid == child)
        .map(|r| (r.site.0, val(r, 0), val(r, 1)))
        .collect();
    // The child starts after its fork returned: no unanswered return comes first.
    assert_eq!(seq.first().map(|x| x.0), Some(0), "{seq:?}");
    check_pairing(&o.records, 0, 1);
    let writes: Vec<&(u32, u64, u64)> = seq.iter().filter(|x| x.1 == SYS_WRITE).collect();
    assert_eq!(writes.len(), 2, "{seq:?}");
    assert_eq!(writes[1].2, 1, "write returned 1");
    assert!(seq.iter().any(|x| x.0 == 0 && x.1 == 230));
    assert_eq!(seq.last().map(|x| (x.0, x.1)), Some((0, SYS_EXIT_GROUP)));
    let parent_read: Vec<u64> = o
        .site(1)
        .iter()
        .filter(|r| r.pid == o.pid && val(r, 0) == SYS_READ)
        .map(|r| val(r, 1))
        .collect();
    assert_eq!(parent_read.last(), Some(&1));
}

const MANY: &str = r#"
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    long s = 0;
    for (int i = 0; i < n; i++) s += syscall(SYS_getppid);
    return s == (long)n * getppid() ? 0 : 1;
}
"#;

/// Prints the cost of one traced system call (an entry and a return record, each with
/// the number and one register), against the same program untraced.
#[test]
fn bench_ns_per_syscall() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "many", MANY, &["-O2"]);
    let n = 10_000u64;
    let t0 = std::time::Instant::now();
    let st = std::process::Command::new(&exe)
        .arg(n.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let plain = t0.elapsed();
    let t1 = std::time::Instant::now();
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), &n.to_string()]),
        Options::default(),
        vec![
            site(0, &exe, 0, SiteKind::SyscallEntry, plan(vec![nr(), reg(5)])),
            site(
                1,
                &exe,
                0,
                SiteKind::SyscallReturn,
                plan(vec![nr(), reg(0)]),
            ),
        ],
        None,
    );
    let traced = t1.elapsed();
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    let getppid = o.site(1).iter().filter(|r| val(r, 0) == 110).count() as u64;
    assert_eq!(getppid, n + 1);
    let per = traced.saturating_sub(plain).as_nanos() as u64 / n;
    eprintln!(
        "ptrace backend: {per} ns per traced system call (entry + return; {n} calls, traced {traced:?}, untraced {plain:?})"
    );
    assert!(per < 600_000, "{per} ns per call");
}

const BLOCKED_THREAD: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static int fds[2];
static char got[4];
static long n_read;
__attribute__((noipa)) long work(long i) { return i * 2; }
static long slept = -1;
static void *reader(void *arg) {
    struct timespec ts = {0, 40 * 1000 * 1000};
    slept = nanosleep(&ts, 0);
    n_read = read(fds[0], got, 3);
    return arg;
}
int main(int argc, char **argv) {
    if (pipe(fds)) return 2;
    pthread_t t;
    pthread_create(&t, 0, reader, 0);
    long s = 0;
    for (long i = 0; i < 40; i++) { s += work(i); usleep(2000); }
    write(fds[1], "x", 1);
    pthread_join(t, 0);
    FILE *out = fopen(argv[1], "w");
    fprintf(out, "slept %ld read %ld %s sum %ld\n", slept, n_read, got, s);
    fclose(out);
    return 0;
}
"#;

/// Single-stepping a probed instruction holds the other threads with
/// `PTRACE_INTERRUPT`: a thread blocked in `read` meanwhile has its call interrupted
/// (`-ERESTARTSYS`) and restarted by the kernel each time. The records hide that: one
/// entry and one return (1 byte), and the reader gets its data. Same for a sleep,
/// which the kernel resumes with `restart_syscall`.
#[test]
fn thread_blocked_in_read_while_others_single_step() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "blocked", BLOCKED_THREAD, &["-O2", "-pthread"]);
    let out = dir.path("out.txt");
    let o = run_cfg(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
        Options::default(),
        vec![
            sys_entry(0, &exe),
            sys_return(1, &exe),
            entry_site(2, &exe, "work", vec![reg(5)]),
        ],
        None,
        true,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(
        read(&out),
        format!("slept 0 read 1 x sum {}\n", (0..40).sum::<i64>() * 2)
    );
    assert_eq!(o.site(2).len(), 40);
    let reader = o
        .site(0)
        .iter()
        .find(|r| val(r, 0) == SYS_READ && val(r, 3) == 3)
        .map(|r| r.tid)
        .expect("the reader's read");
    assert_ne!(reader, o.pid);
    let rets: Vec<i64> = o
        .site(1)
        .iter()
        .filter(|r| r.tid == reader && val(r, 0) == SYS_READ)
        .map(|r| val(r, 1) as i64)
        .collect();
    assert_eq!(rets, vec![1]);
    let entries = o
        .site(0)
        .iter()
        .filter(|r| r.tid == reader && val(r, 0) == SYS_READ)
        .count();
    assert_eq!(entries, 1);
    // The sleep is restarted as restart_syscall: still one clock_nanosleep, returning 0.
    let mine: Vec<(u32, u64, u64)> = o
        .records
        .iter()
        .filter(|r| r.tid == reader && r.site.0 != 2)
        .map(|r| (r.site.0, val(r, 0), val(r, 1)))
        .collect();
    let sleeps: Vec<&(u32, u64, u64)> = mine.iter().filter(|x| x.1 == 230).collect();
    assert_eq!(sleeps.len(), 2, "{mine:?}");
    assert_eq!(
        (sleeps[0].0, sleeps[1].0, sleeps[1].2),
        (0, 1, 0),
        "{mine:?}"
    );
    assert!(mine.iter().all(|x| x.1 != 219), "{mine:?}");
    check_pairing(&o.records, 0, 1);
}

const TICKER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    setvbuf(out, NULL, _IONBF, 0);
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) { fprintf(out, "%d\n", i); usleep(3000); }
    fprintf(out, "done\n");
    return 0;
}
"#;

/// Attached to a running program (mostly asleep): its writes are seen with the right
/// arguments, its executable is announced, and after the stop it finishes normally.
#[test]
fn syscalls_of_an_attached_process() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "ticker", TICKER, &["-O2"]);
    let out = dir.path("out.txt");
    let mut child = std::process::Command::new(&exe)
        .arg(&out)
        .arg("150")
        .spawn()
        .expect("start fixture");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let o = run_with(
        backend_ptrace::Launch::Attach { pid: child.id() },
        Options::default(),
        vec![sys_entry(0, &exe), sys_return(1, &exe)],
        Some(40),
    );
    assert!(o.ended().is_none());
    assert!(child.wait().expect("wait").success());
    let text = read(&out);
    let want: String = (0..150)
        .map(|i| format!("{i}\n"))
        .chain(std::iter::once("done\n".to_string()))
        .collect();
    assert_eq!(text, want);
    // Each write of a line "i\n" has the line's length, and returns it.
    let writes: Vec<&Record> = o
        .site(0)
        .into_iter()
        .filter(|r| val(r, 0) == SYS_WRITE)
        .collect();
    assert!(writes.len() >= 5, "{} writes", writes.len());
    for w in &writes {
        // The buffer need not end with a NUL: only its first `count` bytes are the data.
        let s = w.field(7).unwrap();
        let count = val(w, 3) as usize;
        assert!(s.len() >= count, "{s:?}");
        let line = std::str::from_utf8(&s[..count]).unwrap();
        assert!(
            line.ends_with('\n') && line.trim().parse::<u32>().is_ok(),
            "{line:?}"
        );
    }
    let rets: Vec<u64> = o
        .site(1)
        .iter()
        .filter(|r| val(r, 0) == SYS_WRITE)
        .map(|r| val(r, 1))
        .collect();
    assert!(rets.iter().all(|&v| v == 2 || v == 3 || v == 4), "{rets:?}");
    let announced = o.others.iter().any(|e| {
        matches!(e, backend::Event::ModuleMapped { pid, path, .. } if *pid == child.id() && *path == exe)
    });
    assert!(announced);
}

#[test]
fn syscall_site_of_a_program_never_run_is_reported() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "ticker", TICKER, &["-O2"]);
    let other = gcc(&dir, "calls", CALLS, &["-O2"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "1"]),
        Options::default(),
        vec![sys_entry(0, &other), sys_return(1, &exe)],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert!(o.site(0).is_empty());
    assert!(!o.site(1).is_empty());
    assert_eq!(o.summary.failed_sites.len(), 1, "{:?}", o.summary);
    assert!(o.summary.failed_sites[0].starts_with("site 0: no traced process ran"));
}

/// A stop requested while four threads make system calls as fast as they can: threads
/// caught at syscall entry or exit stops (or in a step) are detached there, and the
/// program still computes everything right.
#[test]
fn stop_mid_run_with_threads_in_syscalls() {
    for single_step in [false, true] {
        let dir = TempDir::new();
        let exe = gcc(&dir, "threaded", THREADED, &["-O2", "-pthread"]);
        let out = dir.path("out.txt");
        let n = 3000u64;
        let o = run_cfg(
            spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), &n.to_string()]),
            Options::default(),
            vec![
                sys_entry(0, &exe),
                sys_return(1, &exe),
                entry_site(2, &exe, "work", vec![reg(5), reg(4)]),
            ],
            Some(400),
            single_step,
        );
        assert!(o.ended().is_none(), "the target must still run");
        assert_eq!(wait_child(o.pid), 0, "exit status after detach");
        let text = read(&out);
        for k in 0..4u64 {
            assert!(
                text.contains(&format!("thread {k} wrote {} hits {n}", n * (k + 1))),
                "{text}"
            );
        }
    }
}
