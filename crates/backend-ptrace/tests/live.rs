//! Live tests: real processes traced with real ptrace. Fixtures are C programs compiled
//! with gcc at test time; expected values come from what the fixtures themselves print.

mod common;

use std::collections::BTreeMap;

use backend::TargetEnd;
use backend_ptrace::{Error, Launch, Options, PtraceBackend};
use capture_plan::{FieldStatus, SiteKind};
use common::*;

const BASIC: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
__attribute__((noipa)) long add(long a, long b) { return a + b; }
__attribute__((noipa)) void take(const char *s, long n) { __asm__ volatile("" :: "r"(s), "r"(n)); }
__attribute__((noipa)) long fact(long n) { if (n <= 1) return 1; return n * fact(n - 1); }
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    int n = atoi(argv[2]);
    long sum = 0;
    for (int i = 0; i < n; i++) {
        long r = add(i, 100 + i);
        fprintf(out, "add %d %d %ld\n", i, 100 + i, r);
        sum += r;
    }
    take("hello", 1);
    take(NULL, 2);
    take("world", 3);
    for (long k = 1; k <= 6; k++) fprintf(out, "fact %ld %ld\n", k, fact(k));
    fprintf(out, "sum %ld\n", sum);
    fclose(out);
    if (argc > 3 && !strcmp(argv[3], "crash")) { volatile int *p = 0; *p = 1; }
    return 0;
}
"#;

fn basic(dir: &TempDir, opt: &str) -> std::path::PathBuf {
    let args: Vec<&str> = opt.split(' ').collect();
    gcc(dir, &format!("basic{}", args[0]), BASIC, &args)
}

/// The (a, b) pairs the fixture printed for `add`.
fn printed_adds(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("add ")?.split(' ');
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

fn check_entry_args(opt: &str, single_step: bool) {
    let dir = TempDir::new();
    let exe = basic(&dir, opt);
    let out = dir.path("out.txt");
    let o = run_cfg(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "50"]),
        Options::default(),
        vec![entry_site(0, &exe, "add", vec![reg(5), reg(4)])],
        None,
        single_step,
    );
    let printed = printed_adds(&read(&out));
    assert_eq!(printed.len(), 50);
    let got: Vec<(u64, u64)> = o.site(0).iter().map(|r| (val(r, 0), val(r, 1))).collect();
    assert_eq!(got, printed);
    for r in o.site(0) {
        assert_eq!((r.pid, r.tid), (o.pid, o.pid));
        assert!(r.time_ns > 1_600_000_000_000_000_000);
    }
    assert_eq!(o.summary.hits, 50);
    assert!(
        o.summary.failed_sites.is_empty(),
        "{:?}",
        o.summary.failed_sites
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
}

#[test]
fn entry_arguments_match_fixture_o0() {
    check_entry_args("-O0", false);
}

#[test]
fn entry_arguments_match_fixture_non_pie() {
    check_entry_args("-O2 -no-pie", false);
}

#[test]
fn entry_arguments_match_fixture_single_stepped() {
    check_entry_args("-O0", true);
    check_entry_args("-O2", true);
}

#[test]
fn entry_arguments_match_fixture_o2() {
    check_entry_args("-O2", false);
}

#[test]
fn strings_faults_and_no_int3_in_reads() {
    let dir = TempDir::new();
    let exe = basic(&dir, "-O2");
    let out = dir.path("out.txt");
    let add_addr = sym(&exe, "add");
    // Field 2 copies the probed code itself: it must show the original bytes.
    let code = capture_plan::FieldPlan {
        ops: vec![
            capture_plan::Op::Reg(capture_plan::DwarfReg(16)),
            capture_plan::Op::EmitBytes(4),
        ],
        label: "code".into(),
    };
    let mut s1 = entry_site(1, &exe, "take", vec![string_at_reg(5, 64), reg(4), code]);
    s1.needs.comm = true;
    s1.needs.ppid = true;
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "3"]),
        Options::default(),
        vec![
            entry_site(0, &exe, "add", vec![reg(5)]),
            s1,
            // Another site on the same address shares the breakpoint.
            entry_site(2, &exe, "add", vec![reg(4)]),
        ],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert!(read(&out).contains("sum 306"));
    let takes = o.site(1);
    assert_eq!(takes.len(), 3, "{takes:?}");
    assert_eq!(takes[0].field(0).unwrap(), b"hello");
    assert_eq!(takes[1].field(0), Err(FieldStatus::Fault { addr: 0 }));
    assert_eq!(takes[2].field(0).unwrap(), b"world");
    assert_eq!(
        takes.iter().map(|r| val(r, 1)).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let data = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let take_addr = sym(&exe, "take");
    let want = object::read::ObjectSection::data_range(
        &object::Object::section_by_name(&file, ".text").unwrap(),
        take_addr,
        4,
    )
    .unwrap()
    .unwrap()
    .to_vec();
    assert_ne!(want[0], 0xCC);
    for t in &takes {
        assert_eq!(t.field(2).unwrap(), &want[..]);
        assert!(t.comm.starts_with("basic"), "comm {:?}", t.comm);
        assert_eq!(t.ppid, std::process::id());
    }
    assert_eq!(o.site(0).len(), 3);
    assert_eq!(o.site(2).len(), 3);
    assert_eq!(
        o.site(2).iter().map(|r| val(r, 0)).collect::<Vec<_>>(),
        vec![100, 101, 102]
    );
    let _ = add_addr;
}

