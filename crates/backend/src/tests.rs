//! Unit tests of the plan interpreter against a fake target.

use super::*;
use capture_plan::{FieldPlan, SiteId};
use std::collections::HashMap;

struct Fake {
    regs: HashMap<u16, u64>,
    mem: Vec<(u64, Vec<u8>)>,
}

impl TargetAccess for Fake {
    fn reg(&mut self, reg: DwarfReg) -> Option<u64> {
        self.regs.get(&reg.0).copied()
    }
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        for (base, bytes) in &self.mem {
            if addr >= *base && addr + buf.len() as u64 <= base + bytes.len() as u64 {
                let o = (addr - base) as usize;
                buf.copy_from_slice(&bytes[o..o + buf.len()]);
                return Ok(());
            }
        }
        Err(addr)
    }
}

fn field(ops: Vec<Op>) -> FieldPlan {
    FieldPlan {
        ops,
        label: "t".into(),
    }
}

#[test]
fn register_memory_string_and_fault() {
    let mut f = Fake {
        regs: HashMap::from([(5, 0x1000), (7, 0x2000)]),
        mem: vec![
            (0x1000, b"hello\0xx".to_vec()),
            (0x2000, 0x1004u64.to_le_bytes().to_vec()),
        ],
    };
    let plan = CapturePlan {
        fields: vec![
            field(vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)]),
            field(vec![Op::Reg(DwarfReg(5)), Op::EmitString(64)]),
            field(vec![Op::Reg(DwarfReg(7)), Op::Deref(8), Op::EmitString(64)]),
            field(vec![Op::Const(0x9999), Op::Deref(4), Op::EmitValue(4)]),
            field(vec![
                Op::Reg(DwarfReg(5)),
                Op::Const(1),
                Op::Add,
                Op::EmitBytes(2),
            ]),
        ],
    };
    plan.verify().unwrap();
    let mut rec = Record::new(SiteId(0), 1, 1, 0, 0);
    execute(&plan, &mut f, &mut rec);
    assert_eq!(rec.field(0).unwrap(), &0x1000u64.to_le_bytes());
    assert_eq!(rec.field(1).unwrap(), b"hello");
    assert_eq!(rec.field(2).unwrap(), b"o");
    assert_eq!(rec.field(3), Err(FieldStatus::Fault { addr: 0x9999 }));
    assert_eq!(rec.field(4).unwrap(), b"el");
}

#[test]
fn verify_rejects_malformed() {
    let bad = CapturePlan {
        fields: vec![field(vec![Op::Add, Op::EmitValue(8)])],
    };
    assert!(bad.verify().is_err());
    let bad = CapturePlan {
        fields: vec![field(vec![Op::Const(1), Op::EmitValue(3)])],
    };
    assert!(bad.verify().is_err());
    let bad = CapturePlan {
        fields: vec![field(vec![Op::Const(1), Op::EmitValue(8), Op::Const(1)])],
    };
    assert!(bad.verify().is_err());
}

/// A return plan reads memory at the return through a pointer saved by the entry
/// plan: the value at entry is the pointer, the bytes are those at the return.
#[test]
fn return_plan_reads_through_an_entry_value() {
    let entry = CapturePlan {
        fields: vec![
            field(vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)]),
            field(vec![Op::Reg(DwarfReg(5)), Op::Deref(4), Op::EmitValue(4)]),
            field(vec![Op::Const(0x9999), Op::Deref(8), Op::EmitValue(8)]),
            field(vec![Op::Reg(DwarfReg(5)), Op::EmitString(8)]),
        ],
    };
    let ret = CapturePlan {
        fields: vec![
            field(vec![Op::EntryField(0), Op::EmitBytes(4)]),
            field(vec![
                Op::EntryField(0),
                Op::Const(4),
                Op::Add,
                Op::Deref(4),
                Op::EmitValue(4),
            ]),
            field(vec![Op::EntryField(2), Op::EmitBytes(4)]),
            field(vec![
                Op::Reg(DwarfReg(0)),
                Op::EntryField(1),
                Op::Add,
                Op::EmitValue(8),
            ]),
        ],
    };
    entry.verify().unwrap();
    ret.verify_return(&entry).unwrap();
    let mut f = Fake {
        regs: HashMap::from([(5, 0x1000), (0, 7)]),
        mem: vec![(0x1000, vec![1, 0, 0, 0, 2, 0, 0, 0])],
    };
    let mut rec = Record::new(SiteId(0), 1, 1, 0, 0);
    execute(&entry, &mut f, &mut rec);
    // The function writes through the pointer before it returns.
    f.mem = vec![(0x1000, vec![0x2a, 0, 0, 0, 0x2b, 0, 0, 0])];
    f.regs.insert(5, 0xdead);
    execute(&ret, &mut f, &mut rec);
    assert_eq!(rec.fields.len(), 8);
    assert_eq!(rec.field(1).unwrap(), &1u32.to_le_bytes());
    assert_eq!(rec.field(4).unwrap(), &0x2au32.to_le_bytes());
    assert_eq!(rec.field(5).unwrap(), &0x2bu32.to_le_bytes());
    // A value that faulted at entry makes the fields built on it fault alike.
    assert_eq!(rec.field(6), Err(FieldStatus::Fault { addr: 0x9999 }));
    assert_eq!(rec.field(7).unwrap(), &8u64.to_le_bytes());
}

#[test]
fn verify_checks_entry_field_references() {
    let entry = CapturePlan {
        fields: vec![
            field(vec![Op::Reg(DwarfReg(5)), Op::EmitValue(8)]),
            field(vec![Op::Reg(DwarfReg(5)), Op::EmitString(8)]),
        ],
    };
    let uses = |k| CapturePlan {
        fields: vec![field(vec![Op::EntryField(k), Op::EmitValue(8)])],
    };
    assert!(uses(0).verify_return(&entry).is_ok());
    // Not in an entry plan, not on a string field, not past the entry plan.
    assert!(uses(0).verify().is_err());
    assert!(uses(1).verify_return(&entry).is_err());
    assert!(uses(2).verify_return(&entry).is_err());
    let set = |ret: CapturePlan, plan: CapturePlan| capture_plan::PlanSet {
        sites: vec![capture_plan::ProbeSite {
            id: SiteId(0),
            module: "/x".into(),
            addr: capture_plan::FileAddr(0),
            kind: capture_plan::SiteKind::Return { return_plan: ret },
            plan,
            needs: Default::default(),
        }],
    };
    assert!(set(uses(0), entry.clone()).verify().is_ok());
    assert!(set(uses(1), entry.clone()).verify().is_err());
    assert!(set(uses(0), uses(0)).verify().is_err());
}

/// A malformed plan that skipped verification still cannot panic.
#[test]
fn unverified_entry_field_is_a_fault() {
    let plan = CapturePlan {
        fields: vec![field(vec![Op::EntryField(9), Op::EmitValue(8)])],
    };
    let mut f = Fake {
        regs: HashMap::new(),
        mem: Vec::new(),
    };
    let mut rec = Record::new(SiteId(0), 1, 1, 0, 0);
    execute(&plan, &mut f, &mut rec);
    assert_eq!(rec.field(0), Err(FieldStatus::Fault { addr: 0 }));
}
