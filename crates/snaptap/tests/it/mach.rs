//! The real GNU Mach kernel under QEMU (TCG), traced through its gdbstub.
//!
//! The machine is built by `mach/build.sh` from Debian's `gnumach-image-1.8-486-dbg`;
//! its workload prints its own ground truth (`truth ...`) on the serial console, which
//! snaptap's output is compared with. `SNAPTAP_SKIP_VM_TESTS=1` skips these locally.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::*;

fn skip() -> bool {
    if std::env::var_os("SNAPTAP_SKIP_VM_TESTS").is_some() {
        eprintln!("skipped: SNAPTAP_SKIP_VM_TESTS is set");
        return true;
    }
    false
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the test machine once per test run.
fn machine() -> PathBuf {
    static DIR: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let m = DIR.get_or_init(|| Mutex::new(None));
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = g.as_ref() {
        return d.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mach");
    let st = Command::new("bash")
        .arg(repo().join("mach/build.sh"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "mach/build.sh failed (are gnumach-image-1.8-486-dbg and gcc-multilib installed?)"
    );
    *g = Some(dir.clone());
    dir
}

fn qemu_cmd(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("bash")
        .arg(repo().join("mach/qemu-cmd.sh"))
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// (id, send_size) of every `truth msg` line in `text`.
fn msgs(text: &str, prefix: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix(prefix))
        .map(|rest| {
            let field = |k: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| v.parse().ok())
                    .unwrap()
            };
            (field("id="), field("send_size="))
        })
        .collect()
}

#[test]
fn mach_msg_trap_values_match_the_workload_plugin() {
    msg_trap_values(None);
}

#[test]
fn mach_msg_trap_values_match_the_workload_gdbstub() {
    msg_trap_values(Some("gdb"));
}

/// `--vm` uses the QEMU plugin when it can (QEMU 10, which CI installs), the gdbstub
/// when asked with SNAPTAP_VM_BACKEND=gdb; both must give the workload's values.
fn msg_trap_values(backend: Option<&str>) {
    if skip() {
        return;
    }
    let exe_dir = Path::new(env!("CARGO_BIN_EXE_snaptap"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        backend.is_some() || exe_dir.join("libqemu_plugin.so").exists(),
        "the QEMU plugin is not built next to snaptap: run `cargo build --workspace` first (scripts/test.sh does)"
    );
    let script = r#"
probe mach.msg.trap { if (is_send && msgh_id >= 1000 && msgh_id < 1100) printf("snap msg id=%d send_size=%d task=%s\n", msgh_id, send_size, @mach_task_name) }
probe mach.thread.set_state { printf("snap set_state eip=%#x esp=%#x\n", eip, uesp) }
probe mach.print { if (substr(message, 0, 10) == "truth done") exit() }
"#;
    let (console, stderr, text) = run_vm("rounds=3 report=0 idle=1", script, backend, true);
    let dir = machine();
    let used_plugin = stderr.contains("TCG plugin");
    assert_eq!(used_plugin, backend.is_none(), "backend choice: {stderr}");
    let want = msgs(&console, "truth msg ");
    assert_eq!(
        want.len(),
        18,
        "the workload sends 6 messages per round: {console}"
    );
    assert_eq!(
        msgs(&text, "snap msg "),
        want,
        "snaptap:\n{text}\nconsole:\n{console}"
    );
    // The kernel names a boot task after its module's path, in a char[32].
    let path = dir.join("workload").display().to_string();
    let task = &path[..path.len().min(31)];
    assert!(
        text.lines()
            .filter(|l| l.starts_with("snap msg"))
            .all(|l| l.ends_with(&format!("task={task}"))),
        "task_name: {text}"
    );
    // thread_set_state: eip and esp as the workload reports them.
    let want_state: Vec<String> = console
        .lines()
        .filter_map(|l| l.strip_prefix("truth thread_set_state "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("snap set_state {} {}", w[1], w[2])
        })
        .collect();
    let got_state: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("snap set_state"))
        .map(str::to_string)
        .collect();
    assert_eq!(want_state.len(), 3);
    assert_eq!(got_state, want_state);
}

/// The tapset's `task_name()` and `thread_id()` are script functions reading
/// `@var(...)`: the planner captures their target expressions at the sites of the
/// probes calling them, and the runtime evaluates them with that record.
#[test]
fn mach_tapset_functions_read_the_current_task() {
    if skip() {
        return;
    }
    let script = r#"
probe mach.msg.trap { if (is_send && msgh_id >= 1000 && msgh_id < 1100) printf("snap msg id=%d send_size=%d same=%d task=%s\n", msgh_id, send_size, thread_id() == @var("active_threads")[0], task_name()) }
probe mach.print { if (substr(message, 0, 10) == "truth done") exit() }
"#;
    let (console, _, text) = run_vm("rounds=1 report=0 idle=1", script, None, false);
    let dir = machine();
    let want = msgs(&console, "truth msg ");
    assert_eq!(want.len(), 6, "the workload sends 6 messages: {console}");
    assert_eq!(
        msgs(&text, "snap msg "),
        want,
        "snaptap:\n{text}\nconsole:\n{console}"
    );
    // The kernel names a boot task after its module's path, in a char[32].
    let path = dir.join("workload").display().to_string();
    let task = &path[..path.len().min(31)];
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("snap msg")).collect();
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(&format!("same=1 task={task}"))),
        "task_name/thread_id: {text}"
    );
}

