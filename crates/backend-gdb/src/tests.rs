//! Unit tests: the framing codec, thread ids and stop replies, the register map, and the
//! whole backend against a scripted stub on a loopback socket.

mod stub;

use std::path::{Path, PathBuf};
use std::time::Duration;

use backend::{event_queue, Event, EventReceiver, StopToken, TargetEnd};
use capture_plan::{
    CapturePlan, ContextNeeds, DwarfReg, FieldPlan, FieldStatus, FileAddr, Op, PlanSet, ProbeSite,
    SiteId, SiteKind,
};

use crate::commands::query::{parse_supported, parse_svr4};
use crate::commands::regs::{parse_g, tags, Arch, RegMap};
use crate::commands::run::{parse_stop, StopReply, ThreadId};
use crate::packet::{checksum, decode_payload, encode_packet, Decoder, Frame};
use crate::{GdbBackend, GdbOptions};
use stub::{set, End, ScriptStop, Stub, StubConfig};

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Decoder::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame()).collect()
}

#[test]
fn checksum_and_roundtrip() {
    assert_eq!(encode_packet(b"OK"), b"$OK#9a".to_vec());
    assert_eq!(checksum(b"qSupported"), 0x37);
    assert_eq!(frames(b"$OK#9a"), vec![Frame::Packet(b"OK".to_vec())]);
    // Upper-case checksum digits are accepted too.
    let pkt = encode_packet(b"m4100c000,10");
    let mut up = pkt.clone();
    let n = up.len();
    up[n - 2..].make_ascii_uppercase();
    assert_ne!(up, pkt);
    assert_eq!(frames(&up), frames(&pkt));
    assert_eq!(frames(b"$OK#9b"), vec![Frame::Bad]);
}

#[test]
fn escapes_roundtrip_every_byte() {
    let all: Vec<u8> = (0..=255u8).collect();
    let enc = encode_packet(&all);
    // Framing bytes never appear raw inside the payload.
    let body = &enc[1..enc.len() - 3];
    assert!(!body.iter().any(|b| matches!(b, b'$' | b'#' | b'*')));
    assert_eq!(frames(&enc), vec![Frame::Packet(all)]);
    assert_eq!(decode_payload(b"a}\x03b"), Some(b"a#b".to_vec()));
}

#[test]
fn run_length_decoding() {
    // "0* " is '0' repeated 32-29 = 3 more times.
    assert_eq!(decode_payload(b"0* "), Some(b"0000".to_vec()));
    assert_eq!(decode_payload(b"ab*\"c"), Some(b"abbbbbbc".to_vec()));
    // An escaped byte can be repeated.
    assert_eq!(decode_payload(b"}]*!"), Some(b"}}}}}".to_vec()));
    // A repeat with nothing before it, or a count below 29, is malformed.
    assert_eq!(decode_payload(b"*#"), None);
    assert_eq!(decode_payload(b"a*\x10"), None);
    let raw = b"$0*}#";
    // Checksum is over the raw (encoded) bytes.
    let sum = checksum(&raw[1..raw.len() - 1]);
    let wire = format!("$0*}}#{sum:02x}");
    assert_eq!(frames(wire.as_bytes()), vec![Frame::Packet(vec![b'0'; 97])]);
}

#[test]
fn acks_notifications_interrupts_and_noise() {
    let mut wire = b"+-\x03junk\r\n".to_vec();
    wire.extend(crate::packet::encode_notification(b"Stop:T05"));
    wire.extend(encode_packet(b"OK"));
    assert_eq!(
        frames(&wire),
        vec![
            Frame::Ack,
            Frame::Nack,
            Frame::Interrupt,
            Frame::Notification(b"Stop:T05".to_vec()),
            Frame::Packet(b"OK".to_vec()),
        ]
    );
    // A frame cut short by a new start marker is reported and the new one decoded.
    assert_eq!(
        frames(b"$abc$OK#9a"),
        vec![Frame::Bad, Frame::Packet(b"OK".to_vec())]
    );
    // A bad checksum digit resynchronises on the byte that follows.
    assert_eq!(frames(b"$OK#z+"), vec![Frame::Bad, Frame::Ack]);
}

#[test]
fn split_and_coalesced_reads_agree() {
    let mut wire = Vec::new();
    for p in [&b"T05thread:p1.2;"[..], b"OK", b"", b"0123456789abcdef}"] {
        wire.extend(encode_packet(p));
        wire.push(b'+');
    }
    let whole = frames(&wire);
    assert_eq!(whole.len(), 8);
    for chunk in 1..wire.len() {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for c in wire.chunks(chunk) {
            d.push(c);
            got.extend(std::iter::from_fn(|| d.next_frame()));
        }
        assert_eq!(got, whole, "chunk size {chunk}");
    }
}

