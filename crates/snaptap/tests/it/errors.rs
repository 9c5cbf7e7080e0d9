//! Bad input: clear errors with locations, never a panic, never a started target.

use crate::support::*;

fn run_e(script: &str, extra: &[&str]) -> (String, i32) {
    let mut c = snaptap();
    c.arg("-e").arg(script).args(extra);
    let o = run_with_timeout(c, 60);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "snaptap panicked: {err}");
    (err, o.status.code().unwrap_or(-1))
}

#[test]
fn syntax_error_has_location_and_caret() {
    let marker = tempfile("never-created");
    let script = "probe begin { printf(\"x\" }";
    let (err, code) = run_e(script, &["-c", &format!("touch {}", marker.display())]);
    assert_ne!(code, 0);
    assert!(err.contains("parse error"), "{err}");
    assert!(err.contains("<input>:1:26"), "{err}");
    assert!(
        err.lines().any(|l| l.trim() == "^"),
        "caret line expected: {err}"
    );
    assert!(
        !marker.exists(),
        "the target must not start on a syntax error"
    );
}

#[test]
fn unknown_function_lists_close_matches() {
    let bin = fixture("threads", "-O0", &[]);
    let script = format!(
        r#"probe process("{}").function("wrok") {{ }}"#,
        bin.display()
    );
    let (err, code) = run_e(&script, &["-c", bin.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("wrok"), "{err}");
    assert!(err.contains("work"), "close match expected: {err}");
}

#[test]
fn missing_pid_is_reported() {
    let (err, code) = run_e(r#"probe process.function("main") { }"#, &["-x", "999999"]);
    assert_ne!(code, 0);
    assert!(err.contains("999999"), "{err}");
}

#[test]
fn binary_without_debug_info() {
    let dir = tempfile("nodebug");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("nodebug");
    let st = std::process::Command::new("gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&exe)
        .arg(fixtures_src().join("slow.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let script = format!(
        r#"probe process("{}").function("tick") {{ printf("%d\n", $i) }}"#,
        exe.display()
    );
    let (err, code) = run_e(&script, &["-c", exe.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.to_lowercase().contains("debug"), "{err}");
    assert!(
        err.contains(exe.to_str().unwrap()),
        "must name the file searched: {err}"
    );
}

#[test]
fn unavailable_variable_names_variable_and_probe() {
    let bin = fixture("threads", "-O0", &[]);
    let script = format!(
        r#"probe process("{}").function("work") {{ printf("%d\n", $nosuch) }}"#,
        bin.display()
    );
    let (err, code) = run_e(&script, &["-c", bin.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("nosuch"), "{err}");
    assert!(err.contains("work"), "{err}");
}

#[test]
fn crashing_target_is_reported_with_its_signal() {
    let bin = fixture("crash", "-O0", &[]);
    let out = tempfile("crash");
    let script = format!(
        r#"probe process("{}").function("victim") {{ printf("victim %d\n", $p) }}"#,
        bin.display()
    );
    let mut c = snaptap();
    c.arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(&script)
        .arg("-c")
        .arg(bin.to_str().unwrap());
    let o = run_with_timeout(c, 60);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("SIGSEGV"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 2, "both calls traced: {text}");
    assert!(text.lines().nth(1).unwrap().ends_with(" 0"), "{text}");
}

#[test]
fn missing_command_is_reported() {
    let (err, code) = run_e(
        r#"probe process.function("main") { }"#,
        &["-c", "/nonexistent/prog"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/prog"), "{err}");
}

#[test]
fn garbage_scripts_never_panic() {
    for s in [
        "",
        "probe",
        "probe begin {",
        "}}}}",
        "probe begin { x = \"unterminated }",
        "@@@ $$$ %{ ",
        "function f( { }",
        "probe begin { printf(\"%d\\n\", 1/0) }",
    ] {
        let (err, _) = run_e(s, &[]);
        assert!(!err.contains("panicked"), "{s}: {err}");
    }
}

#[test]
fn kernel_without_dwarf_is_refused_with_the_reason() {
    let dir = tempfile("nodwarf-kernel");
    std::fs::create_dir_all(&dir).unwrap();
    let elf = dir.join("kernel.nodebug");
    let st = std::process::Command::new("gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&elf)
        .arg(fixtures_src().join("slow.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let (err, code) = run_e(
        r#"probe kernel.function("tick") { println(1) }"#,
        &["--gdb", "127.0.0.1:1", "--kernel", elf.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("no DWARF debug information"), "{err}");
    assert!(err.contains(elf.to_str().unwrap()), "{err}");
}

#[test]
fn no_gdbstub_at_the_address() {
    let bin = fixture("slow", "-O0", &[]);
    let (err, code) = run_e(
        r#"probe kernel.function("tick") { println(1) }"#,
        &["--gdb", "127.0.0.1:1", "--kernel", bin.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("no gdbstub at 127.0.0.1:1"), "{err}");
}

#[test]
fn stripped_binary_without_a_match_says_why() {
    // Stripped of DWARF and of .symtab: nothing names `tick` any more. The error must
    // come with the warning that explains it (no debug info, where it was looked for),
    // printed before it, as stap does.
    let dir = tempfile("stripped");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("stripped");
    let st = std::process::Command::new("gcc")
        .args(["-g", "-O2", "-s", "-o"])
        .arg(&exe)
        .arg(fixtures_src().join("slow.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let script = format!(
        r#"probe process("{}").function("tick") {{ println(pp()) }}"#,
        exe.display()
    );
    let (err, code) = run_e(&script, &["-c", exe.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let warn = err
        .find("WARNING: no debug information found in")
        .unwrap_or(usize::MAX);
    let no_match = err.find("semantic error: no match").unwrap_or(0);
    assert!(warn < no_match, "the reason first, then the error: {err}");
}

#[test]
fn a_failed_elaboration_never_runs_the_command() {
    // Errors the runtime finds (an unknown function, a kernel-only one) come after
    // the target was spawned and held at its exec: it must die there, not run.
    let bin = fixture("touchfile", "-O0", &[]);
    for body in ["x = nosuchfn()", "x = task_current()", "exit()"] {
        let marker = tempfile("never-ran");
        let _ = std::fs::remove_file(&marker);
        let script = format!(
            r#"probe begin {{ if (0) println(1) }} probe process("{}").function("f") {{ {body} }}"#,
            bin.display()
        );
        let script = if body == "exit()" {
            format!("probe begin {{ exit() }} {script}")
        } else {
            script
        };
        let cmd = format!("{} {}", bin.display(), marker.display());
        let (err, _) = run_e(&script, &["-c", &cmd]);
        assert!(
            !marker.exists(),
            "the command ran although the session ended first ({body}): {err}"
        );
    }
}