/// Runs `script` on the Mach workload started with `args` (`--vm`, the plugin unless
/// `backend` says `gdb`), with `-v` when `verbose`; returns the console, snaptap's
/// stderr and its output file, after checking that it succeeded.
fn run_vm(
    args: &str,
    script: &str,
    backend: Option<&str>,
    verbose: bool,
) -> (String, String, String) {
    let dir = machine();
    let vm = qemu_cmd(&dir, &["--args", args]);
    let out = tempfile("mach");
    let mut c = snaptap();
    if verbose {
        c.arg("-v");
    }
    c.arg("--kernel")
        .arg(dir.join("gnumach.dbg"))
        .arg("--vm")
        .arg(&vm)
        .arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(script);
    if let Some(b) = backend {
        c.env("SNAPTAP_VM_BACKEND", b);
    }
    let o = run_with_timeout(c, 240);
    let console = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "snaptap failed: {stderr}\n{console}");
    let text = std::fs::read_to_string(&out).unwrap();
    (console, stderr, text)
}

/// Reads the console of a VM started by the test, line by line, on a thread.
fn console_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let so = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(so).lines() {
            let Ok(l) = l else { break };
            if tx.send(l.replace('\r', "")).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(
    rx: &mpsc::Receiver<String>,
    pred: impl Fn(&str) -> bool,
    secs: u64,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            if pred(&l) {
                return Some(l);
            }
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn interrupted_trace_leaves_vm_running(sig: &str) {
    if skip() {
        return;
    }
    let dir = machine();
    let port = free_port();
    let vm = qemu_cmd(
        &dir,
        &[
            "--gdb",
            &port.to_string(),
            "--args",
            "rounds=0 report=20000",
        ],
    );
    let argv = shell_words(&vm);
    let mut qemu = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.0.to_string())
                .status();
        }
    }
    let _guard = Kill(qemu.id());
    let rx = console_lines(&mut qemu);
    assert!(
        wait_line(&rx, |l| l.starts_with("bench count="), 60).is_some(),
        "the workload never reached its bench loop"
    );

    let out = tempfile("mach-sig");
    let mut c = snaptap();
    c.arg("--kernel")
        .arg(dir.join("gnumach.dbg"))
        .arg("--gdb")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-o")
        .arg(&out);
    c.arg("-e").arg(r#"global n probe kernel.function("mach_msg_trap") { n++; if (n % 10 == 0) printf("hits %d\n", n) } probe end { printf("end %d\n", n) }"#);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let tracer = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("hits 20")
    {
        assert!(Instant::now() < deadline, "no hits through the gdbstub");
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(tracer.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let o = wait_output(tracer, 60);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("end ")),
        "end probe after {sig}: {text}"
    );
    // With a breakpoint left behind, QEMU would stop the machine at its next hit (no
    // client to resume it): the bench loop would go silent. It must run on, at speed.
    while rx.try_recv().is_ok() {}
    let counts: Vec<u64> = (0..3)
        .map(|_| {
            let l = wait_line(&rx, |l| l.starts_with("bench count="), 60)
                .expect("the VM stopped running after snaptap detached");
            l.trim_start_matches("bench count=").trim().parse().unwrap()
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[1] > w[0]), "{counts:?}");
}

fn shell_words(s: &str) -> Vec<String> {
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("for a in {s}; do printf '%s\\0' \"$a\"; done"))
        .output()
        .unwrap();
    String::from_utf8(o.stdout)
        .unwrap()
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn sigint_detaches_from_the_vm() {
    interrupted_trace_leaves_vm_running("INT");
}

#[test]
fn sigterm_detaches_from_the_vm() {
    interrupted_trace_leaves_vm_running("TERM");
}

