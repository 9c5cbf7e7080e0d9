//! Unit tests of the shared-memory contract: plan and record encodings, the ring.

use std::cell::RefCell;

use capture_plan::{
    CapturePlan, ContextNeeds, DwarfReg, FieldPlan, FieldStatus, FileAddr, Op, PlanSet, ProbeSite,
    Record, SiteId, SiteKind,
};

use crate::wire::{self, Layout, SharedMem};

/// A shared file in a plain vector, for tests of the producer and consumer.
struct VecMem(RefCell<Vec<u8>>);

impl SharedMem for VecMem {
    fn len(&self) -> usize {
        self.0.borrow().len()
    }
    fn load(&self, off: usize) -> u64 {
        let m = self.0.borrow();
        m.get(off..off + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn store(&self, off: usize, v: u64) {
        self.write(off, &v.to_le_bytes());
    }
    fn write(&self, off: usize, bytes: &[u8]) {
        let mut m = self.0.borrow_mut();
        if off + bytes.len() <= m.len() {
            m[off..off + bytes.len()].copy_from_slice(bytes);
        }
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        let m = self.0.borrow();
        buf.copy_from_slice(&m[off..off + buf.len()]);
    }
}

fn all_ops_plan() -> PlanSet {
    let ops = vec![
        Op::Reg(DwarfReg(7)),
        Op::Const(0x1234_5678_9abc),
        Op::Add,
        Op::Const(3),
        Op::Sub,
        Op::Const(2),
        Op::Mul,
        Op::Const(0xff),
        Op::And,
        Op::Const(1),
        Op::Or,
        Op::Const(5),
        Op::Xor,
        Op::Const(1),
        Op::Shl,
        Op::Const(1),
        Op::Shr,
        Op::Const(1),
        Op::Sar,
        Op::Neg,
        Op::Not,
        Op::SignExtend(32),
        Op::Deref(8),
        Op::EmitValue(8),
    ];
    let plan = CapturePlan {
        fields: vec![
            FieldPlan {
                ops,
                label: "$everything".into(),
            },
            FieldPlan {
                ops: vec![Op::Reg(DwarfReg(5)), Op::EmitString(64)],
                label: "$name".into(),
            },
            FieldPlan {
                ops: vec![Op::Reg(DwarfReg(4)), Op::EmitBytes(24)],
                label: "$buf".into(),
            },
        ],
    };
    PlanSet {
        sites: vec![
            ProbeSite {
                id: SiteId(3),
                module: Default::default(),
                addr: FileAddr(0x4106_6b20),
                kind: SiteKind::Entry,
                plan: plan.clone(),
                needs: ContextNeeds {
                    comm: true,
                    ppid: false,
                    cpu: true,
                },
            },
            ProbeSite {
                id: SiteId(9),
                module: Default::default(),
                addr: FileAddr(0x4100_0000),
                kind: SiteKind::Return { return_plan: plan },
                plan: CapturePlan::default(),
                needs: ContextNeeds::default(),
            },
            // A return plan that reads memory at the return through an entry value.
            ProbeSite {
                id: SiteId(10),
                module: Default::default(),
                addr: FileAddr(0x4100_0040),
                kind: SiteKind::Return {
                    return_plan: CapturePlan {
                        fields: vec![FieldPlan {
                            ops: vec![Op::EntryField(0), Op::Deref(4), Op::EmitValue(4)],
                            label: "user_int(@entry($p))".into(),
                        }],
                    },
                },
                plan: CapturePlan {
                    fields: vec![FieldPlan {
                        ops: vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)],
                        label: "$p".into(),
                    }],
                },
                needs: ContextNeeds::default(),
            },
        ],
    }
}

#[test]
fn plan_sets_round_trip_with_every_op() {
    let p = all_ops_plan();
    let enc = wire::encode_plans(&p);
    assert_eq!(wire::decode_plans(&enc), Ok(p));
}

