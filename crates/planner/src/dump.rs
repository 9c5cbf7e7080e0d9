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

/// The `# probes` section of `stap -p2`: for each probe of `script` (after alias
/// expansion, the order handlers are numbered in), each point it resolved to, then the
/// probe's `locals` block (the runtime's `Elaboration::probe_locals`). A site prints as
/// stap prints it, `PP /* pc=SECTION+0xOFFSET */ /* <- PP */`, with the offset from the
/// module's first loaded byte and the section `.absolute` (ET_EXEC) or `.dynamic`
/// (ET_DYN); begin, end, error and timer points as `POINT /* <- POINT */`.
pub fn p2_probes(p: &Planned, script: &script_syntax::ast::Script, locals: &[String]) -> String {
    use script_syntax::ast::Item;
    let mut s = String::new();
    let mut bases: std::collections::HashMap<std::path::PathBuf, Option<(bool, u64)>> =
        std::collections::HashMap::new();
    let probes = script.items.iter().filter_map(|i| match i {
        Item::Probe(p) => Some(p),
        _ => None,
    });
    for (h, probe) in probes.enumerate() {
        let h32 = h as u32;
        let mut sites_done = false;
        for point in &probe.points {
            let text = point_text(point);
            let first = point.components.first().map_or("", |c| c.name.as_str());
            let plain = match first {
                "begin" => p.begin.contains(&h32),
                "end" => p.end.contains(&h32),
                "error" => p.error.contains(&h32),
                "timer" => p.timers.iter().any(|(t, _)| *t == h32),
                _ => false,
            };
            if plain {
                let _ = writeln!(s, "{text} /* <- {text} */");
                continue;
            }
            if sites_done {
                continue;
            }
            sites_done = true;
            for (site, b) in p.plans.sites.iter().zip(&p.bindings) {
                if b.probe != h32 {
                    continue;
                }
                let base = *bases
                    .entry(site.module.clone())
                    .or_insert_with(|| elf_base(&site.module));
                let pc = match base {
                    Some((true, base)) => {
                        format!(".dynamic+{:#x}", site.addr.0.wrapping_sub(base))
                    }
                    Some((false, base)) => {
                        format!(".absolute+{:#x}", site.addr.0.wrapping_sub(base))
                    }
                    None => format!("{:#x}", site.addr.0),
                };
                let _ = writeln!(s, "{} /* pc={pc} */ /* <- {} */", b.pp, b.pp);
            }
        }
        if let Some(l) = locals.get(h) {
            s.push_str(l);
        }
    }
    s
}

/// A probe point as the script wrote it: `timer.ms(100)`, `process("a").function("f")`.
fn point_text(point: &script_syntax::ast::ProbePoint) -> String {
    use script_syntax::ast::Literal;
    let parts: Vec<String> = point
        .components
        .iter()
        .map(|c| match &c.arg {
            None => c.name.clone(),
            Some(Literal::Number(n)) => format!("{}({n})", c.name),
            Some(Literal::String(t)) => format!("{}({})", c.name, script_syntax::print::quote(t)),
        })
        .collect();
    parts.join(".")
}

/// Whether `path` is an ET_DYN ELF file, and the address of its first loaded byte (the
/// lowest PT_LOAD's page): what stap's `pc=` offsets are relative to.
fn elf_base(path: &std::path::Path) -> Option<(bool, u64)> {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    let d = &head[..n];
    if d.get(..4)? != b"\x7fELF" || *d.get(4)? != 2 || *d.get(5)? != 1 {
        // Only 64-bit little-endian ELF: other targets print the bare address.
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?));
    let dynamic = u16_at(16)? == 3;
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    let mut base: Option<u64> = None;
    for i in 0..phnum {
        let o = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let ty = u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?);
        if ty == 1 {
            let vaddr = u64_at(o + 16)? & !0xfff;
            base = Some(base.map_or(vaddr, |b| b.min(vaddr)));
        }
    }
    Some((dynamic, base.unwrap_or(0)))
}
