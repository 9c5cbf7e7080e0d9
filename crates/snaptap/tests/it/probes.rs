//! Probe point families without DWARF or beyond functions: `.plt` (ltrace-style, every
//! call through the PLT), `.library(...)`, `.function(...).exported`, and
//! `process.thread.begin/end`, each checked against what the fixture reports and
//! what binutils say about the fixture's ELF file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The imported functions of `bin` that have a PLT jump slot, as `readelf` lists
/// its `R_X86_64_JUMP_SLOT` relocations (version suffix dropped).
fn jump_slot_names(bin: &Path) -> BTreeSet<String> {
    let o = Command::new("readelf")
        .args(["--relocs", "--wide"])
        .arg(bin)
        .output()
        .expect("readelf runs");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("R_X86_64_JUMP_SLOT"))
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect()
}

/// `objdump -d`'s `<NAME@plt>` labels: the address of each PLT entry a call goes to
/// (the `.plt.sec` entry when there is one).
fn objdump_plt_addrs(bin: &Path) -> BTreeMap<String, u64> {
    let o = Command::new("objdump")
        .arg("-d")
        .arg(bin)
        .output()
        .expect("objdump runs");
    let mut out = BTreeMap::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let Some((addr, rest)) = l.split_once(" <") else {
            continue;
        };
        let Some(name) = rest.strip_suffix("@plt>:") else {
            continue;
        };
        if let Ok(a) = u64::from_str_radix(addr.trim(), 16) {
            out.insert(name.to_string(), a);
        }
    }
    out
}

fn has_section(bin: &Path, name: &str) -> bool {
    let o = Command::new("readelf")
        .args(["--section-headers", "--wide"])
        .arg(bin)
        .output()
        .expect("readelf runs");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .any(|w| w == name)
}

