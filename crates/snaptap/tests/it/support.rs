//! Test support: compile fixtures once per test run, run snaptap with a watchdog.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Directory holding the C sources of the fixtures.
pub fn fixtures_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn build_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snaptap-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `name.c` with `gcc -g OPT` (plus `extra`) once per test process and returns
/// the executable's path.
pub fn fixture(name: &str, opt: &str, extra: &[&str]) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{name}{opt}{}", extra.join(""));
    let map = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let dir = build_root().join(format!(
        "{name}{opt}{}",
        extra.join("").replace(['/', ' '], "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let src = fixtures_src().join(format!("{name}.c"));
    let st = Command::new("gcc")
        .arg("-g")
        .arg(opt)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(extra)
        .arg("-lpthread")
        .status()
        .expect("gcc runs");
    assert!(st.success(), "gcc failed for {name} {opt}");
    map.insert(key, out.clone());
    out
}

/// Builds `libdemo.so` and `uselib` linked to it (rpath set), returns (exe, lib).
pub fn shared_lib_fixture(opt: &str) -> (PathBuf, PathBuf) {
    let dir = build_root().join(format!("uselib{opt}"));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libdemo.so");
    let exe = dir.join("uselib");
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !exe.exists() {
        let st = Command::new("gcc")
            .args(["-g", opt, "-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(fixtures_src().join("libdemo.c"))
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("gcc")
            .args(["-g", opt, "-o"])
            .arg(&exe)
            .arg(fixtures_src().join("uselib.c"))
            .arg(format!("-L{}", dir.display()))
            .arg("-ldemo")
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .status()
            .unwrap();
        assert!(st.success());
    }
    (exe, lib)
}

/// A command running the snaptap binary under test.
pub fn snaptap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_snaptap"));
    c.stdin(Stdio::null());
    c
}

/// Runs a command to completion, killing it after `secs` seconds (a hang is a failure).
pub fn run_with_timeout(mut cmd: Command, secs: u64) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_output(child, secs)
}

/// Waits for a spawned child (stdout/stderr piped), with a deadline.
pub fn wait_output(mut child: Child, secs: u64) -> Output {
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command timed out after {secs}s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// Lines starting with `truth` in `text`, in order.
pub fn truth_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("truth"))
        .map(str::to_string)
        .collect()
}

/// Runs `snaptap -o OUT -e SCRIPT -c CMD`; returns (script output, target+snaptap stdout, stderr, status).
pub fn trace(script: &str, cmd: &str) -> (String, String, String, std::process::ExitStatus) {
    let out = tempfile("out");
    let mut c = snaptap();
    c.arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(script)
        .arg("-c")
        .arg(cmd);
    let o = run_with_timeout(c, 120);
    let script_out = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    (
        script_out,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status,
    )
}

/// A fresh path in the test temp dir.
pub fn tempfile(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}-{n}", std::process::id()))
}

/// Asserts two line lists are equal, printing both on failure.
pub fn assert_lines(got: &[String], want: &[String], ctx: &str) {
    if got != want {
        let mut msg = format!(
            "{ctx}: snaptap's lines differ from the fixture's\n--- snaptap ({})\n",
            got.len()
        );
        for l in got.iter().take(40) {
            msg += &format!("{l}\n");
        }
        msg += &format!("--- fixture ({})\n", want.len());
        for l in want.iter().take(40) {
            msg += &format!("{l}\n");
        }
        panic!("{msg}");
    }
}
