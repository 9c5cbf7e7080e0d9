//! Registers: the register map from the target description (`target.xml` and its
//! includes) or the fixed x86_64 `g` layout, and reads with `g` (all) or `p` (one).
//!
//! The stub numbers registers in description order (a `regnum` attribute restarts the
//! count); the `g` reply holds them in that order, each `bitsize / 8` bytes, little
//! endian. Plans name registers by DWARF number, so the map translates names to DWARF
//! numbers (x86_64: rax 0, rdx 1, rcx 2, rbx 3, rsi 4, rdi 5, rbp 6, rsp 7, r8-r15 8-15,
//! rip 16; i386: eax 0, ecx 1, edx 2, ebx 3, esp 4, ebp 5, esi 6, edi 7, eip 8).

use std::collections::HashMap;

use crate::packet::{from_hex, parse_hex_u64};
use crate::session::Session;
use crate::Error;

/// One XML start (or empty-element) tag, with its attributes and the text after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// Element name, e.g. `reg` or `xi:include`.
    pub name: String,
    attrs: Vec<(String, String)>,
    /// Character data up to the next tag (for `<architecture>`).
    pub text: String,
}

impl Tag {
    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

/// The start tags of an XML document, in order. A deliberately small scanner: target
/// descriptions and library lists use no entities beyond attributes in quotes, and
/// anything it cannot read is skipped rather than fatal.
pub fn tags(xml: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if let Some(r) = rest.strip_prefix("!--") {
            rest = r.find("-->").map_or("", |e| &r[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let inner = &rest[..gt];
        rest = &rest[gt + 1..];
        if inner.starts_with(['/', '?', '!']) {
            continue;
        }
        let inner = inner.trim_end_matches('/');
        let name_end = inner
            .find(|c: char| c.is_whitespace())
            .unwrap_or(inner.len());
        let name = inner[..name_end].to_string();
        let mut attrs = Vec::new();
        let mut a = &inner[name_end..];
        while let Some(eq) = a.find('=') {
            let key = a[..eq].trim().to_string();
            let after = a[eq + 1..].trim_start();
            let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                break;
            };
            let body = &after[1..];
            let Some(end) = body.find(q) else { break };
            attrs.push((key, body[..end].to_string()));
            a = &body[end + 1..];
        }
        let text = rest[..rest.find('<').unwrap_or(rest.len())]
            .trim()
            .to_string();
        out.push(Tag { name, attrs, text });
    }
    out
}

/// Which register set the target has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 (`i386:x86-64`).
    X86_64,
    /// i386.
    I386,
}

impl Arch {
    /// Bytes in a pointer (a return address on the stack).
    pub fn ptr_size(self) -> usize {
        match self {
            Arch::X86_64 => 8,
            Arch::I386 => 4,
        }
    }

    /// DWARF number of the program counter.
    pub fn pc(self) -> u16 {
        match self {
            Arch::X86_64 => 16,
            Arch::I386 => 8,
        }
    }

    /// DWARF number of the stack pointer.
    pub fn sp(self) -> u16 {
        match self {
            Arch::X86_64 => 7,
            Arch::I386 => 4,
        }
    }

    /// The DWARF number of a register named `name`, if it has one we use.
    pub fn dwarf(self, name: &str) -> Option<u16> {
        let table: &[&str] = match self {
            Arch::X86_64 => &[
                "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
                "r12", "r13", "r14", "r15", "rip",
            ],
            Arch::I386 => &[
                "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip",
            ],
        };
        table.iter().position(|n| *n == name).map(|i| i as u16)
    }
}

/// Where one register is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegDesc {
    /// Its name in the description.
    pub name: String,
    /// The stub's register number (for `p`).
    pub regnum: u32,
    /// Byte offset in the `g` reply.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// The target's registers as far as plans need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegMap {
    /// The register set.
    pub arch: Arch,
    /// DWARF number to location.
    pub by_dwarf: HashMap<u16, RegDesc>,
    /// Built from a target description (else the fixed layout).
    pub from_xml: bool,
}

impl RegMap {
    /// The fixed x86_64 `g` layout GDB assumes without a description: rax, rbx, rcx,
    /// rdx, rsi, rdi, rbp, rsp, r8-r15, rip, 8 bytes each.
    pub fn fixed_x86_64() -> RegMap {
        let order = [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15", "rip",
        ];
        let mut by_dwarf = HashMap::new();
        for (i, n) in order.iter().enumerate() {
            if let Some(d) = Arch::X86_64.dwarf(n) {
                by_dwarf.insert(
                    d,
                    RegDesc {
                        name: n.to_string(),
                        regnum: i as u32,
                        offset: i * 8,
                        size: 8,
                    },
                );
            }
        }
        RegMap {
            arch: Arch::X86_64,
            by_dwarf,
            from_xml: false,
        }
    }

