//! Live tests of signal handling (re-injection, group stop), vfork children and attach to
//! a multi-threaded process.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use backend::TargetEnd;
use backend_ptrace::{Launch, Options};
use common::*;

const SIGNALS: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
__attribute__((noipa)) long add(long a, long b) { return a + b; }
static volatile long handled;
static void on_usr1(int s) { handled = add(99, s); }
static long ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    setvbuf(out, NULL, _IONBF, 0);
    signal(SIGUSR1, on_usr1);
    add(1, 0);
    raise(SIGUSR1);
    fprintf(out, "handled %ld\n", handled);
    pid_t h = fork();
    if (h == 0) { usleep(300000); kill(getppid(), SIGCONT); _exit(0); }
    long t0 = ms();
    raise(SIGSTOP);
    long stopped = ms() - t0;
    waitpid(h, 0, 0);
    add(2, 0);
    int rc = system("exit 3");
    add(3, 0);
    fprintf(out, "system %d stopped %d\n", WEXITSTATUS(rc), stopped >= 250);
    return 0;
}
"#;

#[test]
fn signals_are_reinjected_and_group_stop_is_kept() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "signals", SIGNALS, &["-O2"]);
    let out = dir.path("out.txt");
    for follow in [false, true] {
        let o = run_with(
            spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
            Options {
                follow_forks: follow,
            },
            vec![entry_site(0, &exe, "add", vec![reg(5), reg(4)])],
            None,
        );
        assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
        let got: Vec<(u64, u64)> = o.site(0).iter().map(|r| (val(r, 0), val(r, 1))).collect();
        assert_eq!(
            got,
            vec![(1, 0), (99, libc::SIGUSR1 as u64), (2, 0), (3, 0)]
        );
        assert!(o.site(0).iter().all(|r| r.pid == o.pid));
        assert_eq!(
            read(&out),
            format!("handled {}\nsystem 3 stopped 1\n", 99 + libc::SIGUSR1)
        );
    }
}

/// The same program with system call sites as well: signals still reach the handler,
/// the group stop is kept, the probes see the same hits, and the system calls around
/// the signals are seen in order (raise's tgkill with SIGUSR1, kill of SIGCONT in the
/// helper when followed, and `rt_sigreturn` out of the handler).
#[test]
fn signals_with_syscall_sites() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "signals", SIGNALS, &["-O2"]);
    let out = dir.path("out.txt");
    let nr = || capture_plan::FieldPlan {
        ops: vec![
            capture_plan::Op::Reg(capture_plan::DwarfReg::SYSCALL_NR),
            capture_plan::Op::EmitValue(8),
        ],
        label: "nr".into(),
    };
    for follow in [false, true] {
        let o = run_with(
            spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
            Options {
                follow_forks: follow,
            },
            vec![
                entry_site(0, &exe, "add", vec![reg(5), reg(4)]),
                site(
                    1,
                    &exe,
                    0,
                    capture_plan::SiteKind::SyscallEntry,
                    plan(vec![nr(), reg(5), reg(4), reg(1)]),
                ),
                site(
                    2,
                    &exe,
                    0,
                    capture_plan::SiteKind::SyscallReturn,
                    plan(vec![nr(), reg(0)]),
                ),
            ],
            None,
        );
        assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
        let got: Vec<(u64, u64)> = o.site(0).iter().map(|r| (val(r, 0), val(r, 1))).collect();
        assert_eq!(
            got,
            vec![(1, 0), (99, libc::SIGUSR1 as u64), (2, 0), (3, 0)]
        );
        assert_eq!(
            read(&out),
            format!("handled {}\nsystem 3 stopped 1\n", 99 + libc::SIGUSR1)
        );
        let main: Vec<&capture_plan::Record> =
            o.records.iter().filter(|r| r.pid == o.pid).collect();
        // raise(SIGUSR1) is tgkill(pid, tid, SIGUSR1), then the handler's add, then
        // rt_sigreturn.
        let tgkill = main
            .iter()
            .position(|r| r.site.0 == 1 && val(r, 0) == 234 && val(r, 3) == 10)
            .expect("tgkill of SIGUSR1");
        assert_eq!(val(main[tgkill], 1), u64::from(o.pid));
        let handler = main
            .iter()
            .position(|r| r.site.0 == 0 && val(r, 0) == 99)
            .expect("handler hit");
        let sigreturn = main
            .iter()
            .position(|r| r.site.0 == 1 && val(r, 0) == 15)
            .expect("rt_sigreturn");
        assert!(
            tgkill < handler && handler < sigreturn,
            "{tgkill} {handler} {sigreturn}"
        );
        // The shell run by system() is another program: never traced for syscalls.
        let shells: BTreeSet<u32> = o
            .records
            .iter()
            .filter(|r| r.pid != o.pid && r.site.0 == 1 && val(r, 0) == 59)
            .map(|r| r.pid)
            .collect();
        for p in shells {
            assert!(
                o.records
                    .iter()
                    .filter(|r| r.pid == p)
                    .all(|r| r.site.0 != 2 || val(r, 0) != 59),
                "no record after the exec of /bin/sh"
            );
        }
        let others: BTreeSet<u32> = o
            .records
            .iter()
            .filter(|r| r.pid != o.pid)
            .map(|r| r.pid)
            .collect();
        if follow {
            // The SIGCONT helper and system()'s child, before its exec.
            assert_eq!(others.len(), 2, "{others:?}");
            let kill = o
                .records
                .iter()
                .find(|r| r.site.0 == 1 && val(r, 0) == 62)
                .expect("kill of SIGCONT");
            assert_eq!((val(kill, 1), val(kill, 2)), (u64::from(o.pid), 18));
        } else {
            assert!(others.is_empty(), "{others:?}");
        }
    }
}

