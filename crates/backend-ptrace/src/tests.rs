//! Unit tests for the pure parts: /proc parsers, load bias, wait-status decoding.

use crate::elf::{load_bias, Image};
use crate::procfs::{parse_auxv, parse_maps, parse_stat};
use crate::tracer::{decode, reg_value, signal_name, Ev};

#[test]
fn maps_lines_parse() {
    let text = "55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234 /tmp/a b/prog\n\
                55d0c0a01000-55d0c0a02000 r-xp 00001000 fd:01 1234 /tmp/a b/prog\n\
                7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]\n\
                7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n\
                garbage line\n";
    let m = parse_maps(text);
    assert_eq!(m.len(), 4);
    assert_eq!(m[0].start, 0x55d0c0a00000);
    assert_eq!(m[1].offset, 0x1000);
    assert_eq!(m[1].path, "/tmp/a b/prog");
    assert_eq!(
        (m[1].dev_major, m[1].dev_minor, m[1].inode),
        (0xfd, 1, 1234)
    );
    assert_eq!(m[2].path, "[stack]");
    assert_eq!(m[3].path, "");
}

#[test]
fn stat_fields_after_comm_with_parens() {
    // Field 2 holds spaces and a ')': fields are counted after the last ')'.
    let mut s = String::from("42 (a) b) S 7 42 42 0 -1");
    for i in 9..=38 {
        s.push_str(&format!(" {i}"));
    }
    s.push_str(" 3 0 0");
    assert_eq!(parse_stat(&s), Some((7, 3)));
    assert_eq!(parse_stat("garbage"), None);
}