#[test]
fn garbage_never_panics() {
    // A deterministic pseudo-random byte stream biased toward framing characters.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let alphabet = b"$#%}*+-\x030123456789abcdefOKT;:";
    let mut d = Decoder::new();
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = if x.is_multiple_of(3) {
            (x >> 8) as u8
        } else {
            alphabet[(x >> 16) as usize % alphabet.len()]
        };
        d.push(&[b]);
        while let Some(f) = d.next_frame() {
            if let Frame::Packet(p) = f {
                let _ = parse_stop(&p);
                let _ = parse_supported(&p);
                let _ = ThreadId::parse(&p);
            }
        }
    }
    let _ = tags("<<<a b='\"c>/>< !-- <reg name=\"rip\" bitsize=\"x\"");
    let huge = format!(
        "<target>{}<reg name=\"rip\" bitsize=\"8\"/><reg name=\"rsp\" bitsize=\"64\"/></target>",
        "<reg name=\"a\" bitsize=\"18446744073709551615\"/>".repeat(10)
    );
    let m = RegMap::from_target_xml(&huge, &mut |_| None).unwrap();
    let _ = parse_g(b"00", &m);
    let _ = parse_svr4("<library name='a' l_addr='zz'/><library");
}

#[test]
fn oversized_frame_is_bad() {
    let mut d = Decoder::new();
    d.push(b"$");
    d.push(&vec![b'a'; crate::packet::MAX_PAYLOAD + 10]);
    d.push(b"#00");
    assert_eq!(d.next_frame(), Some(Frame::Bad));
}

#[test]
fn thread_ids_and_stop_replies() {
    assert_eq!(
        ThreadId::parse(b"p1.2"),
        Some(ThreadId {
            pid: Some(1),
            tid: 2
        })
    );
    assert_eq!(ThreadId::parse(b"p1f.-1").unwrap().tid, u64::MAX);
    assert_eq!(ThreadId::parse(b"1a").unwrap().to_wire(), "1a");
    assert_eq!(ThreadId::parse(b"p10.11").unwrap().to_wire(), "p10.11");
    assert_eq!(
        parse_stop(b"T05thread:p1a.1b;06:0011223344556677;swbreak:;"),
        Some(StopReply::Signal {
            signal: 5,
            thread: Some(ThreadId {
                pid: Some(0x1a),
                tid: 0x1b
            }),
            regs: vec![(6, vec![0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77])],
            core: None,
        })
    );
    assert_eq!(
        parse_stop(b"S02"),
        Some(StopReply::Signal {
            signal: 2,
            thread: None,
            regs: vec![],
            core: None,
        })
    );
    assert_eq!(
        parse_stop(b"W01;process:7b"),
        Some(StopReply::Exited {
            code: 1,
            pid: Some(0x7b)
        })
    );
    assert_eq!(
        parse_stop(b"X09"),
        Some(StopReply::Killed {
            signal: 9,
            pid: None
        })
    );
    assert_eq!(
        parse_stop(b"W0;process:51df"),
        Some(StopReply::Exited {
            code: 0,
            pid: Some(0x51df)
        })
    );
    assert!(matches!(
        parse_stop(b"T05thread:p1.2;core:3;"),
        Some(StopReply::Signal { core: Some(3), .. })
    ));
    assert_eq!(parse_stop(b"OK"), None);
    assert_eq!(parse_stop(b"T"), None);
}

#[test]
fn supported_features() {
    let f = parse_supported(
        b"PacketSize=1000;qXfer:features:read+;multiprocess+;vContSupported+;QStartNoAckMode-",
    );
    assert_eq!(f.packet_size, 0x1000);
    assert!(f.xfer_features && f.multiprocess && f.vcont && !f.no_ack && !f.xfer_auxv);
}

