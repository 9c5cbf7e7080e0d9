//! A deterministic text dump of a planning result, for `-p3` and golden tests.

use std::fmt::Write;

use capture_plan::{Decode, PrettyPart, SiteKind};

use crate::Planned;

/// Renders `p` as text: handlers of begin/end/error/timer probes, then every site
/// with its module, link-time address, kind, binding, fields and captures.
pub fn dump(p: &Planned) -> String {
    let mut s = String::new();
    let list = |v: &[u32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !p.begin.is_empty() {
        let _ = writeln!(s, "begin: probe {}", list(&p.begin));
    }
    if !p.end.is_empty() {
        let _ = writeln!(s, "end: probe {}", list(&p.end));
    }
    if !p.error.is_empty() {
        let _ = writeln!(s, "error: probe {}", list(&p.error));
    }
    for (h, d) in &p.timers {
        let _ = writeln!(s, "timer: probe {h} every {}ns", d.as_nanos());
    }
    for (site, b) in p.plans.sites.iter().zip(&p.bindings) {
        let kind = match &site.kind {
            SiteKind::Entry => "entry",
            SiteKind::Return { .. } => "return",
            SiteKind::ProcessBegin => "process-begin",
            SiteKind::ProcessEnd => "process-end",
            SiteKind::SyscallEntry => "syscall",
            SiteKind::SyscallReturn => "syscall-return",
            SiteKind::Semaphore => "semaphore",
            SiteKind::ThreadBegin => "thread-begin",
            SiteKind::ThreadEnd => "thread-end",
        };
        let _ = writeln!(
            s,
            "site {} probe {} {kind} {}+{:#x} {}",
            site.id.0,
            b.probe,
            site.module.display(),
            site.addr.0,
            b.pp
        );
        if !b.function.is_empty() {
            let _ = writeln!(s, "  function {}", b.function);
        }
        let n = &site.needs;
        if n.comm || n.ppid || n.cpu {
            let mut v = Vec::new();
            if n.comm {
                v.push("comm");
            }
            if n.ppid {
                v.push("ppid");
            }
            if n.cpu {
                v.push("cpu");
            }
            let _ = writeln!(s, "  needs {}", v.join(" "));
        }
        let _ = write!(s, "{}", site.plan);
        if let SiteKind::Return { return_plan } = &site.kind {
            let base = site.plan.fields.len();
            for (i, f) in return_plan.fields.iter().enumerate() {
                let one = capture_plan::CapturePlan {
                    fields: vec![f.clone()],
                };
                let text = one.to_string();
                let text =
                    text.replacen("field 0 ", &format!("field {} (at return) ", base + i), 1);
                s.push_str(&text);
            }
        }
        for (id, d) in &b.captures {
            let _ = writeln!(s, "  capture e{id} = {}", decode_text(d));
        }
    }
    s
}

fn decode_text(d: &Decode) -> String {
    match d {
        Decode::Int {
            field,
            size,
            signed,
        } => format!(
            "{}{}(field {field})",
            if *signed { "s" } else { "u" },
            size * 8
        ),
        Decode::Bitfield {
            field,
            size,
            signed,
            bit_offset,
            bit_size,
        } => format!(
            "{}bits[{bit_offset}+{bit_size}] of {}(field {field})",
            if *signed { "s" } else { "u" },
            size * 8
        ),
        Decode::Str { field } => format!("str(field {field})"),
        Decode::Bytes { field } => format!("bytes(field {field})"),
        Decode::Pretty(parts) => {
            let v: Vec<String> = parts
                .iter()
                .map(|p| match p {
                    PrettyPart::Text(t) => format!("{t:?}"),
                    PrettyPart::Dec(d) => format!("dec {}", decode_text(d)),
                    PrettyPart::Hex(d) => format!("hex {}", decode_text(d)),
                    PrettyPart::Quoted(d) => format!("quoted {}", decode_text(d)),
                    PrettyPart::Char(d) => format!("char {}", decode_text(d)),
                })
                .collect();
            format!("pretty[{}]", v.join(", "))
        }
        Decode::Backtrace {
            regs,
            stack,
            more_pages,
        } => {
            let r: Vec<String> = regs
                .iter()
                .map(|f| f.map_or("-".to_string(), |f| f.to_string()))
                .collect();
            format!(
                "backtrace(regs [{}], stack fields {stack}..={})",
                r.join(" "),
                stack + more_pages
            )
        }
    }
}
