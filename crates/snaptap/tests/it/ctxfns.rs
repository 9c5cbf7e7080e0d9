//! Context tapset functions of a process target: ids, process group and session,
//! command line, environment, parent name and memory sizes (read from `/proc` when
//! the handler runs), UTF-16/32 strings and `*_error` reads (copied at the probe),
//! each compared with what the `ctxfns` fixture prints about itself; and the
//! compile-time refusals of functions snaptap cannot serve honestly.

use crate::support::*;

const SCRIPT: &str = r#"probe process("BIN").function("probe") {
  if ($round != 1) next
  printf("truth ids uid=%d gid=%d euid=%d egid=%d pgrp=%d sid=%d pid=%d ppid=%d ngroups=%d\n",
         uid(), gid(), euid(), egid(), pgrp(), sid(), ns_pid(), ns_ppid(), ngroups())
  printf("truth argv str=%s arg1=%s rest=%s arg9=%s\n",
         cmdline_str(), cmdline_arg(1), cmdline_args(1, -1, ","), cmdline_arg(9))
  printf("truth env var=[%s] none=[%s]\n", env_var("CTXFNS_VAR"), env_var("CTXFNS_NONE"))
  printf("truth parent pexecname=%s\n", pexecname())
  printf("truth mem size=%d rss=%d shr=%d txt=%d data=%d\n", proc_mem_size(),
         proc_mem_rss(), proc_mem_shr(), proc_mem_txt(), proc_mem_data())
  printf("memstr %s\n", proc_mem_string())
  printf("memstr_pid %s\n", proc_mem_string(pid()))
  printf("ns %d %d %d\n", ns_tid() == tid(), ns_pgrp() == pgrp(), ns_sid() == sid())
  printf("type %s\n", probe_type())
  printf("bad user_int=%d\n", user_int($bad))
  printf("bad user_long_warn=%d\n", user_long_warn($bad))
  try { println("no error ", user_int_error($bad)) } catch (msg) { println("caught ", msg) }
}
probe process("BIN").function("wide") {
  printf("truth wide w16=%s w32=%s\n", user_string_utf16($w16), user_string_utf32($w32))
  printf("wide2 [%s] [%s]\n", user_string2_utf16($w16, "alt"), user_string_utf16(0 + $w16, "alt2"))
}"#;

/// Runs the fixture under snaptap with `CTXFNS_VAR` set: (script output, fixture
/// stdout, stderr).
fn run(opt: &str) -> (String, String, String) {
    let bin = fixture("ctxfns", opt, &[]);
    let bin = bin.to_str().unwrap();
    let out = tempfile("ctxfns");
    let mut c = snaptap();
    c.env("CTXFNS_VAR", "two words=x")
        .arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(SCRIPT.replace("BIN", bin))
        .arg("-c")
        .arg(format!("{bin} one two three"));
    let o = run_with_timeout(c, 120);
    let script_out = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "snaptap failed: {stderr}");
    (
        script_out,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr.into_owned(),
    )
}

/// stap's `bytes_to_string` as proc_mem.stp defines it, for the fixture's pages.
fn stap_bytes(pages: i64) -> String {
    let b = pages * 4096;
    if b < 1024 {
        return format!("{b:5}");
    }
    let (mut x, mut y, mut unit) = (b / 1024, b % 1024, "K");
    if x >= 1024 {
        (x, y, unit) = (x / 1024, x % 1024, "M");
    }
    if x >= 1024 {
        (x, y, unit) = (x / 1024, x % 1024, "G");
    }
    match x {
        0..=9 => format!("{x}.{:02}{unit}", y * 100 / 1024),
        10..=99 => format!("{x:2}.{}{unit}", y * 10 / 1024),
        _ => format!("{x:4}{unit}"),
    }
}

fn check(opt: &str) {
    let (out, stdout, stderr) = run(opt);
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 6, "fixture output: {stdout}");
    assert_lines(&truth_lines(&out), &want, &format!("ctxfns {opt}"));
    // proc_mem_string(): the fixture's statm pages in stap's words.
    let mem = want.iter().find(|l| l.starts_with("truth mem")).unwrap();
    let pages: Vec<i64> = mem
        .split_whitespace()
        .filter_map(|w| w.split_once('=').and_then(|(_, v)| v.parse().ok()))
        .collect();
    let expect = format!(
        "size: {}, rss: {}, shr: {}, txt: {}, data: {}",
        stap_bytes(pages[0]),
        stap_bytes(pages[1]),
        stap_bytes(pages[2]),
        stap_bytes(pages[3]),
        stap_bytes(pages[4])
    );
    assert!(
        out.contains(&format!("memstr {expect}\n")),
        "{expect}\n{out}"
    );
    assert!(
        out.contains(&format!("memstr_pid {expect}\n")),
        "{expect}\n{out}"
    );
    assert!(out.contains("ns 1 1 1\n"), "{out}");
    assert!(out.contains("type uprobe\n"), "{out}");
    assert!(
        out.contains("wide2 [h\u{e9}llo \u{20ac} \u{1F600}] [h\u{e9}llo \u{20ac} \u{1F600}]\n"),
        "{out}"
    );
    assert!(out.contains("bad user_int=0\n"), "{out}");
    assert!(out.contains("bad user_long_warn=0\n"), "{out}");
    assert!(
        stderr.contains("WARNING: user long copy fault 0x0000000000000010 [man error::fault]"),
        "{stderr}"
    );
    assert!(
        out.contains("caught read fault [man error::fault] at 0x0000000000000010"),
        "{out}"
    );
}

#[test]
fn context_functions_match_the_fixture_o0() {
    check("-O0");
}

#[test]
fn context_functions_match_the_fixture_o2() {
    check("-O2");
}

/// The compile-time error of a script calling `call` in the fixture's probe.
fn compile_error(call: &str) -> String {
    let bin = fixture("ctxfns", "-O0", &[]);
    let script = format!(
        r#"probe process("{}").function("probe") {{ x = {call}; println(x) }}"#,
        bin.display()
    );
    let mut c = snaptap();
    c.arg("-e").arg(script).arg("-c").arg(bin.to_str().unwrap());
    let o = run_with_timeout(c, 60);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{call} should not compile");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn functions_snaptap_cannot_serve_are_compile_time_errors() {
    let e = compile_error("set_user_long($bad, 1)");
    assert!(e.contains("set_user_long() writes target memory"), "{e}");
    assert!(e.contains("never writes its target"), "{e}");
    let e = compile_error("set_kernel_int(0, 1)");
    assert!(e.contains("never writes its target"), "{e}");
    let e = compile_error("task_current()");
    assert!(
        e.contains("task_current() needs a Linux kernel target"),
        "{e}"
    );
    let e = compile_error("inode_path(0)");
    assert!(
        e.contains("inode_path() needs a Linux kernel target"),
        "{e}"
    );
    let e = compile_error("set_returnval(1)");
    assert!(e.contains("set_returnval() writes target registers"), "{e}");
    let e = compile_error("jiffies()");
    assert!(e.contains("jiffies() is not available"), "{e}");
    // A wide string of an address that is not computed from target variables: the
    // planner's error, not an internal one at run time.
    for f in ["kernel_string_utf16", "user_string_utf32"] {
        let e = compile_error(&format!("{f}(0)"));
        assert!(
            e.contains(&format!("{f}: the address must be computed")),
            "{e}"
        );
        assert!(!e.contains("internal error"), "{e}");
    }
}