#[test]
fn auxv_lookup() {
    let mut d = Vec::new();
    for (k, v) in [(6u64, 4096u64), (7, 0x7f00), (0, 0)] {
        d.extend_from_slice(&k.to_le_bytes());
        d.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(parse_auxv(&d, 7), Some(0x7f00));
    assert_eq!(parse_auxv(&d, 9), None);
}

fn entry(start: u64, offset: u64) -> crate::procfs::MapEntry {
    crate::procfs::MapEntry {
        start,
        end: start + 0x1000,
        perms: "r--p".into(),
        offset,
        dev_major: 0,
        dev_minor: 0,
        inode: 1,
        path: "/x".into(),
    }
}

#[test]
fn bias_of_pie_and_exec() {
    let pie = Image {
        relocatable: true,
        loads: vec![(0, 0), (0x1000, 0x1000), (0x3df0, 0x2df0)],
        exec: vec![(0x1000, 0x1a5)],
    };
    assert_eq!(crate::elf::exec_slack(&pie, 0x1010), Some((0x11a5, 0x2000)));
    assert_eq!(crate::elf::exec_slack(&pie, 0x11a5), None);
    let a = entry(0x5555_5555_4000, 0);
    let b = entry(0x5555_5555_5000, 0x1000);
    assert_eq!(load_bias(&pie, &[&b, &a]), Some(0x5555_5555_4000));
    // Only a later segment mapped: still right.
    assert_eq!(load_bias(&pie, &[&b]), Some(0x5555_5555_4000));
    // A shared object whose first segment has a non-zero vaddr (prelinked style).
    let so = Image {
        relocatable: true,
        loads: vec![(0x10000, 0)],
        exec: vec![],
    };
    assert_eq!(
        load_bias(&so, &[&entry(0x7f00_0001_0000, 0)]),
        Some(0x7f00_0000_0000)
    );
    let exec = Image {
        relocatable: false,
        loads: vec![(0x400000, 0)],
        exec: vec![],
    };
    assert_eq!(load_bias(&exec, &[&entry(0x400000, 0)]), Some(0));
    assert_eq!(load_bias(&exec, &[]), None);
}

#[test]
fn wait_status_decoding() {
    assert_eq!(decode(3 << 8), Ev::Exited(3));
    assert_eq!(decode(11), Ev::Signaled(11, false));
    assert_eq!(decode(11 | 0x80), Ev::Signaled(11, true));
    assert_eq!(decode((5 << 8) | 0x7f), Ev::Signal(5));
    assert_eq!(decode((34 << 8) | 0x7f), Ev::Signal(34));
    assert_eq!(
        decode((libc::PTRACE_EVENT_STOP << 16) | (19 << 8) | 0x7f),
        Ev::Event(libc::PTRACE_EVENT_STOP, 19)
    );
    // A system call stop under PTRACE_O_TRACESYSGOOD is not a SIGTRAP.
    assert_eq!(decode(((libc::SIGTRAP | 0x80) << 8) | 0x7f), Ev::Syscall);
    assert_eq!(
        decode((libc::SIGTRAP << 8) | 0x7f),
        Ev::Signal(libc::SIGTRAP)
    );
    assert_eq!(signal_name(11), "SIGSEGV");
    assert_eq!(signal_name(40), "SIG40");
}

#[test]
fn dwarf_register_numbers() {
    // SAFETY-free: a zeroed plain-old-data struct built field by field.
    let r = libc::user_regs_struct {
        r15: 15,
        r14: 14,
        r13: 13,
        r12: 12,
        rbp: 106,
        rbx: 103,
        r11: 11,
        r10: 10,
        r9: 9,
        r8: 8,
        rax: 100,
        rcx: 102,
        rdx: 101,
        rsi: 104,
        rdi: 105,
        orig_rax: 0,
        rip: 116,
        cs: 0,
        eflags: 0,
        rsp: 107,
        ss: 0,
        fs_base: 0,
        gs_base: 0,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
    };
    for n in 0..=7u16 {
        assert_eq!(reg_value(&r, n), Some(100 + u64::from(n)));
    }
    for n in 8..=15u16 {
        assert_eq!(reg_value(&r, n), Some(u64::from(n)));
    }
    assert_eq!(reg_value(&r, 16), Some(116));
    assert_eq!(reg_value(&r, 17), None);
}

#[test]
fn pads_relocate_plain_and_rip_relative_instructions() {
    use crate::pad::build_pad;
    // push rbp
    let p = build_pad(&[0x55, 0x48, 0x89, 0xe5], 0x1000, 0x9000).unwrap();
    let mut want = vec![0x55, 0xFF, 0x25, 0, 0, 0, 0];
    want.extend_from_slice(&0x1001u64.to_le_bytes());
    assert_eq!(p, want);
    // lea rax, [rip+0x100] at 0x1000 (7 bytes) refers to 0x1107; at 0x9000 the
    // displacement must become 0x1107 - 0x9007.
    let p = build_pad(&[0x48, 0x8d, 0x05, 0x00, 0x01, 0x00, 0x00], 0x1000, 0x9000).unwrap();
    assert_eq!(&p[..3], &[0x48, 0x8d, 0x05]);
    let disp = i32::from_le_bytes(p[3..7].try_into().unwrap());
    assert_eq!(0x9007i64 + i64::from(disp), 0x1107);
    assert_eq!(&p[7..9], &[0xFF, 0x25]);
    assert_eq!(u64::from_le_bytes(p[13..21].try_into().unwrap()), 0x1007);
    // ret, call rel32, jmp rel8 and an undecodable byte stay single-stepped.
    assert!(build_pad(&[0xc3], 0x1000, 0x9000).is_none());
    assert!(build_pad(&[0xe8, 0, 0, 0, 0], 0x1000, 0x9000).is_none());
    assert!(build_pad(&[0xeb, 0x10], 0x1000, 0x9000).is_none());
    assert!(build_pad(&[0x0f, 0xff], 0x1000, 0x9000).is_none());
    // A rip-relative target more than 2 GiB away cannot be re-encoded.
    assert!(build_pad(&[0x48, 0x8d, 0x05, 0, 0, 0, 0], 0x1000, 0x7f00_0000_0000).is_none());
}

#[test]
fn memory_reads_hide_our_breakpoints_and_report_the_first_bad_byte() {
    use crate::tracer::{read_mem, Bp};
    use std::collections::BTreeMap;
    // Our own memory stands in for a target: same calls, no ptrace needed.
    let me = std::process::id();
    let data: Vec<u8> = (0u8..32).collect();
    let base = data.as_ptr() as u64;
    let mut bps = BTreeMap::new();
    bps.insert(
        base + 3,
        Bp {
            orig: 0xAA,
            entry: vec![],
            ret_refs: 1,
            rbrk: false,
        },
    );
    let mem = std::fs::File::open("/proc/self/mem").ok();
    for vm_ok in [true, false] {
        let mut vm = vm_ok;
        let mut buf = [0u8; 8];
        read_mem(me, mem.as_ref(), &bps, base, &mut buf, &mut vm).unwrap();
        assert_eq!(buf, [0, 1, 2, 0xAA, 4, 5, 6, 7]);
    }
    let mut vm = true;
    let mut buf = [0u8; 4];
    assert_eq!(
        read_mem(me, mem.as_ref(), &bps, 8, &mut buf, &mut vm),
        Err(8)
    );
    assert_eq!(
        read_mem(me, mem.as_ref(), &bps, u64::MAX - 1, &mut buf, &mut vm),
        Err(u64::MAX - 1)
    );
}

#[test]
fn restart_returns_are_recognised() {
    use crate::tracer::is_erestart;
    for e in [512i64, 513, 514, 516] {
        assert!(is_erestart((-e) as u64), "{e}");
    }
    // -ENOIOCTLCMD (515), -EINTR and ordinary values are real results.
    for v in [-515i64, -4, 0, 1, 512] {
        assert!(!is_erestart(v as u64), "{v}");
    }
}

#[test]
fn semaphores_go_up_once_and_down_never_below_zero() {
    use crate::tracer::Proc;
    // Our own memory stands in for a target's: the same /proc/PID/mem writes.
    let cells: Box<[u16; 3]> = Box::new([0, 7, u16::MAX]);
    let base = cells.as_ptr() as u64;
    let read = |i: u64| {
        // Read back through /proc too, never through `cells`, which the compiler
        // believes unchanged.
        let p = Proc::open(std::process::id());
        p.read_u16(base + 2 * i).unwrap()
    };
    let mut p = Proc::open(std::process::id());
    p.sem_up(base).unwrap();
    // A second site naming the same counter does not raise it twice.
    p.sem_up(base).unwrap();
    p.sem_up(base + 2).unwrap();
    assert_eq!((read(0), read(1)), (1, 8));
    // A saturated counter is refused (one more would wrap to 0, "off").
    assert!(p.sem_up(base + 4).is_err());
    assert_eq!(read(2), u16::MAX);
    assert_eq!(p.sems.len(), 2);
    p.restore_semaphores();
    assert_eq!((read(0), read(1), read(2)), (0, 7, u16::MAX));
    // Cleared by the program meanwhile: never taken below zero.
    p.restore_semaphores();
    assert_eq!(read(0), 0);
    drop(cells);
}
