//! Capture plans for user stacks (`ubacktrace()` and friends): the registers and a
//! page-split copy of the stack, unwound later in snaptap with the modules' CFI.

use capture_plan::{Decode, DwarfReg, Op};

const PAGE: u64 = 4096;

/// Pages of stack copied per backtrace for `-D MAXUSTACKBYTES=bytes` (see
/// `PlanOptions::max_ustack_bytes`): the bytes rounded up to pages, at least one.
/// The copy starts at the page holding rsp, so with the default 16 KiB a hit copies
/// between 12 and 16 KiB of the frames above rsp.
pub(crate) fn stack_pages(bytes: u32) -> u32 {
    bytes
        .div_ceil(PAGE as u32)
        .clamp(1, crate::MAX_USTACK_PAGES)
}

/// The functions whose value depends on the stack at the probe: each call gets
/// the registers and the stack in its site's plan. The symbolising functions
/// (`usymname(addr)`, `print_ustack(stk)`...) work on values the handler already
/// has and need nothing captured.
pub(crate) fn needs_stack(name: &str) -> bool {
    matches!(
        name,
        "ubacktrace"
            | "print_ubacktrace"
            | "sprint_ubacktrace"
            | "print_ubacktrace_brief"
            | "ucallers"
    )
}

/// Adds the fields of one user stack through `add` (which appends a field program
/// and returns its id) and says how to decode them.
///
/// The stack is copied in page-sized, page-aligned pieces rather than in one field:
/// a field that faults is lost whole, and the top of the main thread's stack is
/// often only a few KiB above a probe's rsp, so one 16 KiB field would fault on
/// most hits. Pieces past the top fault alone and the unwinder uses those below.
pub(crate) fn backtrace_fields(pages: u32, add: &mut dyn FnMut(Vec<Op>, &str) -> u32) -> Decode {
    let pages = pages.max(1);
    let regs = (0..=16u16)
        .map(|r| {
            Some(add(
                vec![Op::Reg(DwarfReg(r)), Op::EmitValue(8)],
                "ustack register",
            ))
        })
        .collect();
    let mut stack = 0;
    for i in 0..pages {
        let mut ops = vec![Op::Reg(DwarfReg::RSP), Op::Const(!(PAGE - 1)), Op::And];
        if i > 0 {
            ops.extend([Op::Const(u64::from(i) * PAGE), Op::Add]);
        }
        ops.push(Op::EmitBytes(PAGE as u32));
        let f = add(ops, "ustack page");
        if i == 0 {
            stack = f;
        }
    }
    Decode::Backtrace {
        regs,
        stack,
        more_pages: pages - 1,
    }
}