const SPIN: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static volatile int stop_all;
__attribute__((noipa)) long tick(long k, long i) { return k + i; }
static void *spin(void *arg) {
    long k = (long)arg, i = 0;
    while (!stop_all) { tick(k, i++); usleep(100); }
    return (void *)i;
}
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    pthread_t t[3];
    for (long k = 0; k < 3; k++) pthread_create(&t[k], 0, spin, (void *)k);
    usleep(atoi(argv[2]) * 1000);
    stop_all = 1;
    long total = 0;
    for (int k = 0; k < 3; k++) { void *r; pthread_join(t[k], &r); total += (long)r; }
    fprintf(out, "total %ld\n", total);
    fclose(out);
    return 0;
}
"#;

#[test]
fn attach_to_threads_then_detach() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "spin", SPIN, &["-O2", "-pthread"]);
    let out = dir.path("out.txt");
    let mut child = std::process::Command::new(&exe)
        .arg(&out)
        .arg("1500")
        .spawn()
        .expect("start fixture");
    std::thread::sleep(Duration::from_millis(200));
    let o = run_with(
        Launch::Attach { pid: child.id() },
        Options::default(),
        vec![entry_site(0, &exe, "tick", vec![reg(5), reg(4)])],
        Some(300),
    );
    let ks: BTreeSet<u64> = o.site(0).iter().map(|r| val(r, 0)).collect();
    assert_eq!(ks, BTreeSet::from([0, 1, 2]));
    let tids: BTreeSet<u32> = o.site(0).iter().map(|r| r.tid).collect();
    assert_eq!(tids.len(), 3);
    // Per thread, the counter values seen are consecutive: no hit was lost.
    for k in 0..3 {
        let is: Vec<u64> = o
            .site(0)
            .iter()
            .filter(|r| val(r, 0) == k)
            .map(|r| val(r, 1))
            .collect();
        for w in is.windows(2) {
            assert_eq!(w[1], w[0] + 1, "thread {k}");
        }
    }
    let st = child.wait().expect("wait fixture");
    assert!(st.success(), "{st:?}");
    assert!(read(&out).starts_with("total "));
}

#[test]
fn stop_mid_run_with_threads_single_stepped() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "spin", SPIN, &["-O2", "-pthread"]);
    let out = dir.path("out.txt");
    let o = run_cfg(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "1200"]),
        Options::default(),
        vec![entry_site(0, &exe, "tick", vec![reg(5), reg(4)])],
        Some(200),
        true,
    );
    assert!(o.ended().is_none());
    assert!(o.site(0).len() >= 200);
    for k in 0..3 {
        let is: Vec<u64> = o
            .site(0)
            .iter()
            .filter(|r| val(r, 0) == k)
            .map(|r| val(r, 1))
            .collect();
        assert!(!is.is_empty(), "thread {k} never seen");
        for w in is.windows(2) {
            assert_eq!(w[1], w[0] + 1, "thread {k}");
        }
    }
    assert_eq!(wait_child(o.pid), 0);
    assert!(read(&out).starts_with("total "));
}

#[test]
fn attached_process_exit_ends_the_session() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "spin", SPIN, &["-O2", "-pthread"]);
    let out = dir.path("out.txt");
    // Started through a shell in the background so that, as with `-x PID`, the target
    // is not the tracer's child.
    let sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' '{}' 600 >/dev/null 2>&1 & echo $!",
            exe.display(),
            out.display()
        ))
        .output()
        .expect("start fixture");
    let target: u32 = String::from_utf8_lossy(&sh.stdout).trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let end = site(1, &exe, 0, capture_plan::SiteKind::ProcessEnd, plan(vec![]));
    let o = run_with(
        Launch::Attach { pid: target },
        Options::default(),
        vec![entry_site(0, &exe, "tick", vec![reg(5)]), end],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert!(!o.site(0).is_empty());
    assert_eq!(o.site(1).len(), 1);
    assert_eq!(o.pid, target);
    assert!(read(&out).starts_with("total "));
}

const VFORK: &str = r#"
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
__attribute__((noipa)) long add(long a, long b) { return a + b; }
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    pid_t c = vfork();
    if (c == 0) { add(7, 0); usleep(300000); add(8, 0); _exit(0); }
    int st;
    waitpid(c, &st, 0);
    add(9, 0);
    fprintf(out, "done %d\n", WEXITSTATUS(st));
    fclose(out);
    return 0;
}
"#;

#[test]
fn stop_while_a_vfork_child_runs() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "vfork", VFORK, &["-O0"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
        Options { follow_forks: true },
        vec![entry_site(0, &exe, "add", vec![reg(5)])],
        Some(1),
    );
    let first = o.site(0)[0];
    assert_eq!(val(first, 0), 7);
    assert_ne!(first.pid, o.pid, "the vfork child's own pid");
    assert_eq!(wait_child(o.pid), 0);
    assert_eq!(read(&out), "done 0\n");
}

#[test]
fn vfork_child_followed_to_the_end() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "vfork", VFORK, &["-O0"]);
    let out = dir.path("out.txt");
    for follow in [true, false] {
        let o = run_with(
            spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
            Options {
                follow_forks: follow,
            },
            vec![entry_site(0, &exe, "add", vec![reg(5)])],
            None,
        );
        assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
        let vals: Vec<u64> = o.site(0).iter().map(|r| val(r, 0)).collect();
        if follow {
            assert_eq!(vals, vec![7, 8, 9]);
        } else {
            assert_eq!(vals, vec![9]);
        }
        assert_eq!(read(&out), "done 0\n");
    }
}