const CORE64: &str = r#"<?xml version="1.0"?>
<!DOCTYPE feature SYSTEM "gdb-target.dtd">
<feature name="org.gnu.gdb.i386.core">
  <!-- comment with <reg name="bogus" bitsize="64"/> inside -->
  <reg name="rax" bitsize="64" type="int64"/>
  <reg name="rbx" bitsize="64" type="int64"/>
  <reg name="rcx" bitsize="64" type="int64"/>
  <reg name="rdx" bitsize="64" type="int64"/>
  <reg name="rsi" bitsize="64" type="int64"/>
  <reg name="rdi" bitsize="64" type="int64"/>
  <reg name="rbp" bitsize="64" type="data_ptr"/>
  <reg name="rsp" bitsize="64" type="data_ptr"/>
  <reg name="r8" bitsize="64"/><reg name="r9" bitsize="64"/><reg name="r10" bitsize="64"/>
  <reg name="r11" bitsize="64"/><reg name="r12" bitsize="64"/><reg name="r13" bitsize="64"/>
  <reg name="r14" bitsize="64"/><reg name="r15" bitsize="64"/>
  <reg name="rip" bitsize="64" type="code_ptr"/>
  <reg name="eflags" bitsize="32"/>
</feature>"#;

const TOP64: &str = r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">
<target><architecture>i386:x86-64</architecture><xi:include href="64bit-core.xml"/></target>"#;

#[test]
fn register_map_from_description() {
    let mut fetch = |h: &str| (h == "64bit-core.xml").then(|| CORE64.to_string());
    let m = RegMap::from_target_xml(TOP64, &mut fetch).unwrap();
    assert_eq!(m.arch, Arch::X86_64);
    assert_eq!(m.by_dwarf[&5].name, "rdi");
    assert_eq!(m.by_dwarf[&5].offset, 40);
    assert_eq!(m.by_dwarf[&1].name, "rdx");
    assert_eq!(m.by_dwarf[&1].offset, 24);
    assert_eq!(m.by_dwarf[&16].offset, 128);
    assert_eq!(m.by_dwarf[&16].regnum, 16);
    assert!(m.from_xml);
    // A missing include is an error, not a guess.
    let mut none = |_: &str| None;
    assert!(RegMap::from_target_xml(TOP64, &mut none).is_err());
    // i386: its own DWARF numbers; regnum attributes restart the count.
    let x32 = r#"<target><architecture>i386</architecture><feature>
      <reg name="eax" bitsize="32"/><reg name="ecx" bitsize="32"/><reg name="edx" bitsize="32"/>
      <reg name="ebx" bitsize="32"/><reg name="esp" bitsize="32"/><reg name="ebp" bitsize="32"/>
      <reg name="esi" bitsize="32"/><reg name="edi" bitsize="32"/><reg name="eip" bitsize="32"/>
      <reg name="eflags" bitsize="32" regnum="20"/></feature></target>"#;
    let m = RegMap::from_target_xml(x32, &mut none).unwrap();
    assert_eq!(m.arch, Arch::I386);
    assert_eq!(m.by_dwarf[&8].name, "eip");
    assert_eq!(m.by_dwarf[&4].offset, 16);
    let mut g = String::new();
    for v in 0..9u32 {
        g.push_str(&crate::packet::to_hex(&(0x100 + v).to_le_bytes()));
    }
    let vals = parse_g(g.as_bytes(), &m);
    assert_eq!(vals.get(8), Some(0x108));
    assert_eq!(vals.get(1), Some(0x101));
    // Unavailable bytes ("xx") leave the register unknown.
    let mut g2 = g.clone();
    g2.replace_range(0..8, "xxxxxxxx");
    assert_eq!(parse_g(g2.as_bytes(), &m).get(0), None);
}

#[test]
fn fixed_layout_fallback() {
    let m = RegMap::fixed_x86_64();
    // Fixed g order is rax rbx rcx rdx ...: DWARF 1 (rdx) is the fourth register.
    assert_eq!(m.by_dwarf[&1].offset, 24);
    assert_eq!(m.by_dwarf[&3].offset, 8);
    assert_eq!(m.by_dwarf[&16].offset, 128);
}

#[test]
fn thread_list_names() {
    let xml = r#"<?xml version="1.0"?><threads><thread id="p1a.1a" core="0" name="thr"/><thread id="p1a.1b" core="1" name="worker 1"></thread></threads>"#;
    let t = crate::commands::query::parse_threads(xml);
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].0.tid, 0x1b);
    assert_eq!(t[1].1, "worker 1");
}

#[test]
fn svr4_list() {
    let xml = r#"<library-list-svr4 version="1.0" main-lm="0x7f00"><library name="/lib/libc.so.6" lm="0x1" l_addr="0x7f0000000000" l_ld="0x2"/></library-list-svr4>"#;
    assert_eq!(
        parse_svr4(xml),
        vec![("/lib/libc.so.6".to_string(), 0x7f00_0000_0000)]
    );
}

// ---- the backend against the scripted stub ----

