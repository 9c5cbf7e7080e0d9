//! Programs from the distribution: Debian's libc through libc6-dbg's separate debug
//! info (found by build-id), and CPython's USDT markers (with semaphores). These need
//! the packages `scripts/deps.sh` installs; without them the tests say so and pass.

use std::path::Path;

use crate::support::*;

fn have(path: &str, package: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    eprintln!("skipped: {path} is missing (install {package})");
    false
}

#[test]
fn libc_malloc_bytes_through_libc6_dbg() {
    if !have("/usr/lib/debug/.build-id", "libc6-dbg") {
        return;
    }
    let bin = fixture("mallocs", "-O2", &[]);
    let script = r#"probe process("/lib/x86_64-linux-gnu/libc.so.6").function("malloc") { if ($bytes >= 12340 && $bytes < 12350) printf("truth malloc %d\n", $bytes) }"#;
    let (out, stdout, stderr, st) = trace(script, bin.to_str().unwrap());
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 4);
    assert_lines(&truth_lines(&out), &want, "libc malloc");
}

#[test]
fn python_usdt_line_marker_with_semaphore() {
    if !have("/usr/bin/python3.11", "python3.11") {
        return;
    }
    let dir = tempfile("py");
    std::fs::create_dir_all(&dir).unwrap();
    let py = dir.join("t.py");
    std::fs::write(&py, "import sys\ndef hello(n):\n    print('truth hello line', sys._getframe().f_lineno, n + 1)\nfor i in range(3):\n    hello(i)\n").unwrap();
    // The `line` marker fires once per executed line; its semaphore must be raised
    // or CPython never evaluates the marker's arguments.
    let script = r#"probe process("/usr/bin/python3.11").mark("line") {
  if (user_string($arg2) == "hello") printf("truth hello line %d %s %s\n", $arg3, $$provider, $$name)
}"#;
    let (out, stdout, stderr, st) = trace(script, &format!("/usr/bin/python3.11 {}", py.display()));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want: Vec<String> = truth_lines(&stdout)
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().0.to_string() + " python line")
        .collect();
    assert_eq!(want.len(), 3, "{stdout}");
    assert_lines(&truth_lines(&out), &want, "python line marker");
}