#[test]
fn return_probes_under_recursion() {
    recursion_run(false);
}

#[test]
fn return_probes_under_recursion_single_stepped() {
    recursion_run(true);
}

fn recursion_run(single_step: bool) {
    let dir = TempDir::new();
    let exe = basic(&dir, "-O0");
    let out = dir.path("out.txt");
    let fact = site(
        0,
        &exe,
        sym(&exe, "fact"),
        SiteKind::Return {
            return_plan: plan(vec![reg(0)]),
        },
        plan(vec![reg(5)]),
    );
    let o = run_cfg(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "2"]),
        Options::default(),
        vec![fact],
        None,
        single_step,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    let text = read(&out);
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for l in text.lines().filter_map(|l| l.strip_prefix("fact ")) {
        let mut w = l.split(' ');
        let k: u64 = w.next().unwrap().parse().unwrap();
        let v: u64 = w.next().unwrap().parse().unwrap();
        expected.insert(k, v);
    }
    assert_eq!(expected.len(), 6);
    let recs = o.site(0);
    // fact(k) for k = 1..6 makes k calls each: 21 returns.
    assert_eq!(recs.len(), 21);
    for r in &recs {
        let n = val(r, 0);
        assert_eq!(Some(&val(r, 1)), expected.get(&n), "fact({n})");
        assert_eq!(r.fields.len(), 2);
    }
    // The innermost call returns first.
    let order: Vec<u64> = recs.iter().take(6).map(|r| val(r, 0)).collect();
    assert_eq!(order, vec![1, 1, 2, 1, 2, 3]);
}

#[test]
fn crash_is_reported_as_signaled() {
    let dir = TempDir::new();
    let exe = basic(&dir, "-O0");
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "2", "crash"]),
        Options::default(),
        vec![entry_site(0, &exe, "add", vec![reg(5)])],
        None,
    );
    assert_eq!(o.site(0).len(), 2);
    match o.ended() {
        Some(TargetEnd::Signaled { signal, name, .. }) => {
            assert_eq!(*signal, libc::SIGSEGV);
            assert_eq!(name, "SIGSEGV");
        }
        other => panic!("unexpected end {other:?}"),
    }
}

#[test]
fn missing_program_is_a_clean_error() {
    let e = PtraceBackend::new(spawn(&["no-such-program-snaptap"]), Options::default())
        .expect_err("must fail");
    assert_eq!(
        e.to_string(),
        "cannot execute 'no-such-program-snaptap': No such file or directory"
    );
    let dir = TempDir::new();
    let f = dir.path("not-exec");
    std::fs::write(&f, "data").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let e = PtraceBackend::new(spawn(&[f.to_str().unwrap()]), Options::default())
        .expect_err("must fail");
    assert!(matches!(e, Error::Exec { .. }));
    assert!(e.to_string().ends_with("Permission denied"), "{e}");
    assert!(matches!(
        PtraceBackend::new(spawn(&[]), Options::default()),
        Err(Error::EmptyCommand)
    ));
}

#[test]
fn attach_to_missing_process_is_a_clean_error() {
    let e = PtraceBackend::new(Launch::Attach { pid: 999_999_999 }, Options::default())
        .expect_err("must fail");
    assert_eq!(e.to_string(), "no such process: 999999999");
}