const BASE: u64 = 0x400000;
const CODE: u64 = 0x401000;
const RET: u64 = 0x401100;
const STACK: u64 = 0x7000;

fn code_bytes() -> Vec<u8> {
    (0..0x200u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// A minimal ET_EXEC x86_64 ELF: one PT_LOAD mapping the whole file at BASE, with
/// `code_bytes()` at CODE.
fn write_elf(dir: &Path) -> PathBuf {
    let mut f = vec![0u8; 0x1200];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&CODE.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    f[58..60].copy_from_slice(&64u16.to_le_bytes());
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    f[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
    f[ph + 16..ph + 24].copy_from_slice(&BASE.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&BASE.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&0x1200u64.to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&0x1200u64.to_le_bytes());
    f[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    f[0x1000..0x1200].copy_from_slice(&code_bytes());
    let p = dir.join("kernel.elf");
    std::fs::write(&p, f).unwrap();
    p
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("backend-gdb-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn field(ops: Vec<Op>, label: &str) -> FieldPlan {
    FieldPlan {
        ops,
        label: label.into(),
    }
}

fn site(id: u32, module: &Path, addr: u64, kind: SiteKind, fields: Vec<FieldPlan>) -> ProbeSite {
    ProbeSite {
        id: SiteId(id),
        module: module.to_path_buf(),
        addr: FileAddr(addr),
        kind,
        plan: CapturePlan { fields },
        needs: ContextNeeds::default(),
    }
}

/// The memory a matching target has: the code, a stack, and nothing else.
fn target_mem(stack: &[(u64, u64)]) -> Vec<(u64, Vec<u8>)> {
    let mut st = vec![0u8; 0x100];
    for (a, v) in stack {
        let o = (a - STACK) as usize;
        st[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    vec![(CODE, code_bytes()), (STACK, st)]
}

fn regs(pc: u64, rdi: u64, rsp: u64, rax: u64) -> stub::Regs {
    let mut r = [0u64; 17];
    set(&mut r, "rip", pc);
    set(&mut r, "rdi", rdi);
    set(&mut r, "rsp", rsp);
    set(&mut r, "rax", rax);
    r
}

fn opts(addr: &str, module: &Path) -> GdbOptions {
    GdbOptions {
        addr: addr.to_string(),
        connect_timeout: Duration::from_secs(5),
        module: module.to_path_buf(),
    }
}

fn drain(rx: &EventReceiver) -> Vec<Event> {
    std::iter::from_fn(|| rx.try_recv()).collect()
}

fn records(ev: &[Event]) -> Vec<capture_plan::Record> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Runs the backend with `stop` requested `after` (if given).
fn run_with(
    cfg: StubConfig,
    module: &Path,
    plans: &PlanSet,
    after: Option<Duration>,
) -> (backend::RunSummary, Vec<Event>, Vec<String>) {
    let stub = Stub::start(cfg);
    let mut b = GdbBackend::connect(opts(&stub.addr, module)).expect("connect");
    let (tx, rx) = event_queue(1000);
    let stop = StopToken::new();
    if let Some(d) = after {
        let s = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            s.request();
        });
    }
    let summary = b.run(plans, &tx, &stop).expect("run");
    drop(b);
    let log = stub.join();
    (summary, drain(&rx), log)
}

fn entry_plan() -> Vec<FieldPlan> {
    vec![
        field(vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)], "$arg1"),
        field(
            vec![Op::Reg(DwarfReg::RSP), Op::Deref(8), Op::EmitValue(8)],
            "*rsp",
        ),
        field(
            vec![Op::Const(0xdead_0000), Op::Deref(8), Op::EmitValue(8)],
            "unmapped",
        ),
    ]
}

fn pos(log: &[String], p: &str) -> usize {
    log.iter()
        .position(|l| l == p)
        .unwrap_or_else(|| panic!("{p} not sent; log: {log:?}"))
}

#[test]
fn hit_produces_record_and_detach_removes_breakpoints() {
    let dir = tmpdir("hit");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.files.insert("target.xml".into(), TOP64.into());
    cfg.files.insert("64bit-core.xml".into(), CORE64.into());
    cfg.mem = target_mem(&[(STACK + 0x10, 0x1122_3344_5566_7788)]);
    cfg.script = vec![
        ScriptStop {
            tid: 2,
            regs: regs(CODE, 42, STACK + 0x10, 0),
        },
        ScriptStop {
            tid: 1,
            regs: regs(CODE, 43, STACK + 0x10, 0),
        },
    ];
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let (summary, ev, log) = run_with(cfg, &module, &plans, Some(Duration::from_millis(400)));
    assert!(
        summary.failed_sites.is_empty(),
        "{:?}",
        summary.failed_sites
    );
    let recs = records(&ev);
    assert_eq!(recs.len(), 2, "{ev:?}");
    let r = &recs[0];
    assert_eq!((r.pid, r.tid, r.cpu, r.ip), (0, 2, 1, CODE));
    assert_eq!(r.field(0), Ok(&42u64.to_le_bytes()[..]));
    assert_eq!(r.field(1), Ok(&0x1122_3344_5566_7788u64.to_le_bytes()[..]));
    assert_eq!(r.fields[2], FieldStatus::Fault { addr: 0xdead_0000 });
    assert!(r.time_ns > 1_600_000_000_000_000_000);
    assert_eq!((recs[1].tid, recs[1].cpu), (1, 0));
    assert_eq!(recs[1].field(0), Ok(&43u64.to_le_bytes()[..]));
    assert_eq!(summary.hits, 2);
    // The byte check happened before the breakpoint, the breakpoint before the first
    // continue; the step over the hit is in the stopped thread; at the end the
    // breakpoint is removed before the detach.
    let check = log.iter().position(|l| l.starts_with("m401000,")).unwrap();
    let z = pos(&log, "Z0,401000,1");
    let c = pos(&log, "vCont;c");
    assert!(check < z && z < c, "{log:?}");
    assert!(log.contains(&"vCont;s:p1.2".to_string()), "{log:?}");
    let rm = pos(&log, "z0,401000,1");
    let d = pos(&log, "D;1");
    assert!(rm < d);
    assert!(
        log.contains(&"^C".to_string()),
        "the stop interrupts: {log:?}"
    );
}

#[test]
fn mismatch_unreadable_foreign_and_process_sites_fail() {
    let dir = tmpdir("fail");
    let module = write_elf(&dir);
    let other = dir.join("other.elf");
    std::fs::copy(&module, &other).unwrap();
    let mut cfg = StubConfig::qemu_like();
    let mut bytes = code_bytes();
    bytes[0x20] ^= 0xff;
    // The target holds CODE..CODE+0x100 only, with one byte changed at CODE+0x20.
    bytes.truncate(0x100);
    cfg.mem = vec![(CODE, bytes)];
    let plan = || vec![field(vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)], "a")];
    let plans = PlanSet {
        sites: vec![
            site(0, &module, CODE + 0x18, SiteKind::Entry, plan()),
            site(1, &module, CODE + 0x180, SiteKind::Entry, plan()),
            site(2, &other, CODE, SiteKind::Entry, plan()),
            site(3, &module, 0, SiteKind::ProcessBegin, vec![]),
            site(4, &module, 0x10, SiteKind::Entry, plan()),
            site(5, &module, CODE + 0x40, SiteKind::Entry, plan()),
        ],
    };
    let (summary, _ev, log) = run_with(cfg, &module, &plans, Some(Duration::from_millis(200)));
    let f = &summary.failed_sites;
    assert_eq!(f.len(), 5, "{f:?}");
    assert!(
        f[0].contains("kernel does not match kernel.elf: bytes at 0x401018 differ"),
        "{f:?}"
    );
    assert!(
        f[1].contains("cannot read the kernel's memory at 0x401180"),
        "{f:?}"
    );
    assert!(f[2].contains("not in"), "{f:?}");
    assert!(f[3].contains("process begin/end"), "{f:?}");
    assert!(f[4].contains("not in a loaded segment"), "{f:?}");
    // Only the good site got a breakpoint, and it was removed.
    let zs: Vec<_> = log.iter().filter(|l| l.starts_with('Z')).collect();
    assert_eq!(zs, vec!["Z0,401040,1"]);
    assert!(log.contains(&"z0,401040,1".to_string()));
}

#[test]
fn hardware_breakpoint_fallback() {
    let dir = tmpdir("hw");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.z0_supported = false;
    cfg.mem = target_mem(&[]);
    cfg.script = vec![ScriptStop {
        tid: 1,
        regs: regs(CODE, 5, STACK, 0),
    }];
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let (summary, ev, log) = run_with(cfg, &module, &plans, Some(Duration::from_millis(300)));
    assert!(summary.failed_sites.is_empty());
    assert_eq!(records(&ev).len(), 1);
    assert!(log.contains(&"Z1,401000,1".to_string()), "{log:?}");
    assert!(log.contains(&"z1,401000,1".to_string()), "{log:?}");
}

#[test]
fn return_probe_matches_frame() {
    let dir = tmpdir("ret");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.mem = target_mem(&[(STACK + 0x40, RET)]);
    cfg.script = vec![
        ScriptStop {
            tid: 1,
            regs: regs(CODE, 9, STACK + 0x40, 0),
        },
        // A return to RET on another stack (another kernel thread): not ours.
        ScriptStop {
            tid: 1,
            regs: regs(RET, 0, STACK + 0x80, 1),
        },
        ScriptStop {
            tid: 1,
            regs: regs(RET, 0, STACK + 0x48, 77),
        },
    ];
    let kind = SiteKind::Return {
        return_plan: CapturePlan {
            fields: vec![field(
                vec![Op::Reg(DwarfReg::RAX), Op::EmitValue(8)],
                "$return",
            )],
        },
    };
    let plans = PlanSet {
        sites: vec![site(
            0,
            &module,
            CODE,
            kind,
            vec![field(
                vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)],
                "@entry($a)",
            )],
        )],
    };
    let (summary, ev, log) = run_with(cfg, &module, &plans, Some(Duration::from_millis(400)));
    assert!(summary.failed_sites.is_empty());
    let recs = records(&ev);
    assert_eq!(recs.len(), 1, "{ev:?}");
    assert_eq!(recs[0].ip, RET);
    assert_eq!(recs[0].field(0), Ok(&9u64.to_le_bytes()[..]));
    assert_eq!(recs[0].field(1), Ok(&77u64.to_le_bytes()[..]));
    // The temporary breakpoint at the return address came and went.
    let z = pos(&log, "Z0,401100,1");
    let rm = pos(&log, "z0,401100,1");
    assert!(z < rm);
    assert_eq!(log.iter().filter(|l| l.starts_with("Z0,401100")).count(), 1);
}

