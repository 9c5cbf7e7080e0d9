//! User stacks end to end: `print_ubacktrace()` and friends on a fixture built without
//! frame pointers, compared with gdb's `bt` on the same binary, and `--flamegraph`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::support::{fixtures_src, run_with_timeout, snaptap, tempfile, trace};

/// Builds `libustack.so` and `ustack` (linked to it, rpath set) with `-O2
/// -fomit-frame-pointer`, once; returns the executable.
fn ustack_fixture() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("snaptap-fixtures/ustack");
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libustack.so");
    let exe = dir.join("ustack");
    let flags = ["-g", "-O2", "-fomit-frame-pointer"];
    if !exe.exists() {
        let st = Command::new("gcc")
            .args(flags)
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(fixtures_src().join("ustack_lib.c"))
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(fixtures_src().join("ustack.c"))
            .arg(format!("-L{}", dir.display()))
            .arg("-lustack")
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .status()
            .unwrap();
        assert!(st.success());
    }
    exe
}

/// gdb's `bt` at the first stop in `func`: the function of each frame, innermost first.
fn gdb_bt(exe: &PathBuf, func: &str) -> Vec<String> {
    let o = Command::new("gdb")
        .args(["-batch", "-nx", "-ex"])
        .arg(format!("break {func}"))
        .args(["-ex", "run", "-ex", "bt", "--args"])
        .arg(exe)
        .output()
        .expect("gdb runs (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&o.stdout);
    let frames: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            // "#0  leaf (x=..." or "#1  0x... in c (x=...".
            let rest = l.split_once(' ')?.1.trim_start();
            let rest = match rest.split_once(" in ") {
                Some((addr, r)) if addr.starts_with("0x") => r,
                _ => rest,
            };
            Some(rest.split([' ', '(']).next()?.to_string())
        })
        .collect();
    assert!(frames.len() >= 5, "gdb bt: {text}");
    frames
}

/// The function names of ` 0x… : f+0x1/0x2 [module]` lines.
fn full_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(" 0x"))
        .filter_map(|l| l.split_once(" : "))
        .map(|(_, r)| r.split('+').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn print_ubacktrace_matches_gdb_bt_without_frame_pointers() {
    let exe = ustack_fixture();
    let script = r#"probe process.function("leaf") {
        println("-- print_ubacktrace")
        print_ubacktrace()
        println("-- print_ustack")
        print_ustack(ubacktrace())
        println("-- sprint")
        println(sprint_ubacktrace())
        println("usymname ", usymname(uaddr()))
        println("umodname ", umodname(uaddr()))
        println("usymdata ", usymdata(uaddr()))
        println("ucallers ", ucallers(2))
        println("ubacktrace ", ubacktrace())
        exit()
    }"#;
    let (out, _, err, st) = trace(script, &format!("{} 1 0", exe.display()));
    assert!(st.success(), "{err}\n{out}");
    let section = |name: &str| -> String {
        let start = out.find(&format!("-- {name}\n")).unwrap() + name.len() + 4;
        let end = out[start..].find("--").map_or(out.len(), |e| start + e);
        out[start..end].to_string()
    };
    let printed = section("print_ubacktrace");
    let names = full_names(&printed);
    let gdb = gdb_bt(&exe, "leaf");
    // gdb stops at main; snaptap goes on into libc's start-up code like stap.
    assert_eq!(gdb.first().map(String::as_str), Some("leaf"), "{gdb:?}");
    assert!(
        names.len() >= gdb.len() && names[..gdb.len()] == gdb[..],
        "snaptap {names:?}\ngdb {gdb:?}\n{printed}"
    );
    assert!(gdb.contains(&"lib_step".to_string()), "{gdb:?}");
    // Each frame names its module: the library's frame the library.
    for l in printed.lines() {
        let want = if l.contains(": lib_step+") {
            "libustack.so]"
        } else if l.contains(": leaf+") || l.contains(": main+") {
            "/ustack]"
        } else {
            "]"
        };
        assert!(l.starts_with(" 0x") && l.ends_with(want), "{l}");
    }
    // print_ustack(ubacktrace()) symbolises the same addresses the same way.
    assert_eq!(section("print_ustack"), printed);
    // sprint_ubacktrace: `f+0xN [basename]` lines, no trailing newline.
    let sprint = section("sprint");
    let snames: Vec<&str> = sprint
        .lines()
        .take_while(|l| !l.starts_with("usymname"))
        .map(|l| l.split('+').next().unwrap())
        .collect();
    assert_eq!(snames, names, "{sprint}");
    assert!(sprint.contains(" [libustack.so]\n"), "{sprint}");
    let line = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("{k}: {out}"))
            .to_string()
    };
    assert_eq!(line("usymname"), "leaf");
    assert_eq!(
        line("umodname"),
        exe.canonicalize().unwrap().display().to_string()
    );
    assert!(
        line("usymdata").starts_with("leaf+0x0/0x"),
        "{}",
        line("usymdata")
    );
    let bt = line("ubacktrace");
    let addrs: Vec<&str> = bt.split(' ').collect();
    assert_eq!(addrs.len(), names.len(), "{bt}");
    assert!(addrs.iter().all(|a| a.len() == 18 && a.starts_with("0x")));
    assert_eq!(line("ucallers"), addrs[..2].join(" "));
}

