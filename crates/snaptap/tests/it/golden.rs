//! The stap golden corpus: every script in `tests/stap-golden/` runs through snaptap and
//! its output is compared byte for byte with what a real SystemTap printed for it.
//!
//! `scripts/stap-golden.sh` regenerates the golden files with stap (CI has no stap). The
//! first line of each script says how its golden was made: `run` (stap's BPF runtime
//! traced `fixtures/golden.c`), `p1` (`stap -p1`), `p2` (`stap -p2`, semantic errors), or
//! `derived` (written from stap's kernel runtime where the BPF runtime lacks the
//! feature; the script's comments say from where).
//!
//! Where stap's output depends on its runtime rather than on the language, snaptap follows
//! the kernel runtime and the difference is listed in [`KNOWN`] with the reason.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A line stap's BPF runtime prints differently from its kernel runtime.
struct Known {
    /// Script name (without `.stp`).
    script: &'static str,
    /// Line number (1-based) in the golden `.out` file.
    line: usize,
    /// The line in the golden file (what stapbpf printed).
    stap: &'static str,
    /// The line snaptap prints (what the kernel runtime prints).
    snaptap: &'static str,
    /// Why they differ.
    why: &'static str,
}

const BPF_PRINTF: &str =
    "stapbpf formats printf in user space with 32-bit integers (bpf_trace_printk's \
     limits) and C's `#` rule; the kernel runtime (runtime/vsprintf.c, number()) uses 64 \
     bits and always prefixes `0x`/`0` with `#`";

const KNOWN: &[Known] = &[
    Known {
        script: "printf_int",
        line: 13,
        stap: "[-7|-7|4294967289|   -7|-7    |-00007|-7|-7|-00000007|]",
        snaptap: "[-7|-7|18446744073709551609|   -7|-7    |-00007|-7|-7|-00000007|]",
        why: BPF_PRINTF,
    },
    Known {
        script: "printf_int",
        line: 14,
        stap: "[fffffff9|FFFFFFF9|37777777771|0xfffffff9|0XFFFFFFF9|037777777771|fffffff9|fffffff9|fffffff9|0xfffffff9|fffffff9|]",
        snaptap: "[fffffffffffffff9|FFFFFFFFFFFFFFF9|1777777777777777777771|0xfffffffffffffff9|0XFFFFFFFFFFFFFFF9|01777777777777777777771|fffffffffffffff9|fffffffffffffff9|fffffffffffffff9|0xfffffffffffffff9|fffffffffffffff9|]",
        why: BPF_PRINTF,
    },
    Known {
        script: "printf_int",
        line: 15,
        stap: "[0|0|0|0|0|0|]",
        snaptap: "[0|0|0|0x0|00|0|]",
        why: BPF_PRINTF,
    },
    Known {
        script: "printf_int",
        line: 16,
        stap: "[-1|0|ffffffff|4294967295|]",
        snaptap: "[9223372036854775807|-9223372036854775808|ffffffffffffffff|18446744073709551615|]",
        why: BPF_PRINTF,
    },
    Known {
        script: "printf_str",
        line: 5,
        stap: "[(nil)|0x1000|]",
        snaptap: "[0x0|0x1000|]",
        why: "stapbpf hands %p to glibc's printf, which spells a null pointer (nil); in the \
              kernel runtime %p is %#x (runtime/vsprintf.c: \"Since stap 1.3, %p == %#x\")",
    },
    Known {
        script: "print_family",
        line: 17,
        stap: "",
        snaptap: "10-z",
        why: "stapbpf 4.8 returns an empty string from sprintf(\"%d-%s\", ...) in an end probe \
              (its user-space interpreter); sprint and sprintln work there, and the kernel \
              runtime formats sprintf like printf",
    },
];

/// Lines with which stap closes a failed pass. snaptap's driver prints diagnostics one by
/// one and closes no pass yet; `script_syntax::render_failure` produces these lines and
/// script-syntax's own test checks them against the same golden files.
fn is_closing_line(l: &str) -> bool {
    (l.ends_with(" parse error.") || l.ends_with(" parse errors."))
        || (l.starts_with("Pass ") && l.contains(" failed.  [man error::pass"))
        || l.starts_with("Number of similar ")
        || l == "Rerun with -v to see them."
}

fn without_closing(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !is_closing_line(l.trim_end_matches('\n')))
        .collect()
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stap-golden")
}

fn read_or_empty(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The golden text with the known differences of `script` applied; fails when a known
/// line is no longer in the golden file (the entry is stale).
fn expected(script: &str, golden: &str) -> String {
    let mut lines: Vec<String> = golden.split('\n').map(str::to_string).collect();
    for k in KNOWN.iter().filter(|k| k.script == script) {
        let at = k.line - 1;
        assert_eq!(
            lines.get(at).map(String::as_str),
            Some(k.stap),
            "{script}:{}: known difference no longer in the golden file ({})",
            k.line,
            k.why
        );
        lines[at] = k.snaptap.to_string();
    }
    lines.join("\n")
}

fn mode_of(text: &str) -> &str {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# golden:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("")
}

fn diff(what: &str, got: &str, want: &str) -> Option<String> {
    if got == want {
        return None;
    }
    let mut m = format!("--- {what}: stap\n");
    for (i, l) in want.lines().enumerate() {
        let g = got.lines().nth(i);
        let mark = if g == Some(l) { ' ' } else { '!' };
        m += &format!("{mark}{l:?}\n");
    }
    m += "--- snaptap\n";
    for l in got.lines() {
        m += &format!(" {l:?}\n");
    }
    Some(m)
}

#[test]
fn snaptap_prints_what_stap_prints() {
    let exe = fixture("golden", "-O0", &[]);
    let dir = corpus();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".stp").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "the corpus is missing: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let file = format!("{name}.stp");
        let text = std::fs::read_to_string(dir.join(&file)).unwrap();
        let mut c = snaptap();
        c.current_dir(&dir);
        let mode = mode_of(&text);
        match mode {
            "run" | "derived" | "p2" => {
                c.arg(&file).arg("-c").arg(&exe);
            }
            "p1" => {
                c.arg("-p1").arg(&file);
            }
            other => panic!("{file}: unknown golden mode {other:?}"),
        }
        let o = run_with_timeout(c, 60);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let want_out = expected(name, &read_or_empty(&dir.join(format!("{name}.out"))));
        let want_err = read_or_empty(&dir.join(format!("{name}.err")));
        if let Some(d) = diff(&format!("{name} stdout"), &out, &want_out) {
            failures.push(d);
        }
        if let Some(d) = diff(
            &format!("{name} stderr"),
            &without_closing(&err),
            &without_closing(&want_err),
        ) {
            failures.push(d);
        }
        let failed = !want_err.is_empty() && want_out.is_empty();
        if failed == o.status.success() {
            failures.push(format!(
                "{name}: exit status {:?}, stap {}",
                o.status.code(),
                if failed { "failed" } else { "succeeded" }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s) from stap:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn known_differences_are_explained() {
    for k in KNOWN {
        assert!(k.why.len() > 20, "{}: {}", k.script, k.stap);
        assert_ne!(k.stap, k.snaptap);
    }
}