#[test]
fn gdbserver_like_stub_removes_steps_reinserts() {
    let dir = tmpdir("gdbserver");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.initial_stop = false;
    cfg.int3 = true;
    cfg.pid = 0x1234;
    cfg.supported =
        "PacketSize=3fff;QStartNoAckMode+;multiprocess+;qXfer:auxv:read+;vContSupported+".into();
    cfg.end = End::Exit;
    cfg.mem = target_mem(&[]);
    cfg.script = vec![ScriptStop {
        tid: 0x1235,
        regs: regs(CODE, 3, STACK, 0),
    }];
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let (summary, ev, log) = run_with(cfg, &module, &plans, None);
    assert!(summary.failed_sites.is_empty());
    let recs = records(&ev);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].pid, recs[0].tid, recs[0].cpu), (0x1234, 0x1235, 0));
    let i = pos(&log, "vCont;s:p1234.1235");
    assert_eq!(log[i - 1], "z0,401000,1");
    assert_eq!(log[i + 1], "Z0,401000,1");
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::TargetEnded {
            pid: 0x1234,
            how: TargetEnd::Exited(0)
        }
    )));
    // The process is gone: no detach is attempted.
    assert!(!log.iter().any(|l| l.starts_with('D')));
    assert!(log.contains(&"QStartNoAckMode".to_string()));
}

