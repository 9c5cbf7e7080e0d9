//! The stap golden corpus: every script in `tests/stap-golden/` runs through snaptap and
//! its output is compared byte for byte with what a real SystemTap printed for it.
//!
//! `scripts/stap-golden.sh` regenerates the golden files with stap (CI has no stap). The
//! first line of each script says how its golden was made: `run` (stap's BPF runtime
//! traced `fixtures/golden.c`), `p1` (`stap -p1`), `p2` (`stap -p2`, semantic errors),
//! `p2out` (`stap -p2`'s listing, compared with `snaptap -p2`'s),
//! `list -l`/`list -L` (`stap -l/-L POINT`), or `derived` (written from stap's kernel
//! runtime where the BPF runtime lacks the feature; the script's comments say from where).
//!
//! Where stap's output depends on its runtime rather than on the language, snaptap follows
//! the kernel runtime and the difference is listed in [`KNOWN`] with the reason; what
//! other crates still print differently is in [`PENDING`]. The lines closing a failed
//! pass (`1 parse error.`, `Pass 2: analysis failed...`) are compared too.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A script whose output under stap's BPF runtime differs from what stap's kernel
/// runtime prints, or whose output depends on the runtime stap assumes. snaptap follows
/// the kernel runtime (or, for `runtime` itself, the dyninst one): `NAME.kernel.out`
/// (and `NAME.kernel.err`) hold that output, derived from stap's golden file by the
/// change `why` explains.
struct Known {
    /// Script name (without `.stp`).
    script: &'static str,
    /// Why the runtimes differ, and where the kernel runtime's behaviour is written.
    why: &'static str,
}

const KNOWN: &[Known] = &[
    Known {
        script: "printf_int",
        why: "stapbpf formats printf in user space with 32-bit integers (bpf_trace_printk's \
              limits) and C's `#` rule; the kernel runtime (runtime/vsprintf.c, number()) \
              uses 64 bits and always prefixes `0x`/`0` under `#`, even for 0",
    },
    Known {
        script: "printf_str",
        why: "stapbpf hands %p to glibc's printf, which spells a null pointer (nil); in the \
              kernel runtime %p is %#x (runtime/vsprintf.c: \"Since stap 1.3, %p == %#x\")",
    },
    Known {
        script: "print_family",
        why: "stapbpf 4.8 returns an empty string from sprintf(\"%d-%s\", ...) in an end \
              probe (its user-space interpreter) while sprint and sprintln work there; the \
              kernel runtime formats sprintf like printf",
    },
    Known {
        script: "printf_binary",
        why: "stapbpf hands %b to glibc's printf, which prints binary digits; the kernel \
              runtime writes the value's bytes, 1, 2, 4 or 8 of them in native order \
              (runtime/vsprintf.c, _stp_vsprint_binary)",
    },
    Known {
        script: "p1_preproc",
        why: "`runtime` in a preprocessor condition: stap defaults to the kernel runtime; \
              snaptap runs handlers in user space and answers as the dyninst runtime (and \
              \"snaptap\"), so scripts take their user-space branches",
    },
    Known {
        script: "arith",
        why: "BPF divides unsigned and stapbpf prints 32 bits; the kernel runtime divides \
              64-bit signed values truncating toward zero (_stp_div64/_stp_mod64) and \
              prints all 64 bits: -12345 / 7 is -1763, -12345 % 7 is -4",
    },
    Known {
        script: "string_keys",
        why: "stapbpf 4.8's end-probe interpreter compares a string variable with a literal \
              wrongly (`t = \"ab\"; t == \"ab\"` is 0 there, `\"ab\" == \"ab\"` is 1); the \
              kernel runtime compares with strcmp",
    },
    Known {
        script: "exit_in_probe",
        why: "stapbpf returns from the handler at exit(); in the kernel runtime exit() only \
              requests the shutdown (tapset/logging.stp: _stp_exit) and the running handler \
              completes, as the exit() documentation says",
    },
    Known {
        script: "warn_log",
        why: "stapbpf prints warn()'s message on stdout; the kernel runtime sends it through \
              _stp_warn to staprun, which writes it to stderr",
    },
    Known {
        script: "error_fn",
        why: "stapbpf prints a coloured `ERROR: msg` on stdout; the kernel runtime reports \
              `ERROR: msg near identifier 'error' at FILE:L:C` (the probe's last statement) \
              and the error count on stderr, then staprun's exit status",
    },
];

/// Lines of stap's that snaptap has no reason to print: staprun's or stapbpf's exit
/// status (snaptap runs no helper process). The lines closing a failed pass
/// (`1 parse error.`, `Pass 2: analysis failed.  [man error::pass2]`, the count of
/// similar messages) are compared like every other line.
fn is_closing_line(l: &str) -> bool {
    l.starts_with("WARNING: /usr/bin/stap") && l.contains(" exited with status: ")
}

fn without_closing(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !is_closing_line(l.trim_end_matches('\n')))
        .collect()
}

/// stap names a semantic error's file only when it differs from the previous location's
/// (`at :3:31`); `script_syntax::render_failure` does so, but snaptap's driver renders
/// each diagnostic on its own. Both sides get the name back before comparing.
/// `text` with the fixture's directories left out of paths, as
/// `scripts/stap-golden.sh` spells them (`golden`, `fixtures/golden.c`).
fn golden_paths(text: &str, exe: &Path) -> String {
    let exe_dir = format!("{}/", exe.parent().unwrap().display());
    let fixtures = format!(
        "{}/",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .display()
    );
    text.replace(&exe_dir, "").replace(&fixtures, "")
}

fn with_file_names(text: &str, file: &str) -> String {
    text.replace(" at :", &format!(" at {file}:"))
}