#[test]
fn truncated_or_corrupt_plan_encodings_are_errors() {
    let enc = wire::encode_plans(&all_ops_plan());
    for n in 0..enc.len() {
        assert!(
            wire::decode_plans(&enc[..n]).is_err(),
            "prefix {n} accepted"
        );
    }
    let mut extra = enc.clone();
    extra.push(0);
    assert!(wire::decode_plans(&extra).unwrap_err().contains("trailing"));
    // The first op of the first field: magic, count, id, addr, kind, needs, cr3, nfields,
    // label length, label, op count.
    let first_op = 4 + 4 + 4 + 8 + 1 + 1 + 8 + 4 + 2 + "$everything".len() + 4;
    assert_eq!(enc[first_op], wire::OP_REG);
    let mut bad = enc.clone();
    bad[first_op] = 0xee;
    let e = wire::decode_plans(&bad).unwrap_err();
    assert!(
        e.contains("unknown op code 0xee") && e.contains("$everything"),
        "{e}"
    );
}

#[test]
fn per_site_cr3_filters_round_trip_in_site_order() {
    let p = all_ops_plan();
    let ids: Vec<SiteId> = p.sites.iter().map(|s| s.id).collect();
    assert!(ids.len() >= 2);
    let enc = wire::encode_plans_with_cr3(&p, &[(ids[1], 0x1234_5000)]);
    let (back, cr3) = wire::decode_plans_with_cr3(&enc).unwrap();
    assert_eq!(back, p);
    let mut want = vec![0; ids.len()];
    want[1] = 0x1234_5000;
    assert_eq!(cr3, want);
    // Without filters every site has none.
    let (_, none) = wire::decode_plans_with_cr3(&wire::encode_plans(&p)).unwrap();
    assert!(none.iter().all(|&c| c == 0));
}

#[test]
fn a_plan_set_naming_one_site_id_twice_is_refused() {
    let mut p = all_ops_plan();
    p.sites[1].id = p.sites[0].id;
    let e = wire::check_plans(&p, 1 << 20).unwrap_err();
    assert!(e.contains("used twice"), "{e}");
}

#[test]
fn plan_switches_go_through_the_plan_area_and_are_bounded_by_it() {
    let lay = Layout::new(1, 4096, 4096);
    let mem = VecMem(RefCell::new(vec![0; lay.total as usize]));
    lay.write_header(&mem, 0);
    assert_eq!(lay.read_plans(&mem), Ok(Vec::new()));
    let enc = wire::encode_plans(&all_ops_plan());
    wire::write_plans(&mem, &lay, &enc, 7).unwrap();
    assert_eq!(mem.load(wire::H_PLAN_GEN), 7);
    assert_eq!(lay.read_plans(&mem).unwrap(), enc);
    // A set larger than the area is refused on the host, and a length word beyond it
    // is refused by the reader.
    let big = vec![0u8; 4097];
    assert!(wire::write_plans(&mem, &lay, &big, 8).is_err());
    assert_eq!(mem.load(wire::H_PLAN_GEN), 7);
    mem.store(wire::H_PLAN_LEN, 5000);
    assert!(lay.read_plans(&mem).unwrap_err().contains("exceeds"));
}

#[test]
fn check_plans_refuses_invalid_ops_return_sites_and_oversized_records() {
    let mut p = all_ops_plan();
    assert_eq!(wire::check_plans(&p, 1 << 20), Ok(()));
    p.sites[1].kind = SiteKind::ProcessBegin;
    let e = wire::check_plans(&p, 1 << 20).unwrap_err();
    assert!(e.contains("only entry and return probes"), "{e}");
    p.sites.truncate(1);
    assert_eq!(wire::check_plans(&p, 1 << 20), Ok(()));
    let e = wire::check_plans(&p, 256).unwrap_err();
    assert!(e.contains("more than half a ring"), "{e}");
    p.sites[0].plan.fields[1].ops[1] = Op::Deref(3);
    let e = wire::check_plans(&p, 1 << 20).unwrap_err();
    assert!(e.contains("bad deref size"), "{e}");
}

