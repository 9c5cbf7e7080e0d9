//! stap's session options beyond the target: `-T` (time limit), `-E` (extra script
//! text), `-G` (set a global).

use crate::support::*;
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> (String, String, i32) {
    let mut c = snaptap();
    c.args(args);
    let o = run_with_timeout(c, 60);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn time_limit_ends_the_session_like_exit() {
    // Without -T this script would run until interrupted; with -T the end probe
    // still runs, and the timer counted the time that passed.
    let t0 = Instant::now();
    let (out, err, code) = run(&[
        "-T",
        "1.5",
        "-e",
        "global n; probe begin { println(\"hi\") } probe timer.ms(100) { n++ } probe end { printf(\"end %d\\n\", n >= 5) }",
    ]);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hi\nend 1\n", "{err}");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn extra_scripts_join_the_session() {
    let (out, err, code) = run(&[
        "-e",
        "global x; probe begin { x = 41 }",
        "-E",
        "probe begin { println(x + 1) }",
        "-E",
        "probe begin { exit() }",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "42\n");
    // Diagnostics name -E text as stap does.
    let (_, err, code) = run(&["-e", "probe begin { exit() }", "-E", "probe begin { x = }"]);
    assert_eq!(code, 1);
    assert!(err.contains("<input1>:1:"), "{err}");
}

#[test]
fn set_globals_from_the_command_line() {
    let (out, err, code) = run(&[
        "-G",
        "n=0x10",
        "-G",
        "s=hello world",
        "-e",
        "global n = 1, s = \"a\", m; probe begin { println(n + 1); println(s); println(m); exit() }",
        "-G",
        "m=-3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "17\nhello world\n-3\n");
    let (_, err, code) = run(&["-G", "z=1", "-e", "global n; probe begin { exit() }"]);
    assert_ne!(code, 0);
    assert!(err.contains("no global variable 'z'"), "{err}");
    let (_, err, code) = run(&["-G", "n=abc", "-e", "global n = 1; probe begin { exit() }"]);
    assert_ne!(code, 0);
    assert!(err.contains("'n' is a number"), "{err}");
}
