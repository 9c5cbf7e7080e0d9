//! System call probes on a real process: `process.syscall` and `.syscall.return`
//! with `$syscall`, `$arg1`..`$arg3`, `$return` and `user_string($arg2)`, compared with
//! what the fixture passed and got.

use crate::support::*;

/// Prints the fixture's three calls as it prints them: write (1) is matched by its
/// buffer, openat (257) by its path, getpid (39) by number; values from the entry
/// are kept per thread until the exit.
const SCRIPT: &str = r#"
global w, o
probe process.syscall {
  if ($syscall == 1 && user_string_n($arg2, 5) == "hello")
    w[tid()] = sprintf("fd=%d len=%d", $arg1, $arg3)
  if ($syscall == 257 && user_string($arg2) == "/nonexistent/x")
    o[tid()] = 1
}
probe process.syscall.return {
  if ($syscall == 1 && tid() in w) {
    printf("truth write %s ret=%d\n", w[tid()], $return)
    delete w[tid()]
  }
  if ($syscall == 39)
    printf("truth getpid ret=%d\n", $return)
  if ($syscall == 257 && tid() in o) {
    printf("truth open ret=%d\n", $return)
    delete o[tid()]
  }
}
"#;

fn check(opt: &str) {
    let bin = fixture("syscalls", opt, &[]);
    let bin = bin.to_str().unwrap();
    let (out, stdout, stderr, st) = trace(SCRIPT, bin);
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 3, "fixture output: {stdout}");
    assert_lines(&truth_lines(&out), &want, &format!("syscalls {opt}"));
}

#[test]
fn syscall_entry_and_return_o0() {
    check("-O0");
}

#[test]
fn syscall_entry_and_return_o2() {
    check("-O2");
}

/// The probe point is spelled as stap resolves it, with the program's absolute path.
#[test]
fn syscall_pp() {
    let bin = fixture("syscalls", "-O0", &[]);
    let bin = bin.to_str().unwrap();
    let script = format!(
        r#"probe process("{bin}").syscall.return {{ if ($syscall == 39) printf("truth %s\n", pp()) }}"#
    );
    let (out, _stdout, stderr, st) = trace(&script, bin);
    assert!(st.success(), "snaptap failed: {stderr}");
    let canon = std::fs::canonicalize(bin).unwrap();
    assert_lines(
        &truth_lines(&out),
        &[format!(
            "truth process(\"{}\").syscall.return",
            canon.display()
        )],
        "pp",
    );
}