/// Goldens whose difference lies outside this corpus's crates (the planner's messages)
/// or in stap's installation (the names its tapset library offers as similar): each
/// still differs, and is reported instead of failing; when one matches, remove it here.
const PENDING: &[(&str, &str)] = &[(
    "err_unknown_function",
    "stap offers similar names from its whole tapset library (HZ, cpu: kernel \
         tapsets); snaptap from the functions it has",
)];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stap-golden")
}

fn read_or_empty(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// What snaptap must print on `stream` (`out` or `err`) for `name`: the kernel runtime's
/// output where a [`KNOWN`] entry says the BPF runtime differs, else stap's golden file.
fn expected(dir: &Path, name: &str, stream: &str) -> String {
    let stap = read_or_empty(&dir.join(format!("{name}.{stream}")));
    let kernel = dir.join(format!("{name}.kernel.{stream}"));
    let known = KNOWN.iter().any(|k| k.script == name);
    if kernel.exists() {
        assert!(known, "{name}: {} without a KNOWN entry", kernel.display());
        let text = read_or_empty(&kernel);
        assert_ne!(
            text, stap,
            "{name}.kernel.{stream} is stap's output: remove it"
        );
        return text;
    }
    stap
}

/// `snaptap -p2 FILE -c EXE`, with the fixture's directories left out of paths as the
/// golden files have them.
fn p2_listing(dir: &Path, file: &str, exe: &Path) -> String {
    let mut c = snaptap();
    c.current_dir(dir).arg("-p2").arg(file).arg("-c").arg(exe);
    let o = run_with_timeout(c, 60);
    assert!(
        o.status.success(),
        "{file}: snaptap -p2 failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    golden_paths(&String::from_utf8_lossy(&o.stdout), exe)
}

/// stap's `-p2` listing without the functions the script does not define: stap also
/// lists the tapset functions it calls (`pid:long ()`) and the accessors it generates for
/// target variables (`__private_..._dwarf_tvar_get_x_0`), which snaptap does not have.
fn without_foreign_functions(listing: &str, script: &str) -> String {
    let mut out = String::new();
    let mut in_functions = false;
    let mut skipping = false;
    for l in listing.split_inclusive('\n') {
        if l.starts_with('#') {
            in_functions = l == "# functions\n";
            skipping = false;
        } else if in_functions && !l.starts_with(' ') {
            let name = l.split(':').next().unwrap_or("");
            skipping = !script.contains(&format!("function {name}:"))
                && !script.contains(&format!("function {name}("));
        }
        if !skipping {
            out.push_str(l);
        }
    }
    out
}

/// The whole mode of a script's `# golden:` line (`run`, `list -L`...).
fn mode_line(text: &str) -> &str {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# golden:"))
        .map_or("", str::trim)
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
        let mode = mode_line(&text);
        if let Some(flag) = mode.strip_prefix("list") {
            // `# golden: list -l` / `list -L`, line 2 `# point: POINT` (fixture `golden`).
            let flag = flag.trim();
            let point = text
                .lines()
                .nth(1)
                .and_then(|l| l.strip_prefix("# point:"))
                .unwrap_or("")
                .trim()
                .replace("\"golden\"", &format!("{:?}", exe.display().to_string()));
            let mut c = snaptap();
            c.arg(flag).arg(&point);
            let o = run_with_timeout(c, 60);
            let got = golden_paths(&String::from_utf8_lossy(&o.stdout), &exe);
            let d = diff(
                &format!("{name} {flag}"),
                &got,
                &expected(&dir, name, "out"),
            );
            match (PENDING.iter().find(|(n, _)| n == name), d) {
                (Some((_, why)), Some(d)) => eprintln!("pending ({why}):\n{d}"),
                (Some(_), None) => {
                    failures.push(format!("{name} matches stap now: remove it from PENDING"))
                }
                (None, Some(d)) => failures.push(d),
                (None, None) => {}
            }
            continue;
        }
        if mode == "p2out" {
            let got = p2_listing(&dir, &file, &exe);
            let want = without_foreign_functions(&expected(&dir, name, "out"), &text);
            if let Some(d) = diff(&format!("{name} -p2"), &got, &want) {
                failures.push(d);
            }
            continue;
        }
        let mut c = snaptap();
        c.current_dir(&dir);
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
        let err = golden_paths(&String::from_utf8_lossy(&o.stderr), &exe);
        let want_out = expected(&dir, name, "out");
        let want_err = expected(&dir, name, "err");
        if let Some(d) = diff(&format!("{name} stdout"), &out, &want_out) {
            failures.push(d);
        }
        let stderr_diff = diff(
            &format!("{name} stderr"),
            &with_file_names(&without_closing(&err), &file),
            &with_file_names(&without_closing(&want_err), &file),
        );
        if let Some((_, why)) = PENDING.iter().find(|(n, _)| n == name) {
            match stderr_diff {
                Some(d) => eprintln!("pending ({why}):\n{d}"),
                None => failures.push(format!("{name} matches stap now: remove it from PENDING")),
            }
            continue;
        }
        if let Some(d) = stderr_diff {
            failures.push(d);
        }
        // stap closes with "Pass N: ... failed." exactly when it exits non-zero.
        let failed = want_err
            .lines()
            .any(|l| l.starts_with("Pass ") && l.contains(" failed.  [man error::pass"));
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
    let dir = corpus();
    for k in KNOWN {
        assert!(k.why.len() > 40, "{}: say why", k.script);
        assert!(
            dir.join(format!("{}.kernel.out", k.script)).exists()
                || dir.join(format!("{}.kernel.err", k.script)).exists(),
            "{}: no kernel-runtime output",
            k.script
        );
    }
}