fn record(site: u32, n: usize) -> Record {
    let mut r = Record::new(SiteId(site), 0, 0, 77, 0x4106_6b20);
    r.fields.push(FieldStatus::Ok {
        offset: 0,
        len: n as u32,
    });
    r.fields.push(FieldStatus::Fault { addr: 0xdead });
    r.fields.push(FieldStatus::NoRegister(99));
    r.data = (0..n).map(|i| i as u8).collect();
    r
}

#[test]
fn records_round_trip_and_bad_ones_are_refused() {
    let r = record(5, 13);
    let mut enc = Vec::new();
    wire::encode_record(&r, &mut enc);
    assert_eq!(enc.len() % 8, 0);
    let mut want = r.clone();
    want.tid = 3;
    want.cpu = 2;
    assert_eq!(wire::decode_record(&enc, 0, 3, 2), Some(want.clone()));
    assert_eq!(wire::record_gen(&enc), 0);
    // The generation travels in the header, the record is otherwise the same.
    let mut g = Vec::new();
    wire::encode_record_gen(&r, 0xdead_beef, &mut g);
    assert_eq!(wire::record_gen(&g), 0xdead_beef);
    assert_eq!(wire::decode_record(&g, 0, 3, 2), Some(want));
    // A field pointing past the data is refused.
    let mut bad = enc.clone();
    bad[wire::REC_HEADER + 8] = 200;
    assert_eq!(wire::decode_record(&bad, 0, 3, 2), None);
    assert_eq!(wire::decode_record(&enc[..20], 0, 3, 2), None);
}

#[test]
fn layout_header_round_trips_and_is_checked() {
    let lay = Layout::new(2, 8192, 100);
    let mem = VecMem(RefCell::new(vec![0; lay.total as usize]));
    lay.write_header(&mem, 0);
    assert_eq!(Layout::from_header(&mem), Ok(lay));
    mem.store(wire::H_RINGS_OFF, 12);
    assert!(Layout::from_header(&mem).is_err());
    let short = VecMem(RefCell::new(vec![0; 4096]));
    lay.write_header(&short, 0);
    assert!(Layout::from_header(&short).is_err());
}