fn list(pattern: &str) -> (Vec<String>, String, bool) {
    let mut c = snaptap();
    c.arg("-l").arg(pattern);
    let o = run_with_timeout(c, 60);
    (
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
}

/// Traces `pltcalls` built with `opt` and `extra`: the arguments and return values
/// seen at the PLT equal what the fixture reports, every call fires (not only the
/// first, lazily bound one), `$$name` names the function and `pp()` is the entry's
/// address as objdump labels it.
fn check_plt(opt: &str, extra: &[&str]) {
    let bin = fixture("pltcalls", opt, extra);
    let b = bin.to_str().unwrap();
    let n = 5;
    let script = format!(
        r#"global hits, where
probe process("{b}").plt("malloc") {{ printf("truth malloc %d\n", register("rdi")) }}
probe process("{b}").plt("str*").return {{ if ($$name == "strlen") printf("truth strlen %d\n", register("rax")) }}
probe process("{b}").plt {{ hits[$$name]++; where[$$name] = pp() }}
probe end {{ foreach (k in hits) printf("hits %s %d %s\n", k, hits[k], where[k]) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{b} {n}"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 2 * n, "{stdout}");
    assert_lines(&truth_lines(&out), &want, &format!("plt {opt} {extra:?}"));
    let labels = objdump_plt_addrs(&bin);
    let mut seen = BTreeMap::new();
    for l in out.lines().filter(|l| l.starts_with("hits ")) {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w.len(), 4, "{l}");
        seen.insert(w[1].to_string(), (w[2].parse::<usize>().unwrap(), w[3]));
    }
    for name in ["malloc", "strlen", "puts", "free"] {
        let (count, pp) = seen
            .get(name)
            .unwrap_or_else(|| panic!("no hit of {name}:\n{out}"));
        assert_eq!(*count, n, "{name} hits\n{out}");
        let addr = labels
            .get(name)
            .unwrap_or_else(|| panic!("objdump has no {name}@plt"));
        assert_eq!(
            *pp,
            format!("process(\"{b}\").statement({addr:#x})"),
            "pp() of {name}"
        );
    }
}

#[test]
fn plt_every_call_o0() {
    check_plt("-O0", &[]);
}

#[test]
fn plt_every_call_o2() {
    check_plt("-O2", &[]);
}

#[test]
fn plt_every_call_ibt_plt_sec() {
    let extra = ["-fcf-protection=full", "-Wl,-z,ibtplt"];
    let bin = fixture("pltcalls", "-O2", &extra);
    assert!(has_section(&bin, ".plt.sec"), "the linker made no .plt.sec");
    check_plt("-O2", &extra);
}

#[test]
fn plt_every_call_bind_now() {
    check_plt("-O2", &["-Wl,-z,now"]);
}

#[test]
fn plt_every_call_no_pie() {
    check_plt("-O2", &["-no-pie"]);
}

/// `-l` lists one `.plt("NAME")` per jump slot, by name, and filters by pattern.
#[test]
fn plt_listing_matches_relocations() {
    for (opt, extra) in [
        ("-O0", &[][..]),
        ("-O2", &["-fcf-protection=full", "-Wl,-z,ibtplt"][..]),
    ] {
        let bin = fixture("pltcalls", opt, extra);
        let b = bin.to_str().unwrap();
        let names = jump_slot_names(&bin);
        assert!(
            names.contains("malloc") && names.contains("puts"),
            "{names:?}"
        );
        let want: Vec<String> = names
            .iter()
            .map(|n| format!("process(\"{b}\").plt(\"{n}\")"))
            .collect();
        let (got, err, ok) = list(&format!("process(\"{b}\").plt"));
        assert!(ok, "{err}");
        assert_lines(&got, &want, "plt listing");
        let want_s: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with('s'))
            .map(|n| format!("process(\"{b}\").plt(\"{n}\")"))
            .collect();
        let (got, err, ok) = list(&format!("process(\"{b}\").plt(\"s*\")"));
        assert!(ok, "{err}");
        assert_lines(&got, &want_s, "plt listing s*");
    }
}

/// A target variable at a PLT entry is stap's error naming `$$name`.
#[test]
fn plt_target_variable_is_an_error() {
    let bin = fixture("pltcalls", "-O0", &[]);
    let b = bin.to_str().unwrap();
    let (_out, _stdout, stderr, st) = trace(
        &format!(r#"probe process("{b}").plt("malloc") {{ println($size) }}"#),
        b,
    );
    assert!(!st.success());
    assert!(
        stderr.contains("unable to find plt variable '$size' (alternatives: $$name)"),
        "{stderr}"
    );
}

/// `.library("libdemo.so")` finds the library through the executable's run path;
/// its functions and its own PLT are probed there.
#[test]
fn library_function_and_plt() {
    let (exe, lib) = shared_lib_fixture("-O0");
    let e = exe.to_str().unwrap();
    let lib = std::fs::canonicalize(lib).unwrap();
    let l = lib.to_str().unwrap();
    let script = format!(
        r#"global prints
probe process("{e}").library("libdemo.so").function("lib_mix").return {{ printf("truth lib_mix %d %d = %d\n", @entry($a), @entry($b), $return) }}
probe process("{e}").library("libdemo.so").function("lib_mix") {{ if (pp() != "process(\"{l}\").function(\"lib_mix@{src}:4\")") printf("bad pp %s\n", pp()) }}
probe process("{e}").library("*demo*").plt("printf") {{ prints++ }}
probe end {{ printf("printf calls %d\n", prints) }}"#,
        src = fixtures_src().join("libdemo.c").display()
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{e} 6"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 6);
    assert!(!out.contains("bad pp"), "{out}");
    assert_lines(&truth_lines(&out), &want, "library");
    assert!(out.contains("printf calls 6\n"), "{out}");
    let (got, err, ok) = list(&format!(
        "process(\"{e}\").library(\"libdemo.so\").function(\"lib_*\")"
    ));
    assert!(ok, "{err}");
    assert_eq!(
        got,
        vec![format!(
            "process(\"{e}\").library(\"{l}\").function(\"lib_mix@{}:4\")",
            fixtures_src().join("libdemo.c").display()
        )]
    );
    // A library the program does not load is no match, as in stap.
    let (_, err, ok) = list(&format!(
        "process(\"{e}\").library(\"libm.so.6\").function(\"*\")"
    ));
    assert!(!ok && err.contains("no match for probe point"), "{err}");
}

/// `.exported` keeps the functions the symbol table exports: not the static one,
/// not the hidden one.
#[test]
fn exported_functions() {
    let bin = fixture("exports", "-O0", &[]);
    let b = bin.to_str().unwrap();
    let (got, err, ok) = list(&format!("process(\"{b}\").function(\"*\").exported"));
    assert!(ok, "{err}");
    let names: BTreeSet<String> = got
        .iter()
        .filter_map(|l| l.split("function(\"").nth(1))
        .filter_map(|s| s.split('@').next())
        .map(str::to_string)
        .collect();
    assert!(
        names.contains("exported_add") && names.contains("main"),
        "{got:?}"
    );
    assert!(
        !names.contains("static_twice") && !names.contains("hidden_three"),
        "{got:?}"
    );
    assert!(got.iter().all(|l| l.ends_with(").exported")), "{got:?}");
    let script = format!(
        r#"probe process("{b}").function("exported_*").exported {{ printf("truth exported_add %d\n", $x) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, b);
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 3);
    assert_lines(&truth_lines(&out), &want, "exported");
}

/// `.callee` is refused with a reason, not misread.
#[test]
fn callee_is_refused() {
    let bin = fixture("exports", "-O0", &[]);
    let (_, err, ok) = list(&format!(
        "process(\"{}\").function(\"main\").callee(\"exported_add\")",
        bin.display()
    ));
    assert!(!ok && err.contains(".callee"), "{err}");
}

fn check_threads(opt: &str) {
    let bin = fixture("threadtids", opt, &[]);
    let b = bin.to_str().unwrap();
    let script = format!(
        r#"probe process("{b}").thread.begin {{ printf("truth thread %d\n", tid()); if (pid() != target()) printf("bad pid %d\n", pid()) }}
probe process.thread.end {{ printf("end %d %s\n", tid(), pp()) }}
probe process.begin {{ printf("truth main %d\n", pid()) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{b} 5"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 6, "{stdout}");
    assert!(!out.contains("bad pid"), "{out}");
    assert_lines(&truth_lines(&out), &want, &format!("thread.begin {opt}"));
    // Every thread that began ends (the threads are joined one by one).
    let ends: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("end "))
        .map(|l| {
            let (tid, pp) = l.split_once(' ').unwrap();
            assert_eq!(pp, "process.thread.end");
            format!("truth thread {tid}")
        })
        .collect();
    assert_lines(&ends, &want[1..], &format!("thread.end {opt}"));
}

#[test]
fn thread_begin_end_o0() {
    check_threads("-O0");
}

#[test]
fn thread_begin_end_o2() {
    check_threads("-O2");
}

/// `-l` spells utrace-style points as written, as stap does.
#[test]
fn thread_listing() {
    let bin = fixture("threadtids", "-O0", &[]);
    let b = bin.to_str().unwrap();
    let (got, err, ok) = list(&format!("process(\"{b}\").thread.end"));
    assert!(ok, "{err}");
    assert_eq!(got, vec![format!("process(\"{b}\").thread.end")]);
    // stap's -L shows the syscall variables at every utrace-style point.
    let mut c = snaptap();
    c.arg("-L").arg(format!("process(\"{b}\").thread.begin"));
    let o = run_with_timeout(c, 60);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("process(\"{b}\").thread.begin $syscall:long $arg1:long $arg2:long $arg3:long $arg4:long $arg5:long $arg6:long\n")
    );
    let mut c = snaptap();
    c.args(["-l", "process.thread.begin", "-c", b]);
    let o = run_with_timeout(c, 60);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "process.thread.begin\n");
}

/// Attached with `-x` to a process whose threads already run: each of them begins
/// (for the session) at the attach, and each ends when the program lets it go.
#[test]
fn thread_begin_end_when_attaching() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let bin = fixture("threadhold", "-O0", &[]);
    let n = 3;
    let mut target = Command::new(&bin)
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(target.stdout.take().unwrap());
    let mut want = Vec::new();
    loop {
        let mut l = String::new();
        assert!(reader.read_line(&mut l).unwrap() > 0, "fixture ended early");
        if l.trim() == "ready" {
            break;
        }
        want.push(l.trim().to_string());
    }
    assert_eq!(want.len(), n + 1, "{want:?}");
    let out = tempfile("threads-attach");
    let mut c = snaptap();
    c.arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(
            r#"probe process.thread.begin { printf("truth thread %d\n", tid()); if (pid() != target()) printf("bad pid\n") }
probe process.thread.end { printf("end %d\n", tid()) }
probe process.begin { printf("truth main %d\n", pid()) }"#,
        )
        .arg("-x")
        .arg(target.id().to_string());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let tracer = c.spawn().unwrap();
    // Let the program go once the session has reported every thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if truth_lines(&text).len() > n {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no thread.begin: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(target.stdin.take());
    let o = wait_output(tracer, 60);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(target.wait().unwrap().success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("bad pid"), "{text}");
    let mut got = truth_lines(&text);
    got.sort();
    want.sort();
    assert_lines(&got, &want, "thread.begin at attach");
    let mut ends: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("end "))
        .map(|t| format!("truth thread {t}"))
        .collect();
    ends.sort();
    let threads: Vec<String> = want
        .iter()
        .filter(|l| l.starts_with("truth thread"))
        .cloned()
        .collect();
    assert_lines(&ends, &threads, "thread.end after attach");
}