#[test]
fn process_begin_and_end_records() {
    let dir = TempDir::new();
    let exe = basic(&dir, "-O0");
    let out = dir.path("out.txt");
    let mut begin = site(0, &exe, 0, SiteKind::ProcessBegin, plan(vec![]));
    begin.needs.comm = true;
    let mut end = site(1, &exe, 0, SiteKind::ProcessEnd, plan(vec![]));
    end.needs.comm = true;
    end.needs.ppid = true;
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "1"]),
        Options::default(),
        vec![begin, end, entry_site(2, &exe, "add", vec![reg(5)])],
        None,
    );
    let ids: Vec<u32> = o.records.iter().map(|r| r.site.0).collect();
    assert_eq!(ids, vec![0, 2, 1]);
    assert_eq!(o.records[0].pid, o.pid);
    assert!(o.records[0].comm.starts_with("basic"));
    assert!(o.records[2].comm.starts_with("basic"));
    assert_eq!(o.records[2].ppid, std::process::id());
}

const LONGJMP: &str = r#"
#include <setjmp.h>
#include <stdio.h>
static jmp_buf env;
__attribute__((noipa)) long deep(long n, long jump) {
    if (n == 0) {
        if (jump) longjmp(env, 1);
        return 100;
    }
    return deep(n - 1, jump) + 1;
}
int main(int argc, char **argv) {
    FILE *out = fopen(argv[1], "w");
    /* The nop keeps the longjmp landing point apart from deep's return address: a
       breakpoint at a return address cannot tell a longjmp to that very address, with
       the caller's stack pointer, from a return. */
    if (!setjmp(env)) { deep(5, 1); __asm__ volatile("nop"); }
    long r = deep(2, 0);
    fprintf(out, "r %ld\n", r);
    fclose(out);
    return 0;
}
"#;

#[test]
fn return_probes_discard_frames_skipped_by_longjmp() {
    let dir = TempDir::new();
    let exe = gcc(&dir, "longjmp", LONGJMP, &["-O0"]);
    let out = dir.path("out.txt");
    let o = run_with(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap()]),
        Options::default(),
        vec![site(
            0,
            &exe,
            sym(&exe, "deep"),
            SiteKind::Return {
                return_plan: plan(vec![reg(0)]),
            },
            plan(vec![reg(5), reg(4)]),
        )],
        None,
    );
    assert_eq!(o.ended(), Some(&TargetEnd::Exited(0)));
    assert_eq!(read(&out), "r 102\n");
    // Only the three calls of deep(2, 0) return; the six longjmp'ed frames never do.
    let got: Vec<(u64, u64, u64)> = o
        .site(0)
        .iter()
        .map(|r| (val(r, 0), val(r, 1), val(r, 2)))
        .collect();
    assert_eq!(got, vec![(0, 0, 100), (1, 0, 101), (2, 0, 102)]);
}

#[test]
fn attach_to_a_traced_process_explains_why_it_fails() {
    let dir = TempDir::new();
    let exe = basic(&dir, "-O0");
    let out = dir.path("out.txt");
    let first = PtraceBackend::new(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "1"]),
        Options::default(),
    )
    .expect("spawn");
    let p = first.pid();
    let e = PtraceBackend::new(Launch::Attach { pid: p }, Options::default())
        .expect_err("already traced");
    assert_eq!(
        e.to_string(),
        format!(
            "cannot attach to {p}: Operation not permitted (is it already traced? see \
             /proc/sys/kernel/yama/ptrace_scope)"
        )
    );
    // Dropping a backend that never ran detaches: the target runs to its end.
    drop(first);
    assert_eq!(wait_child(p), 0);
    assert!(read(&out).contains("sum 100"));
}

#[test]
fn run_on_another_thread_is_refused_and_the_target_survives() {
    let dir = TempDir::new();
    let exe = basic(&dir, "-O0");
    let out = dir.path("out.txt");
    let mut be = PtraceBackend::new(
        spawn(&[exe.to_str().unwrap(), out.to_str().unwrap(), "1"]),
        Options::default(),
    )
    .expect("spawn");
    let p = be.pid();
    let be = std::thread::spawn(move || {
        let (tx, _rx) = backend::event_queue(16);
        let e = be
            .run(
                &capture_plan::PlanSet::default(),
                &tx,
                &backend::StopToken::new(),
            )
            .expect_err("wrong thread");
        assert_eq!(
            e.to_string(),
            "the ptrace backend must run on the thread that created it"
        );
        be
    })
    .join()
    .unwrap();
    drop(be);
    assert_eq!(wait_child(p), 0);
    assert!(read(&out).contains("sum 100"));
}
