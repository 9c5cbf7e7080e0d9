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