#[test]
fn connection_drop_ends_the_target() {
    let dir = tmpdir("drop");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.end = End::Close;
    cfg.mem = target_mem(&[]);
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let (_summary, ev, _log) = run_with(cfg, &module, &plans, None);
    assert!(
        ev.iter().any(|e| matches!(e, Event::TargetEnded { .. })),
        "{ev:?}"
    );
}

#[test]
fn connect_refused_is_clear() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let e = GdbBackend::connect(opts(&addr, Path::new("/nonexistent"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("no gdbstub at {addr}: Connection refused")
    );
}

#[test]
fn drop_without_run_detaches() {
    let dir = tmpdir("dropdetach");
    let module = write_elf(&dir);
    let stub = Stub::start(StubConfig::qemu_like());
    let b = GdbBackend::connect(opts(&stub.addr, &module)).expect("connect");
    drop(b);
    let log = stub.join();
    assert_eq!(log.last().map(String::as_str), Some("D;1"), "{log:?}");
}

fn deferred_case(target_code: Vec<u8>) -> (backend::RunSummary, Vec<Event>, Vec<String>) {
    let dir = tmpdir(&format!("defer{}", target_code[0]));
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.mem = target_mem(&[]);
    // The code is not readable until the first stop (a VM paused at its reset vector).
    cfg.mem.retain(|(a, _)| *a != CODE);
    cfg.mem_later = vec![(CODE, target_code)];
    cfg.script = vec![
        ScriptStop {
            tid: 1,
            regs: regs(CODE, 11, STACK, 0),
        },
        ScriptStop {
            tid: 1,
            regs: regs(CODE, 12, STACK, 0),
        },
    ];
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let stub = Stub::start(cfg);
    let mut b = GdbBackend::connect(opts(&stub.addr, &module)).expect("connect");
    b.defer_unreadable_sites(true);
    let (tx, rx) = event_queue(100);
    let stop = StopToken::new();
    let s2 = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        s2.request();
    });
    let summary = b.run(&plans, &tx, &stop).expect("run");
    drop(b);
    let log = stub.join();
    (summary, drain(&rx), log)
}