#[test]
fn flamegraph_from_folded_ubacktraces() {
    let exe = ustack_fixture();
    let folded = tempfile("folded");
    let svg = tempfile("svg");
    let script = r#"global s
    probe process.function("leaf") { s[ubacktrace()] <<< 1 }
    probe end { foreach (k in s) printf("%s %d\n", sprint_ufolded(k), @count(s[k])) }"#;
    let mut c = snaptap();
    c.arg("-o")
        .arg(&folded)
        .arg("--flamegraph")
        .arg(&svg)
        .arg("-e")
        .arg(script)
        .arg("-c")
        .arg(format!("{} 5 3", exe.display()));
    let o = run_with_timeout(c, 120);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&folded).unwrap();
    // The fixture prints each path it called (root first, from main) with its count.
    let truth: Vec<(&str, u64)> = stdout
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(s, _)| s.starts_with("main;"))
        .map(|(s, n)| (s, n.parse().unwrap()))
        .collect();
    assert_eq!(truth.len(), 2, "{stdout}");
    for (path, n) in &truth {
        assert!(
            text.lines().any(|l| l.ends_with(&format!(";{path} {n}"))),
            "{path} {n} not in:\n{text}"
        );
    }
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<?xml"), "{}", &svg_text[..100]);
    assert!(svg_text.trim_end().ends_with("</svg>"));
    // leaf appears twice: once above c, once above d.
    for (name, n) in [
        ("leaf", 5),
        ("leaf", 3),
        ("lib_step", 5),
        ("a", 5),
        ("d", 3),
        ("main", 8),
    ] {
        assert!(
            svg_text.contains(&format!("<title>{name} ({n} samples")),
            "{name} {n}"
        );
    }
    let _ = std::fs::remove_file(&folded);
    let _ = std::fs::remove_file(&svg);
}

#[test]
fn stack_functions_without_a_user_context() {
    // begin has no process: an empty backtrace, addresses printed as stap does.
    let exe = ustack_fixture();
    let script = r#"probe begin {
        printf("[%s] [%s] [%s]\n", ubacktrace(), sprint_ufolded(""), usymname(0))
        exit()
    }"#;
    let (out, _, err, st) = trace(script, &format!("{} 1 0", exe.display()));
    assert!(st.success(), "{err}");
    assert_eq!(out, "[] [] [0x0000000000000000]\n");
}

#[test]
fn stacks_of_a_program_started_by_fork_and_exec() {
    // The shell's child execs the fixture: the pid's modules are the new image's
    // (the shell's are forgotten), and libc.so.6, which also has an interpreter,
    // is not taken for a new program.
    let exe = ustack_fixture();
    let script = format!(
        r#"probe process("{}").function("leaf") {{ print_ubacktrace(); exit() }}"#,
        exe.display()
    );
    let (out, _, err, st) = trace(&script, &format!("sh -c '{} 1 0; true'", exe.display()));
    assert!(st.success(), "{err}");
    let names = full_names(&out);
    assert_eq!(
        names[..6],
        ["leaf", "c", "lib_step", "b", "a", "main"],
        "{out}"
    );
    assert!(out.contains("libc.so.6]"), "{out}");
}

/// `print_ubacktrace()` at leaf() of the deep fixture with these `-D` options: the
/// function names of its frames, and the number of down() frames the fixture had.
fn deep_backtrace(defines: &[&str]) -> (Vec<String>, usize) {
    let exe = crate::support::fixture("deepstack", "-O2", &["-fomit-frame-pointer"]);
    let out = tempfile("deep");
    let mut c = snaptap();
    for d in defines {
        c.arg("-D").arg(d);
    }
    c.arg("-D")
        .arg("MAXBACKTRACE=100")
        .arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(r#"probe process.function("leaf") { print_ubacktrace() }"#)
        .arg("-c")
        .arg(format!("{} 10", exe.display()));
    let o = run_with_timeout(c, 120);
    assert!(
        o.status.success(),
        "{defines:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let live = stdout
        .lines()
        .find_map(|l| l.strip_prefix("truth down frames "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("fixture output: {stdout}"));
    (full_names(&text), live)
}

#[test]
fn maxustackbytes_sets_how_deep_a_stack_unwinds() {
    let count = |names: &[String]| names.iter().filter(|n| *n == "down").count();
    // 11 frames of 2 KiB and more: 64 KiB reaches main and beyond.
    let (big, live) = deep_backtrace(&["MAXUSTACKBYTES=65536"]);
    assert_eq!(big.first().map(String::as_str), Some("leaf"), "{big:?}");
    assert_eq!(count(&big), live, "{big:?}");
    assert!(big.contains(&"main".to_string()), "{big:?}");
    // The default 16 KiB stops inside the recursion, one page stops sooner.
    let (default, _) = deep_backtrace(&[]);
    assert_eq!(default.first().map(String::as_str), Some("leaf"));
    assert!(count(&default) > 0 && count(&default) < live, "{default:?}");
    assert!(!default.contains(&"main".to_string()), "{default:?}");
    let (small, _) = deep_backtrace(&["MAXUSTACKBYTES=4096"]);
    assert_eq!(small.first().map(String::as_str), Some("leaf"));
    assert!(count(&small) < count(&default), "{small:?} {default:?}");
    // A value that is not a number is refused before the target starts.
    let mut c = snaptap();
    c.args(["-D", "MAXUSTACKBYTES=lots", "-e", "probe begin { exit() }"]);
    let o = run_with_timeout(c, 60);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid value 'lots' for -D MAXUSTACKBYTES"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
