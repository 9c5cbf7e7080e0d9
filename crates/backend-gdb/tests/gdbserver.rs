//! The backend against a real gdbserver on localhost: a C fixture (built at test time
//! with gcc, non-PIE and PIE) whose probed function's first argument and return value
//! are compared with what the fixture prints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend::{event_queue, Event, StopToken, TargetEnd};
use backend_gdb::{GdbBackend, GdbOptions};
use capture_plan::{
    CapturePlan, ContextNeeds, DwarfReg, FieldPlan, FileAddr, Op, PlanSet, ProbeSite, SiteId,
    SiteKind,
};
use object::{Object, ObjectSymbol};

const FIXTURE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) long probe_me(long x, const char *s) { return x * 2 + s[0]; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    long sum = 0;
    for (int i = 0; i < n; i++) {
        long v = 1000 + i * 3;
        long r = probe_me(v, "hi");
        printf("call %ld -> %ld\n", v, r);
        sum += r;
    }
    printf("sum %ld\n", sum);
    return 0;
}
"#;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn build(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join("fixture.c");
    std::fs::write(&src, FIXTURE).unwrap();
    let out = dir.join(name);
    let st = Command::new("gcc")
        .args(flags)
        .arg("-g")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success());
    out
}

fn symbol(path: &Path, name: &str) -> u64 {
    let data = std::fs::read(path).unwrap();
    let f = object::File::parse(&*data).unwrap();
    f.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
        .expect("symbol")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Server {
    child: std::process::Child,
    out: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gdbserver --once` on a free port and waits until it listens.
fn gdbserver(dir: &Path, exe: &Path, n: u32) -> (Server, String) {
    let port = free_port();
    let out = dir.join(format!("out-{port}.txt"));
    let mut child = Command::new("gdbserver")
        .arg("--once")
        .arg(format!("127.0.0.1:{port}"))
        .arg(exe)
        .arg(n.to_string())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdbserver");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("Listening on port") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("gdbserver did not start listening");
    (Server { child, out }, format!("127.0.0.1:{port}"))
}

fn plans(module: &Path, addr: u64, ret: bool) -> PlanSet {
    let arg = FieldPlan {
        ops: vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)],
        label: "$x".into(),
    };
    let s0 = Op::Reg(DwarfReg(4));
    let first_char = FieldPlan {
        ops: vec![s0, Op::EmitString(16)],
        label: "$s".into(),
    };
    let kind = if ret {
        SiteKind::Return {
            return_plan: CapturePlan {
                fields: vec![FieldPlan {
                    ops: vec![Op::Reg(DwarfReg::RAX), Op::EmitValue(8)],
                    label: "$return".into(),
                }],
            },
        }
    } else {
        SiteKind::Entry
    };
    PlanSet {
        sites: vec![ProbeSite {
            id: SiteId(0),
            module: module.to_path_buf(),
            addr: FileAddr(addr),
            kind,
            plan: CapturePlan {
                fields: vec![arg, first_char],
            },
            needs: ContextNeeds {
                comm: true,
                ppid: false,
                cpu: true,
            },
        }],
    }
}

fn expected(out: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("call ")?;
            let (a, b) = rest.split_once(" -> ")?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

fn le(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(v)
}

fn run_case(name: &str, flags: &[&str], ret: bool, n: u32) {
    if !have("gdbserver") || !have("gcc") {
        eprintln!("SKIPPED: gdbserver or gcc is not installed (apt-get install gdbserver)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("backend-gdb-live-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build(&dir, name, flags);
    let addr = symbol(&exe, "probe_me");
    let (server, at) = gdbserver(&dir, &exe, n);
    let mut b = GdbBackend::connect(GdbOptions {
        addr: at,
        connect_timeout: Duration::from_secs(10),
        module: exe.clone(),
    })
    .expect("connect");
    assert!(!b.is_machine() && b.is_x86_64());
    let (tx, rx) = event_queue(100_000);
    let stop = StopToken::new();
    let t0 = Instant::now();
    let summary = b.run(&plans(&exe, addr, ret), &tx, &stop).expect("run");
    let stats = b.stats();
    drop(b);
    let mut server = server;
    let _ = server.child.wait();
    assert!(
        summary.failed_sites.is_empty(),
        "{:?}",
        summary.failed_sites
    );
    let want = expected(&server.out);
    assert_eq!(want.len(), n as usize);
    let mut got = Vec::new();
    let mut ended = None;
    while let Some(ev) = rx.try_recv() {
        match ev {
            Event::Record(r) => got.push(r),
            Event::TargetEnded { pid, how } => ended = Some((pid, how)),
            Event::Warning(w) => panic!("warning: {w}"),
            Event::ModuleMapped { .. } => {}
        }
    }
    let (pid, how) = ended.expect("TargetEnded");
    assert_eq!(how, TargetEnd::Exited(0));
    assert_eq!(got.len(), want.len());
    for (r, (v, rv)) in got.iter().zip(&want) {
        assert_eq!(r.pid, pid);
        // execname(): the thread's comm is the program's name.
        assert_eq!(r.comm, name);
        assert!(r.cpu < 4096);
        assert!(r.tid >= r.pid);
        assert_eq!(le(r.field(0).unwrap()), *v);
        assert_eq!(r.field(1).unwrap(), b"hi");
        if ret {
            assert_eq!(le(r.field(2).unwrap()), *rv);
        }
    }
    eprintln!(
        "{name}: {} hits in {:.3}s ({:.0} hits/s, {} packets, wall {:.3}s)",
        stats.hits,
        stats.elapsed.as_secs_f64(),
        stats.hits_per_sec(),
        stats.packets,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn gdbserver_entry_probe_non_pie() {
    run_case("nopie", &["-O0", "-no-pie"], false, 200);
}

#[test]
fn gdbserver_return_probe_non_pie() {
    run_case("nopie-ret", &["-O0", "-no-pie"], true, 50);
}

#[test]
fn gdbserver_entry_probe_pie_o2() {
    run_case("pie-o2", &["-O2", "-pie", "-fPIE"], false, 50);
}

const THREADED: &str = r#"
#include <pthread.h>
#include <stdio.h>
__attribute__((noinline)) long probe_me(long x, const char *s) { return x * 2 + s[0]; }
static void *worker(void *arg) {
    long base = (long)arg;
    for (int i = 0; i < 40; i++) {
        long v = base + i;
        long r = probe_me(v, "hi");
        printf("call %ld -> %ld\n", v, r);
    }
    return 0;
}
int main(void) {
    pthread_t t[3];
    for (long k = 0; k < 3; k++)
        pthread_create(&t[k], 0, worker, (void *)(100000 * (k + 1)));
    for (int k = 0; k < 3; k++)
        pthread_join(t[k], 0);
    return 0;
}
"#;

#[test]
fn gdbserver_threads() {
    if !have("gdbserver") || !have("gcc") {
        eprintln!("SKIPPED: gdbserver or gcc is not installed (apt-get install gdbserver)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("backend-gdb-live-{}-thr", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("thr.c");
    std::fs::write(&src, THREADED).unwrap();
    let exe = dir.join("thr");
    let st = Command::new("gcc")
        .args(["-g", "-O0", "-no-pie", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let addr = symbol(&exe, "probe_me");
    let (server, at) = gdbserver(&dir, &exe, 0);
    let mut b = GdbBackend::connect(GdbOptions {
        addr: at,
        connect_timeout: Duration::from_secs(10),
        module: exe.clone(),
    })
    .expect("connect");
    let (tx, rx) = event_queue(100_000);
    let summary = b
        .run(&plans(&exe, addr, true), &tx, &StopToken::new())
        .expect("run");
    drop(b);
    let mut server = server;
    let _ = server.child.wait();
    assert!(
        summary.failed_sites.is_empty(),
        "{:?}",
        summary.failed_sites
    );
    let mut want = expected(&server.out);
    assert_eq!(want.len(), 120);
    let mut got = Vec::new();
    let mut tids = std::collections::BTreeMap::new();
    while let Some(ev) = rx.try_recv() {
        if let Event::Record(r) = ev {
            let v = le(r.field(0).unwrap());
            let rv = le(r.field(2).unwrap());
            // Each worker's values live in its own 100000 range: one thread each.
            tids.entry(v / 100000).or_insert_with(Vec::new).push(r.tid);
            got.push((v, rv));
        }
    }
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(tids.len(), 3);
    let mut all: Vec<u32> = Vec::new();
    for ts in tids.values() {
        assert!(ts.iter().all(|t| *t == ts[0]), "one tid per worker: {ts:?}");
        all.push(ts[0]);
    }
    all.dedup();
    assert_eq!(all.len(), 3);
}