#[test]
fn deferred_sites_are_verified_at_first_hit() {
    let (summary, ev, log) = deferred_case(code_bytes());
    assert!(
        summary.failed_sites.is_empty(),
        "{:?}",
        summary.failed_sites
    );
    let recs = records(&ev);
    assert_eq!(recs.len(), 2, "{ev:?}");
    assert_eq!(recs[0].field(0), Ok(&11u64.to_le_bytes()[..]));
    assert!(log.contains(&"Z0,401000,1".to_string()));
}

#[test]
fn deferred_mismatch_removes_the_breakpoint() {
    let mut other = code_bytes();
    other[3] ^= 0x55;
    let (summary, ev, log) = deferred_case(other);
    assert!(records(&ev).is_empty(), "{ev:?}");
    assert_eq!(summary.failed_sites.len(), 1);
    assert!(
        summary.failed_sites[0].contains("kernel does not match kernel.elf: bytes at 0x401000"),
        "{:?}",
        summary.failed_sites
    );
    assert!(ev.iter().any(|e| matches!(e, Event::Warning(_))));
    let z = pos(&log, "z0,401000,1");
    assert!(z < log.len() - 1);
    assert_eq!(log.iter().filter(|l| l.starts_with("z0,")).count(), 1);
}

#[test]
fn unreadable_sites_are_refused_by_default() {
    let dir = tmpdir("nodefer");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.mem = Vec::new();
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let (summary, _ev, log) = run_with(cfg, &module, &plans, Some(Duration::from_millis(100)));
    assert_eq!(summary.failed_sites.len(), 1);
    assert!(summary.failed_sites[0].contains("cannot read the kernel's memory at 0x401000"));
    assert!(!log.iter().any(|l| l.starts_with('Z')));
}

#[test]
fn backend_is_send_and_signals_map_to_linux() {
    fn send<T: Send>() {}
    send::<GdbBackend>();
    assert_eq!(crate::tracer::gdb_signal(10), (7, "SIGBUS".to_string()));
    assert_eq!(crate::tracer::gdb_signal(30), (10, "SIGUSR1".to_string()));
    assert_eq!(crate::tracer::gdb_signal(11), (11, "SIGSEGV".to_string()));
    assert_eq!(crate::tracer::gdb_signal(200).1, "signal 200");
}

#[test]
fn repeated_reads_in_one_stop_use_one_packet() {
    let dir = tmpdir("cache");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.mem = target_mem(&[(STACK + 8, 0x55), (STACK + 16, 0x66)]);
    cfg.script = vec![ScriptStop {
        tid: 1,
        regs: regs(CODE, 0, STACK, 0),
    }];
    let rd = |off: u64| {
        field(
            vec![
                Op::Reg(DwarfReg::RSP),
                Op::Const(off),
                Op::Add,
                Op::Deref(8),
                Op::EmitValue(8),
            ],
            "x",
        )
    };
    let bytes = field(vec![Op::Reg(DwarfReg::RSP), Op::EmitBytes(24)], "all");
    let plans = PlanSet {
        sites: vec![site(
            0,
            &module,
            CODE,
            SiteKind::Entry,
            vec![bytes, rd(8), rd(16), rd(8)],
        )],
    };
    let (_s, ev, log) = run_with(cfg, &module, &plans, Some(Duration::from_millis(300)));
    let r = &records(&ev)[0];
    assert_eq!(r.field(1), Ok(&0x55u64.to_le_bytes()[..]));
    assert_eq!(r.field(2), Ok(&0x66u64.to_le_bytes()[..]));
    assert_eq!(r.field(3), Ok(&0x55u64.to_le_bytes()[..]));
    let reads: Vec<_> = log.iter().filter(|l| l.starts_with("m7")).collect();
    assert_eq!(reads, vec!["m7000,18"], "{log:?}");
}

