//! The backend against QEMU's gdbstub running Debian's GNU Mach kernel (x86_64, DWARF):
//! the VM starts paused at its reset vector (`-S`), the sites are verified at their first
//! hit, and the records are checked against the kernel file and the serial console.
//! Skipped when QEMU or the kernel package is not installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend::{event_queue, Event, StopToken};
use backend_gdb::{GdbBackend, GdbOptions};
use capture_plan::{
    CapturePlan, ContextNeeds, DwarfReg, FieldPlan, FileAddr, Op, PlanSet, ProbeSite, SiteId,
    SiteKind,
};
use object::{Object, ObjectSegment, ObjectSymbol};

const KERNEL_GZ: &str = "/boot/gnumach-1.8-486-dbg.gz";

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

struct Vm {
    child: std::process::Child,
    serial: PathBuf,
    addr: String,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    fn console(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }
}

/// Unpacks the kernel, rewraps it for QEMU's multiboot loader and boots it paused.
fn boot(name: &str) -> Option<(Vm, PathBuf)> {
    if !have("qemu-system-x86_64") || !have("objcopy") || !Path::new(KERNEL_GZ).exists() {
        eprintln!("SKIPPED: needs qemu-system-x86, binutils and gnumach-image-1.8-486-dbg");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("backend-gdb-qemu-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dbg = dir.join("gnumach.dbg");
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(KERNEL_GZ)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&dbg, out.stdout).unwrap();
    let elf32 = dir.join("gnumach.elf32");
    let st = Command::new("objcopy")
        .args(["-I", "elf64-x86-64", "-O", "elf32-i386"])
        .arg(&dbg)
        .arg(&elf32)
        .status()
        .unwrap();
    assert!(st.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serial = dir.join("serial.txt");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-m", "512", "-accel", "tcg", "-display", "none", "-monitor", "none",
        ])
        .arg("-no-reboot")
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(&elf32)
        .args(["-append", "console=com0", "-S"])
        .arg("-gdb")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu");
    Some((
        Vm {
            child,
            serial,
            addr: format!("127.0.0.1:{port}"),
        },
        dbg,
    ))
}

fn connect(vm: &Vm, module: &Path) -> GdbBackend {
    let t0 = Instant::now();
    loop {
        match GdbBackend::connect(GdbOptions {
            addr: vm.addr.clone(),
            connect_timeout: Duration::from_secs(10),
            module: module.to_path_buf(),
        }) {
            Ok(b) => return b,
            Err(e) if t0.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn symbol(path: &Path, name: &str) -> u64 {
    let data = std::fs::read(path).unwrap();
    let f = object::File::parse(&*data).unwrap();
    f.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
        .expect("symbol")
}

/// The NUL-terminated string the kernel file holds at `addr`, if any segment has it.
fn file_string(path: &Path, addr: u64) -> Option<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let f = object::File::parse(&*data).unwrap();
    for seg in f.segments() {
        let (off, size) = seg.file_range();
        if addr >= seg.address() && addr < seg.address() + size {
            let start = (off + addr - seg.address()) as usize;
            let bytes = &data[start..(off + size) as usize];
            let end = bytes.iter().position(|&b| b == 0)?;
            return Some(bytes[..end].to_vec());
        }
    }
    None
}

fn one_site(module: &Path, addr: u64, fields: Vec<FieldPlan>) -> PlanSet {
    PlanSet {
        sites: vec![ProbeSite {
            id: SiteId(0),
            module: module.to_path_buf(),
            addr: FileAddr(addr),
            kind: SiteKind::Entry,
            plan: CapturePlan { fields },
            needs: ContextNeeds::default(),
        }],
    }
}

/// Requests the stop once the console shows the boot panic (or after `limit`).
fn stop_at_panic(vm_serial: PathBuf, stop: StopToken, limit: Duration) {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            let s = std::fs::read_to_string(&vm_serial).unwrap_or_default();
            if s.contains("db>") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.request();
    });
}

#[test]
fn qemu_mach_printf_format_strings() {
    let Some((vm, dbg)) = boot("printf") else {
        return;
    };
    let printf = symbol(&dbg, "printf");
    let mut b = connect(&vm, &dbg);
    assert!(b.is_machine() && b.is_x86_64());
    b.defer_unreadable_sites(true);
    let plans = one_site(
        &dbg,
        printf,
        vec![
            FieldPlan {
                ops: vec![Op::Reg(DwarfReg(5)), Op::EmitString(128)],
                label: "fmt".into(),
            },
            FieldPlan {
                ops: vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)],
                label: "fmt ptr".into(),
            },
        ],
    );
    let (tx, rx) = event_queue(100_000);
    let stop = StopToken::new();
    stop_at_panic(vm.serial.clone(), stop.clone(), Duration::from_secs(60));
    let summary = b.run(&plans, &tx, &stop).expect("run");
    let stats = b.stats();
    drop(b);
    assert!(
        summary.failed_sites.is_empty(),
        "{:?}",
        summary.failed_sites
    );
    let mut recs = Vec::new();
    while let Some(ev) = rx.try_recv() {
        if let Event::Record(r) = ev {
            recs.push(r);
        }
    }
    assert!(recs.len() >= 5, "only {} printf hits", recs.len());
    let mut saw_biosmem = false;
    for r in &recs {
        assert_eq!((r.pid, r.tid, r.cpu, r.ip), (0, 1, 0, printf));
        let fmt = r.field(0).expect("format string");
        let ptr = u64::from_le_bytes(r.field(1).unwrap().try_into().unwrap());
        // What the kernel's memory held equals what its file holds there.
        assert_eq!(
            file_string(&dbg, ptr).as_deref(),
            Some(fmt),
            "format at {ptr:#x}"
        );
        saw_biosmem |= String::from_utf8_lossy(fmt).starts_with("biosmem");
    }
    assert!(saw_biosmem);
    // Detached: the VM ran on to its panic with no breakpoint left.
    let t0 = Instant::now();
    while !vm.console().contains("db>") && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        vm.console().contains("bootstrap_create"),
        "{}",
        vm.console()
    );
    eprintln!(
        "qemu printf: {} hits in {:.3}s ({:.0} hits/s, {} packets)",
        stats.hits,
        stats.elapsed.as_secs_f64(),
        stats.hits_per_sec(),
        stats.packets
    );
}

