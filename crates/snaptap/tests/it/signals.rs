//! SIGINT/SIGTERM to snaptap mid-trace: end probes run, the target runs on unharmed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn expected_sum(n: i64) -> i64 {
    (0..n).map(|i| i * i + 1).sum()
}

fn send(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Waits until the file at `path` holds at least `n` lines starting with `hit`.
fn wait_hits(path: &std::path::Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().filter(|l| l.starts_with("hit")).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no hits seen: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawned_target_survives(sig: &str) {
    let bin = fixture("slow", "-O2", &[]);
    let out = tempfile("sig");
    let script = format!(
        r#"global n probe process("{}").function("tick") {{ n++; printf("hit %d\n", $i) }} probe end {{ printf("end %d\n", n) }}"#,
        bin.display()
    );
    let mut c = snaptap();
    c.arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(&script)
        .arg("-c")
        .arg(format!("{} 60 15", bin.display()));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    wait_hits(&out, 5);
    send(pid, sig);
    // stdout is shared with the target, so EOF comes only when the target is done too.
    let o = wait_output(child, 60);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let hits = text.lines().filter(|l| l.starts_with("hit")).count();
    assert!(
        text.contains(&format!("end {hits}")),
        "end probe must run after {sig}: {text}\n{stderr}"
    );
    assert!(
        hits < 60,
        "the trace should have stopped early ({hits} hits)"
    );
    assert!(
        stdout.contains(&format!("truth done {}", expected_sum(60))),
        "target must finish correctly after {sig}: {stdout}\n{stderr}"
    );
}

#[test]
fn sigint_detaches_spawned_target() {
    spawned_target_survives("INT");
}

#[test]
fn sigterm_detaches_spawned_target() {
    spawned_target_survives("TERM");
}

#[test]
fn attach_and_detach_with_x() {
    let bin = fixture("slow", "-O0", &[]);
    // 300 x 15 ms: long enough that a loaded machine still attaches while it runs.
    let mut target = Command::new(&bin)
        .args(["300", "15"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(target.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("truth pid"), "{first}");
    let out = tempfile("attach");
    let script = format!(
        r#"probe process("{}").function("tick") {{ printf("hit %d\n", $i) }}"#,
        bin.display()
    );
    let mut c = snaptap();
    c.arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(&script)
        .arg("-x")
        .arg(target.id().to_string());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let tracer = c.spawn().unwrap();
    let tracer_pid = tracer.id();
    wait_hits(&out, 5);
    send(tracer_pid, "INT");
    let o = wait_output(tracer, 30);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The hits must be consecutive iterations (none lost while attached).
    let text = std::fs::read_to_string(&out).unwrap();
    let vals: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("hit "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(vals.windows(2).all(|w| w[1] == w[0] + 1), "{vals:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let st = target.wait().unwrap();
    assert!(st.success(), "target must exit normally");
    assert!(
        rest.contains(&format!("truth done {}", expected_sum(300))),
        "{rest}"
    );
}