#[test]
fn process_signals_are_passed_back() {
    let dir = tmpdir("sig");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.initial_stop = false;
    cfg.supported = "PacketSize=3fff;multiprocess+;qXfer:auxv:read+".into();
    cfg.signal_stop = Some(30);
    cfg.end = End::Exit;
    cfg.mem = target_mem(&[]);
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let (_s, _ev, log) = run_with(cfg, &module, &plans, None);
    assert!(log.contains(&"vCont;C1e:p1.1;c".to_string()), "{log:?}");
}

#[test]
fn foreign_architecture_is_refused() {
    let dir = tmpdir("arm");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.files.insert(
        "target.xml".into(),
        "<target><architecture>aarch64</architecture><feature><reg name=\"x0\" bitsize=\"64\"/></feature></target>".into(),
    );
    let stub = Stub::start(cfg);
    let e = GdbBackend::connect(opts(&stub.addr, &module)).unwrap_err();
    assert!(e.to_string().contains("aarch64"), "{e}");
}

/// A stub answering every packet with pseudo-random replies (valid frames with junk
/// payloads, raw noise, truncated frames): the client must return, never panic or hang.
#[test]
fn hostile_stub_never_panics_or_hangs() {
    let dir = tmpdir("hostile");
    let module = write_elf(&dir);
    // Every request may wait out its timeout (2 s at least): run the seeds side by side.
    let runs: Vec<_> = (1..=12u64)
        .map(|seed| {
            let module = module.clone();
            std::thread::spawn(move || hostile_run(seed, module))
        })
        .collect();
    for r in runs {
        r.join().expect("no panic");
    }
}

fn hostile_run(seed: u64, module: PathBuf) {
    {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let Ok((s, _)) = l.accept() else { return };
            let mut c = crate::conn::Conn::from_stream(s).unwrap();
            let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let t0 = std::time::Instant::now();
            while t0.elapsed() < Duration::from_secs(3) {
                match c.recv_frame(Duration::from_millis(50)) {
                    Ok(Some(Frame::Packet(_))) | Ok(Some(Frame::Interrupt)) => {}
                    Ok(_) => continue,
                    Err(_) => return,
                }
                let _ = c.send_raw(b"+");
                let pick = [
                    &b"T05thread:p1.1;"[..],
                    b"OK",
                    b"E14",
                    b"",
                    b"l<target><reg name=\"rip\" bitsize=\"99999999999\"/>",
                    b"zz",
                    b"0011",
                    b"W",
                    b"Tzz",
                    b"Sff",
                    b"vCont;c;s",
                ];
                let r = next();
                let mut payload = pick[(r % pick.len() as u64) as usize].to_vec();
                if r % 5 == 0 {
                    payload.extend((0..(r % 40)).map(|i| (next() >> (i % 8)) as u8));
                }
                let mut wire = encode_packet(&payload);
                if r % 7 == 0 {
                    wire.truncate(wire.len() / 2);
                }
                if c.send_raw(&wire).is_err() {
                    return;
                }
            }
        });
        let t0 = std::time::Instant::now();
        let mut o = opts(&addr, &module);
        o.connect_timeout = Duration::from_millis(300);
        if let Ok(mut b) = GdbBackend::connect(o) {
            let (tx, _rx) = event_queue(100);
            let stop = StopToken::new();
            let s2 = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                s2.request();
            });
            let plans = PlanSet {
                sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
            };
            let _ = b.run(&plans, &tx, &stop);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "seed {seed} took too long"
        );
        let _ = h.join();
    }
}

#[test]
fn stale_breakpoints_of_a_dead_client_are_removed() {
    let dir = tmpdir("stale");
    let module = write_elf(&dir);
    let mut cfg = StubConfig::qemu_like();
    cfg.mem = target_mem(&[]);
    cfg.stale_bps = vec![CODE + 0x80];
    cfg.script = vec![
        ScriptStop {
            tid: 1,
            regs: regs(CODE + 0x80, 0, STACK, 0),
        },
        ScriptStop {
            tid: 1,
            regs: regs(CODE, 6, STACK, 0),
        },
    ];
    let plans = PlanSet {
        sites: vec![site(0, &module, CODE, SiteKind::Entry, entry_plan())],
    };
    let (_s, ev, log) = run_with(cfg, &module, &plans, Some(Duration::from_millis(400)));
    assert!(log.contains(&"z0,401080,1".to_string()), "{log:?}");
    assert_eq!(records(&ev).len(), 1, "{ev:?}");
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Warning(w) if w.contains("earlier debugger session"))));
}