#[test]
fn qemu_mach_kmem_cache_alloc_rate_and_mismatch() {
    let Some((vm, dbg)) = boot("rate") else {
        return;
    };
    let hot = symbol(&dbg, "kmem_cache_alloc");
    // A copy of the kernel with one byte of vm_page_grab changed: that site must be
    // refused at its first hit while the other one keeps working.
    let other = symbol(&dbg, "vm_page_grab");
    let bad = dbg.with_file_name("gnumach-bad.dbg");
    let mut bytes = std::fs::read(&dbg).unwrap();
    let data = bytes.clone();
    let f = object::File::parse(&*data).unwrap();
    let seg = f
        .segments()
        .find(|s| other >= s.address() && other < s.address() + s.size())
        .unwrap();
    let off = (seg.file_range().0 + other - seg.address()) as usize;
    bytes[off + 2] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let mut b = connect(&vm, &bad);
    b.defer_unreadable_sites(true);
    let mut plans = one_site(
        &bad,
        hot,
        vec![FieldPlan {
            ops: vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)],
            label: "cache".into(),
        }],
    );
    let mut s2 = plans.sites[0].clone();
    s2.id = SiteId(1);
    s2.addr = FileAddr(other);
    plans.sites.push(s2);
    let (tx, rx) = event_queue(100_000);
    let stop = StopToken::new();
    stop_at_panic(vm.serial.clone(), stop.clone(), Duration::from_secs(60));
    let summary = b.run(&plans, &tx, &stop).expect("run");
    let stats = b.stats();
    drop(b);
    let mut hits = [0usize; 2];
    while let Some(ev) = rx.try_recv() {
        if let Event::Record(r) = ev {
            hits[r.site.0 as usize] += 1;
            assert_eq!(r.field(0).map(|b| b.len()), Ok(8));
        }
    }
    assert_eq!(summary.failed_sites.len(), 1, "{:?}", summary.failed_sites);
    let want = format!("kernel does not match gnumach-bad.dbg: bytes at {other:#x} differ");
    assert!(
        summary.failed_sites[0].contains(&want),
        "{:?}",
        summary.failed_sites
    );
    assert!(hits[0] > 10 && hits[1] == 0, "{hits:?}");
    eprintln!(
        "qemu kmem_cache_alloc+vm_page_grab: {} hits in {:.3}s ({:.0} hits/s, {} packets, {:.1} packets/hit)",
        stats.hits,
        stats.elapsed.as_secs_f64(),
        stats.hits_per_sec(),
        stats.packets,
        stats.packets as f64 / stats.hits.max(1) as f64
    );
}

#[test]
fn qemu_mach_return_probe_kmem_cache_alloc() {
    let Some((vm, dbg)) = boot("ret") else {
        return;
    };
    let f = symbol(&dbg, "kmem_cache_alloc");
    let mut b = connect(&vm, &dbg);
    b.defer_unreadable_sites(true);
    let mut plans = one_site(
        &dbg,
        f,
        vec![FieldPlan {
            ops: vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)],
            label: "cache".into(),
        }],
    );
    plans.sites[0].kind = SiteKind::Return {
        return_plan: CapturePlan {
            fields: vec![FieldPlan {
                ops: vec![Op::Reg(DwarfReg::RAX), Op::EmitValue(8)],
                label: "$return".into(),
            }],
        },
    };
    let (tx, rx) = event_queue(100_000);
    let stop = StopToken::new();
    stop_at_panic(vm.serial.clone(), stop.clone(), Duration::from_secs(60));
    let summary = b.run(&plans, &tx, &stop).expect("run");
    drop(b);
    assert!(
        summary.failed_sites.is_empty(),
        "{:?}",
        summary.failed_sites
    );
    let mut n = 0;
    while let Some(ev) = rx.try_recv() {
        if let Event::Record(r) = ev {
            n += 1;
            let cache = u64::from_le_bytes(r.field(0).unwrap().try_into().unwrap());
            let obj = u64::from_le_bytes(r.field(1).unwrap().try_into().unwrap());
            // Both are kernel virtual addresses (direct map above 0x40000000), and the
            // record's ip is a return address inside the kernel's text, not the entry.
            assert!(
                cache >= 0x4000_0000 && obj >= 0x4000_0000,
                "{cache:#x} {obj:#x}"
            );
            assert!(
                r.ip != f && (0x4100_c000..0x4109_5000).contains(&r.ip),
                "{:#x}",
                r.ip
            );
        }
    }
    assert!(n > 10, "only {n} returns");
    assert!(vm.console().contains("db>") || vm.console().contains("panic"));
}