#[test]
fn ring_delivers_in_order_pads_at_the_end_and_counts_drops_exactly() {
    let lay = Layout::new(1, 4096, 0);
    let mem = VecMem(RefCell::new(vec![0; lay.total as usize]));
    lay.write_header(&mem, 0);
    let mut enc = Vec::new();
    let mut buf = Vec::new();
    let mut got: Vec<(u64, usize)> = Vec::new();
    let mut written = 0u64;
    // Records of varying sizes, consumed every few writes: some drop, the ring wraps.
    for i in 0..2000u64 {
        let n = (i as usize * 37) % 300;
        wire::encode_record(&record(i as u32, n), &mut enc);
        if wire::produce(&mem, &lay, 0, &mut enc) {
            written += 1;
        }
        if i % 23 == 0 {
            wire::consume(&mem, &lay, 0, &mut buf, &mut |b| {
                let r = wire::decode_record(b, 0, 1, 0).unwrap();
                assert_eq!(r, {
                    let mut w = record(r.site.0, r.data.len());
                    w.tid = 1;
                    w
                });
                got.push((wire::record_seq(b), r.site.0 as usize));
                true
            })
            .unwrap();
        }
    }
    wire::consume(&mem, &lay, 0, &mut buf, &mut |b| {
        got.push((
            wire::record_seq(b),
            wire::decode_record(b, 0, 1, 0).unwrap().site.0 as usize,
        ));
        true
    })
    .unwrap();
    let c = lay.ctrl(0);
    let (hits, dropped) = (mem.load(c + wire::R_HITS), mem.load(c + wire::R_DROPPED));
    assert_eq!(hits, 2000);
    assert!(
        dropped > 100,
        "the test must fill the ring ({dropped} drops)"
    );
    assert_eq!(got.len() as u64, written);
    assert_eq!(hits, got.len() as u64 + dropped);
    // Sequence numbers are the hit numbers: site i was hit i + 1-th.
    for (seq, site) in &got {
        assert_eq!(*seq, *site as u64 + 1);
    }
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn a_refused_record_stays_in_the_ring_until_it_reads_well() {
    let lay = Layout::new(1, 4096, 0);
    let mem = VecMem(RefCell::new(vec![0; lay.total as usize]));
    lay.write_header(&mem, 0);
    let mut enc = Vec::new();
    for i in 0..3 {
        wire::encode_record(&record(i, 8), &mut enc);
        assert!(wire::produce(&mem, &lay, 0, &mut enc));
    }
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let r = wire::consume(&mem, &lay, 0, &mut buf, &mut |b| {
        let site = wire::decode_record(b, 0, 1, 0).unwrap().site.0;
        if site == 1 {
            return false;
        }
        seen.push(site);
        true
    });
    assert!(
        matches!(r, Err((1, ref why)) if why.contains("undecodable")),
        "{r:?}"
    );
    let r = wire::consume(&mem, &lay, 0, &mut buf, &mut |b| {
        seen.push(wire::decode_record(b, 0, 1, 0).unwrap().site.0);
        true
    });
    assert_eq!(r, Ok(2));
    assert_eq!(seen, [0, 1, 2]);
}

#[test]
fn check_qemu_refuses_kvm_old_or_missing_qemu() {
    let e = crate::check_qemu("qemu-system-x86_64 -m 512 -enable-kvm").unwrap_err();
    assert!(e.contains("KVM"), "{e}");
    let e = crate::check_qemu("qemu-system-x86_64 -machine q35,accel=kvm").unwrap_err();
    assert!(e.contains("KVM"), "{e}");
    let e = crate::check_qemu("/nonexistent/qemu-system-x86_64 -m 1").unwrap_err();
    assert!(e.contains("--version"), "{e}");
    // `true` prints no version at all.
    let e = crate::check_qemu("true").unwrap_err();
    assert!(e.contains("cannot read the version"), "{e}");
}

#[test]
fn a_comm_field_rides_on_sites_that_need_it_and_comes_back_as_comm() {
    let mut p = all_ops_plan();
    p.sites[0].needs.comm = false;
    p.sites[1].needs.comm = true;
    let comm = FieldPlan {
        ops: vec![Op::Const(0x1000), Op::EmitString(32)],
        label: "execname()".into(),
    };
    let (aug, sites) = crate::add_comm(&p, Some(&comm));
    let n1 = p.sites[1].plan.fields.len();
    assert_eq!(aug.sites[0], p.sites[0]);
    assert_eq!(aug.sites[1].plan.fields.len(), n1 + 1);
    assert_eq!(sites[&p.sites[0].id.0], None);
    assert_eq!(sites[&p.sites[1].id.0], Some(n1));
    // Without a comm field nothing changes.
    let (same, none) = crate::add_comm(&p, None);
    assert_eq!(same, p);
    assert!(none.values().all(Option::is_none));
    // The record: field 0, the comm field ("task\0junk"), then a return field.
    let mut r = Record::new(SiteId(1), 0, 0, 0, 0);
    r.data = b"abcdtask\0junkxyz".to_vec();
    r.fields = vec![
        FieldStatus::Ok { offset: 0, len: 4 },
        FieldStatus::Ok { offset: 4, len: 9 },
        FieldStatus::Ok { offset: 13, len: 3 },
    ];
    crate::take_comm(&mut r, 1);
    assert_eq!(r.comm, "task");
    assert_eq!(r.fields.len(), 2);
    assert_eq!(r.field(0).unwrap(), b"abcd");
    assert_eq!(r.field(1).unwrap(), b"xyz");
    // A faulted comm field leaves comm empty; an index past the fields changes nothing.
    let mut f = Record::new(SiteId(1), 0, 0, 0, 0);
    f.fields = vec![FieldStatus::Fault { addr: 8 }];
    crate::take_comm(&mut f, 3);
    assert_eq!(f.fields.len(), 1);
    crate::take_comm(&mut f, 0);
    assert!(f.comm.is_empty() && f.fields.is_empty());
}