    /// Builds the map from `target.xml`, fetching included files through `fetch`.
    /// `Err` when the description has no usable general registers.
    pub fn from_target_xml(
        top: &str,
        fetch: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<RegMap, String> {
        let mut regs: Vec<(String, u32, usize)> = Vec::new();
        let mut arch_name = String::new();
        let mut next = 0u32;
        // Includes are expanded in place, depth-first, as the description's order
        // defines register numbers.
        let mut pending: Vec<Vec<Tag>> = vec![tags(top)];
        let mut fetched = 0;
        while let Some(mut list) = pending.pop() {
            if list.is_empty() {
                continue;
            }
            let tag = list.remove(0);
            pending.push(list);
            match tag.name.as_str() {
                "architecture" => arch_name = tag.text.clone(),
                "xi:include" | "include" => {
                    let href = tag.attr("href").unwrap_or_default();
                    fetched += 1;
                    if pending.len() > 8 || fetched > 64 {
                        return Err("target description includes nest too deeply".into());
                    }
                    match fetch(&href) {
                        Some(doc) => pending.push(tags(&doc)),
                        None => return Err(format!("cannot read included {href}")),
                    }
                }
                "reg" => {
                    let name = tag.attr("name").unwrap_or_default();
                    let bits: usize = tag
                        .attr("bitsize")
                        .and_then(|b| b.parse().ok())
                        .unwrap_or(0);
                    if let Some(n) = tag.attr("regnum").and_then(|r| r.parse().ok()) {
                        next = n;
                    }
                    // A register is at most a few hundred bytes (zmm: 64); a bogus
                    // size must not overflow the offset arithmetic.
                    regs.push((name, next, bits.div_ceil(8).min(1 << 12)));
                    next = next.saturating_add(1);
                }
                _ => {}
            }
        }
        let arch = if arch_name.contains("x86-64") || regs.iter().any(|r| r.0 == "rip") {
            Arch::X86_64
        } else if arch_name.starts_with("i386") || regs.iter().any(|r| r.0 == "eip") {
            Arch::I386
        } else {
            return Err(format!("unsupported architecture '{arch_name}'"));
        };
        regs.sort_by_key(|r| r.1);
        let mut offset = 0usize;
        let mut by_dwarf = HashMap::new();
        for (name, regnum, size) in regs {
            if let Some(d) = arch.dwarf(&name) {
                by_dwarf.insert(
                    d,
                    RegDesc {
                        name: name.clone(),
                        regnum,
                        offset,
                        size,
                    },
                );
            }
            offset = offset.saturating_add(size);
        }
        if !by_dwarf.contains_key(&arch.pc()) || !by_dwarf.contains_key(&arch.sp()) {
            return Err("the target description has no pc or stack pointer".into());
        }
        Ok(RegMap {
            arch,
            by_dwarf,
            from_xml: true,
        })
    }
}

/// Register values of one stopped thread, by DWARF number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegValues {
    vals: HashMap<u16, u64>,
}

impl RegValues {
    /// The value of DWARF register `d`.
    pub fn get(&self, d: u16) -> Option<u64> {
        self.vals.get(&d).copied()
    }

    /// Sets DWARF register `d` (tests and expedited registers).
    pub fn set(&mut self, d: u16, v: u64) {
        self.vals.insert(d, v);
    }
}

fn le(bytes: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    let n = bytes.len().min(8);
    v[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(v)
}

/// Decodes a `g` reply (hex; `xx` marks an unavailable byte) with `map`.
pub fn parse_g(reply: &[u8], map: &RegMap) -> RegValues {
    let mut out = RegValues::default();
    for (d, r) in &map.by_dwarf {
        let (a, b) = (r.offset * 2, (r.offset + r.size) * 2);
        if let Some(hex) = reply.get(a..b) {
            if let Some(bytes) = from_hex(hex) {
                out.set(*d, le(&bytes));
            }
        }
    }
    out
}

impl Session {
    /// Reads the registers the map knows: one `g`, then `p` for any the `g` reply did
    /// not cover.
    pub fn read_regs(&mut self, map: &RegMap) -> Result<RegValues, Error> {
        let r = self.request(b"g")?;
        if r.first() == Some(&b'E') && r.len() == 3 {
            return Err(Error::Protocol(format!(
                "the stub refused to read registers: {}",
                String::from_utf8_lossy(&r)
            )));
        }
        let mut vals = parse_g(&r, map);
        if map.from_xml {
            for (d, desc) in &map.by_dwarf {
                if vals.get(*d).is_none() {
                    if let Some(v) = self.read_reg(desc)? {
                        vals.set(*d, v);
                    }
                }
            }
        }
        Ok(vals)
    }

    /// Reads one register with `p`; `None` when unavailable.
    pub fn read_reg(&mut self, desc: &RegDesc) -> Result<Option<u64>, Error> {
        let r = self.request(format!("p{:x}", desc.regnum).as_bytes())?;
        Ok(from_hex(&r).filter(|b| !b.is_empty()).map(|b| le(&b)))
    }
}

/// Parses a hex register number from a stop reply's expedited list.
pub fn regnum(s: &[u8]) -> Option<u32> {
    parse_hex_u64(s).and_then(|v| u32::try_from(v).ok())
}