/// Starts the test machine with snaptap's plugin loaded idle (`--vm-plugin-args`), its
/// control file in a fresh path; returns QEMU, a guard that kills it, its console and
/// the control file.
fn idle_plugin_vm(
    dir: &Path,
    args: &str,
) -> (
    std::process::Child,
    KillOnDrop,
    mpsc::Receiver<String>,
    PathBuf,
    Vec<String>,
) {
    let control = PathBuf::from(format!(
        "/dev/shm/snaptap-it-{}-{}",
        std::process::id(),
        tempfile("vm").file_name().unwrap().to_string_lossy()
    ));
    let o = snaptap()
        .arg(format!("--vm-plugin-args={}", control.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plugin: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(plugin.len(), 2, "{plugin:?}");
    assert_eq!(plugin[0], "-plugin");
    assert!(plugin[1].ends_with(&format!(",control={}", control.display())));
    let vm = qemu_cmd(dir, &["--args", args]);
    let argv = shell_words(&vm);
    let mut qemu = Command::new(&argv[0])
        .args(&argv[1..])
        .args(&plugin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(qemu.id(), control.clone());
    let rx = console_lines(&mut qemu);
    (qemu, guard, rx, control, plugin)
}

/// Kills QEMU and removes its control file (SIGKILL gives the plugin no chance to).
struct KillOnDrop(u32, PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.0.to_string())
            .status();
        let _ = std::fs::remove_file(&self.1);
    }
}

fn attach(dir: &Path, control: &Path, out: &Path, script: &str) -> Command {
    let mut c = snaptap();
    c.arg("-v")
        .arg("--kernel")
        .arg(dir.join("gnumach.dbg"))
        .arg("--vm-attach")
        .arg(control)
        .arg("-o")
        .arg(out)
        .arg("-e")
        .arg(script);
    c
}

/// One running VM, three sessions: the first attaches while the workload waits and
/// sees every message of its rounds with the workload's values, ending with exit();
/// the second attaches to the bench loop and ends with SIGINT; meanwhile a third is
/// refused; after each session the VM runs on.
#[test]
fn attach_detach_and_reattach_to_one_running_vm() {
    if skip() {
        return;
    }
    let dir = machine();
    let (mut qemu, _guard, rx, control, plugin) =
        idle_plugin_vm(&dir, "rounds=2 wait=4000 report=20000");
    let mut console = Vec::new();
    let wait = |rx: &mpsc::Receiver<String>, console: &mut Vec<String>, pat: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                console.push(l.clone());
                if l.contains(pat) {
                    return;
                }
            }
        }
        panic!("the console never showed {pat}: {console:?}");
    };
    wait(&rx, &mut console, "truth wait ms=");
    assert!(
        control.exists(),
        "the plugin did not create {}",
        control.display()
    );
    // A second QEMU cannot take the control file of a running one.
    let argv = shell_words(&qemu_cmd(&dir, &["--args", "rounds=0"]));
    let mut second = Command::new(&argv[0]);
    second.args(&argv[1..]).args(&plugin).stdin(Stdio::null());
    let o = run_with_timeout(second, 60);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("control file of a running QEMU"),
        "{err}"
    );

    // Session 1: exit() at the workload's last truth line.
    let out1 = tempfile("attach1");
    let script = r#"
probe mach.msg.trap { if (is_send && msgh_id >= 1000 && msgh_id < 1100) printf("snap msg id=%d send_size=%d cpu=%d exec=%s\n", msgh_id, send_size, cpu(), execname()) }
probe mach.print { if (substr(message, 0, 10) == "truth done") exit() }
"#;
    let o = run_with_timeout(attach(&dir, &control, &out1, script), 120);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "session 1: {stderr}");
    assert!(stderr.contains("attached to the VM"), "{stderr}");
    wait(&rx, &mut console, "truth done");
    let text = std::fs::read_to_string(&out1).unwrap();
    let want = msgs(&console.join("\n"), "truth msg ");
    assert_eq!(want.len(), 12, "{console:?}");
    assert_eq!(msgs(&text, "snap msg "), want, "session 1:\n{text}");
    // cpu() is the vCPU index (one vCPU here); execname() the current task's name,
    // which the kernel takes from the boot module's path (a char[32]).
    let path = dir.join("workload").display().to_string();
    let task = &path[..path.len().min(31)];
    assert!(
        text.lines()
            .all(|l| l.ends_with(&format!(" cpu=0 exec={task}"))),
        "{text}"
    );

    // The VM runs on, untraced, into its bench loop.
    wait(&rx, &mut console, "bench count=");
    wait(&rx, &mut console, "bench count=");

    // Session 2: the bench loop's messages, until SIGINT.
    let out2 = tempfile("attach2");
    let script = r#"
global n, bad
probe mach.msg.trap { n++; if (msgh_id != 999 || send_size != 32 || option != 3) bad++; if (n % 1000 == 0) printf("hits %d\n", n) }
probe end { printf("end n=%d bad=%d\n", n, bad) }
"#;
    let mut c = attach(&dir, &control, &out2, script);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let tracer = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&out2)
        .unwrap_or_default()
        .contains("hits 3000")
    {
        assert!(Instant::now() < deadline, "no hits in session 2");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A third session cannot attach meanwhile.
    let out3 = tempfile("attach3");
    let o3 = run_with_timeout(
        attach(&dir, &control, &out3, "probe mach.msg.trap { exit() }"),
        60,
    );
    let err3 = String::from_utf8_lossy(&o3.stderr);
    assert!(
        !o3.status.success() && err3.contains("already attached"),
        "{err3}"
    );
    let st = Command::new("kill")
        .arg("-INT")
        .arg(tracer.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let o = wait_output(tracer, 60);
    assert!(
        o.status.success(),
        "session 2: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&out2).unwrap();
    let end = text
        .lines()
        .find(|l| l.starts_with("end "))
        .unwrap_or_else(|| panic!("no end probe: {text}"));
    assert!(end.ends_with(" bad=0"), "{end}");

    // Session 3 dies without detaching (SIGKILL, not reaped yet): its probes stay
    // armed and its records pile up; session 4 takes over, discards them and sees only
    // its own, with the workload's values.
    let out3 = tempfile("attach3");
    let mut c = attach(
        &dir,
        &control,
        &out3,
        r#"global n probe mach.msg.trap { n++; if (n % 1000 == 0) printf("hits %d\n", n) }"#,
    );
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut killed = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&out3)
        .unwrap_or_default()
        .contains("hits 1000")
    {
        assert!(Instant::now() < deadline, "no hits in session 3");
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.kill().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out4 = tempfile("attach4");
    let script = r#"
global n, bad
probe mach.msg.trap { n++; if (msgh_id != 999 || send_size != 32 || option != 3) bad++; if (n == 5000) exit() }
probe end { printf("end n=%d bad=%d\n", n, bad) }
"#;
    let o = run_with_timeout(attach(&dir, &control, &out4, script), 120);
    assert!(
        o.status.success(),
        "session 4: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = killed.wait();
    let text = std::fs::read_to_string(&out4).unwrap();
    assert!(text.contains("end n=5000 bad=0"), "{text}");

    // Still running, at speed, after the last detach.
    while rx.try_recv().is_ok() {}
    let counts: Vec<u64> = (0..3)
        .map(|_| {
            let l = wait_line(&rx, |l| l.starts_with("bench count="), 60)
                .expect("the VM stopped after snaptap detached");
            l.trim_start_matches("bench count=").trim().parse().unwrap()
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[1] > w[0]), "{counts:?}");
    assert!(qemu.try_wait().unwrap().is_none(), "QEMU exited");
}

/// Out-parameters are written just before a function returns: the tapset's
/// `kernel_long(@entry($addr))` in `mach.vm.allocate.return` must read the memory at
/// the return (through the address saved at entry), as stap does, and give the
/// address the workload then prints, on both VM backends.
#[test]
fn vm_allocate_out_parameter_is_read_at_return_plugin() {
    out_parameter_at_return(None);
}

#[test]
fn vm_allocate_out_parameter_is_read_at_return_gdbstub() {
    out_parameter_at_return(Some("gdb"));
}

fn out_parameter_at_return(backend: Option<&str>) {
    if skip() {
        return;
    }
    let script = r#"
probe mach.vm.allocate.return { if (kr == 0) printf("snap size=%d addr=%#x\n", size, addr) }
probe mach.print { if (substr(message, 0, 10) == "truth done") exit() }
"#;
    let (console, _, text) = run_vm("rounds=2 report=0 idle=1", script, backend, false);
    let want: Vec<String> = console
        .lines()
        .filter_map(|l| {
            l.strip_prefix("truth vm_allocate ")
                .or_else(|| l.strip_prefix("truth stack_allocate "))
        })
        .map(|l| format!("snap {l}"))
        .collect();
    assert!(want.len() >= 4, "the workload allocates: {console}");
    // The kernel's own calls (loading the boot task) come first; the workload's
    // must all follow, in order, with the addresses it printed.
    let got: Vec<&str> = text.lines().collect();
    let mut at = 0;
    for w in &want {
        match got[at..].iter().position(|g| g == w) {
            Some(i) => at += i + 1,
            None => {
                panic!("missing {w:?} (in order) in snaptap's output:\n{text}\nconsole:\n{console}")
            }
        }
    }
}
