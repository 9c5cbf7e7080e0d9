//! The shared-memory contract between snaptap and the QEMU plugin: the file layout, the
//! plan-set encoding, the ring record encoding and the ring producer/consumer.
//!
//! One file in `/dev/shm` holds, in order: a header page (magic, version, sizes, the
//! `armed` word snaptap writes, the `status` word and message the plugin writes, the
//! plan-set generation words), one control block per vCPU ring (producer `head`, `hits`,
//! `dropped` on one cache line, consumer `tail` on the next), the plan area (room for
//! an encoded [`PlanSet`] of up to its capacity), then the rings' data. All integers are
//! little-endian; every offset the reader takes from the file is bounds checked against
//! the file's length before use.
//!
//! Moving probes while the guest runs: snaptap writes a new encoded plan set into the
//! plan area, its length into `H_PLAN_LEN`, then bumps `H_PLAN_GEN`; the plugin notices,
//! checks the set exactly as at load, and either rejects it (message, `H_PLAN_RESULT` =
//! [`PLAN_REJECTED`], the old set stays active) or re-translates with the new set
//! (`H_PLAN_RESULT` = [`PLAN_ACCEPTED`]); in both cases it then stores the generation
//! into `H_PLAN_ACK`. snaptap writes the plan area only while `ACK == GEN`. Every record
//! carries the generation of the plan set that made it, so a site id is never read
//! against the wrong set.
//!
//! Rings hold variable-length records, 8-byte aligned, that never wrap: a record that
//! does not fit before the end of the ring is preceded by a padding record covering the
//! rest. `head` and `tail` count bytes ever written and consumed; the producer publishes
//! a record by storing `head` after its bytes, the consumer frees space by storing
//! `tail` after reading them. A record that does not fit in the free space is dropped
//! and counted; `hits = delivered + dropped` per ring.

use capture_plan::{
    CapturePlan, ContextNeeds, DwarfReg, FieldPlan, FieldStatus, FileAddr, Op, PlanSet, ProbeSite,
    Record, SiteId, SiteKind,
};

/// File magic ("SNAPTAP" and a NUL).
pub const MAGIC: u64 = u64::from_le_bytes(*b"SNAPTAP\0");
/// Layout version; the plugin refuses any other.
pub const VERSION: u32 = 2;

/// Header: magic (u64).
pub const H_MAGIC: usize = 0;
/// Header: layout version (low 32 bits) and number of rings (high 32 bits).
pub const H_VERSION: usize = 8;
/// Header: data bytes per ring (u64).
pub const H_RING_BYTES: usize = 16;
/// Header: offset of the encoded plan set (u64).
pub const H_PLAN_OFF: usize = 24;
/// Header: length of the encoded plan set in the plan area (u64; at most `H_PLAN_CAP`).
pub const H_PLAN_LEN: usize = 32;
/// Header: offset of the first ring's data (u64).
pub const H_RINGS_OFF: usize = 40;
/// Header: only hits whose `cr3` equals this are recorded; 0 = every address space.
pub const H_CR3: usize = 48;
/// Header: 1 while probes are armed (written by snaptap only).
pub const H_ARMED: usize = 56;
/// Header: one of the `STATUS_*` values (written by the plugin only).
pub const H_STATUS: usize = 64;
/// Header: hits on vCPUs without a ring (each also counted as a drop).
pub const H_UNRINGED: usize = 72;
/// Header: probe instructions instrumented so far (translations).
pub const H_INSTRUMENTED: usize = 80;
/// Header: length of the plugin's message (u64).
pub const H_MSG_LEN: usize = 88;
/// Header: the plugin's message bytes (UTF-8).
pub const H_MSG: usize = 96;
/// Longest message.
pub const MSG_MAX: usize = 1024;
/// Header: bytes reserved for the plan area (u64).
pub const H_PLAN_CAP: usize = 1152;
/// Header: generation of the plan set in the plan area (written by snaptap only).
pub const H_PLAN_GEN: usize = 1160;
/// Header: the last generation the plugin has accepted or rejected (plugin only).
pub const H_PLAN_ACK: usize = 1168;
/// Header: [`PLAN_ACCEPTED`] or [`PLAN_REJECTED`] for `H_PLAN_ACK` (plugin only).
pub const H_PLAN_RESULT: usize = 1176;
/// Header: generation of the plan set the probes run now (plugin only).
pub const H_PLAN_ACTIVE: usize = 1184;
/// Header: pid of the snaptap session attached to this file, 0 if none (snaptap only).
pub const H_SESSION: usize = 1192;
/// Header: 1 if the plugin created this file itself (`control=PATH`) and removes it
/// when QEMU exits.
pub const H_PLUGIN_OWNED: usize = 1200;
/// Header: QEMU's pid (written by the plugin at load), so an attached session notices a
/// QEMU that died without its exit hook.
pub const H_QEMU_PID: usize = 1208;
/// The plan set of `H_PLAN_ACK` is the active one.
pub const PLAN_ACCEPTED: u64 = 1;
/// The plan set of `H_PLAN_ACK` was refused (the message says why); the previous one
/// stays active.
pub const PLAN_REJECTED: u64 = 2;
/// Plan-area capacity when nothing else is asked for (tmpfs allocates only the pages
/// written, so an unused capacity costs nothing).
pub const DEFAULT_PLAN_CAP: u64 = 1 << 20;
/// First ring control block.
pub const CTRL_OFF: usize = 4096;
/// Bytes per ring control block.
pub const CTRL_STRIDE: usize = 128;
/// Ring control: producer position (bytes ever written).
pub const R_HEAD: usize = 0;
/// Ring control: armed probe hits on this vCPU.
pub const R_HITS: usize = 8;
/// Ring control: records dropped because the ring was full.
pub const R_DROPPED: usize = 16;
/// Ring control: consumer position (bytes ever consumed), on its own cache line.
pub const R_TAIL: usize = 64;

/// The plugin has not loaded the plans yet.
pub const STATUS_PENDING: u64 = 0;
/// The plugin loaded the plans and instruments probe sites.
pub const STATUS_READY: u64 = 1;
/// The plugin refused the plans; the message says why.
pub const STATUS_REJECTED: u64 = 2;
/// QEMU is exiting; the plugin records nothing more.
pub const STATUS_EXITED: u64 = 3;

/// Site id marking a padding record (skip to the ring's start).
pub const PAD_SITE: u32 = u32::MAX;
/// Bytes of a record header (before the field table): length, site, time, ip, field
/// count, data length, the record's sequence number (the ring's hit count when it was
/// written, so gaps between delivered records are exactly the drops in between), the
/// plan-set generation that made it (u32) and 4 reserved bytes.
pub const REC_HEADER: usize = 48;
/// Bytes per field table entry.
pub const REC_FIELD: usize = 16;
/// Not a DWARF register: the plugin answers `Op::Reg(DwarfReg(CR3_REG))` with the vCPU's
/// `cr3` (the address-space root the `cr3` filter compares).
pub const CR3_REG: u16 = 0x8100;
/// Largest ring accepted (records carry 32-bit lengths).
pub const MAX_RING_BYTES: u64 = 1 << 30;
/// Most rings (vCPUs) accepted.
pub const MAX_RINGS: u32 = 256;

/// Where everything lives in the shared file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of rings (one per vCPU index below it).
    pub nrings: u32,
    /// Data bytes per ring (a multiple of 8).
    pub ring_bytes: u64,
    /// Offset of the plan area.
    pub plan_off: u64,
    /// Its capacity in bytes.
    pub plan_cap: u64,
    /// Offset of ring 0's data.
    pub rings_off: u64,
    /// Total file length.
    pub total: u64,
}

fn page_up(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

impl Layout {
    /// The layout for `nrings` rings of `ring_bytes` (rounded up to 8) and a plan area
    /// of `plan_cap` bytes.
    pub fn new(nrings: u32, ring_bytes: u64, plan_cap: u64) -> Layout {
        let ring_bytes = ring_bytes.div_ceil(8) * 8;
        let plan_off = page_up((CTRL_OFF + nrings as usize * CTRL_STRIDE) as u64);
        let rings_off = page_up(plan_off + plan_cap);
        Layout {
            nrings,
            ring_bytes,
            plan_off,
            plan_cap,
            rings_off,
            total: rings_off + u64::from(nrings) * ring_bytes,
        }
    }

    /// Reads and checks the layout a header describes, for a file of `file_len` bytes.
    pub fn from_header(mem: &dyn SharedMem) -> Result<Layout, String> {
        if mem.len() < CTRL_OFF {
            return Err("the shared file is shorter than its header".into());
        }
        if mem.load(H_MAGIC) != MAGIC {
            return Err("the shared file has no snaptap header".into());
        }
        let version = mem.load(H_VERSION) & 0xffff_ffff;
        if version != u64::from(VERSION) {
            return Err(format!(
                "shared layout version {version}, this plugin reads {VERSION}"
            ));
        }
        let nrings = (mem.load(H_VERSION) >> 32) as u32;
        let ring_bytes = mem.load(H_RING_BYTES);
        if nrings == 0 || nrings > MAX_RINGS {
            return Err(format!("bad ring count {nrings}"));
        }
        if ring_bytes == 0 || ring_bytes > MAX_RING_BYTES || !ring_bytes.is_multiple_of(8) {
            return Err(format!("bad ring size {ring_bytes}"));
        }
        let cap = mem.load(H_PLAN_CAP);
        if cap > MAX_RING_BYTES {
            return Err(format!("bad plan area size {cap}"));
        }
        let want = Layout::new(nrings, ring_bytes, cap);
        if mem.load(H_PLAN_OFF) != want.plan_off
            || mem.load(H_RINGS_OFF) != want.rings_off
            || want.total > mem.len() as u64
        {
            return Err("the shared file's offsets are inconsistent".into());
        }
        Ok(want)
    }

    /// Writes this layout's header fields (not the plans, not the rings); the plan area
    /// is empty (generation 0, length 0) until [`write_plans`] fills it.
    pub fn write_header(&self, mem: &dyn SharedMem, cr3: u64) {
        mem.store(H_MAGIC, MAGIC);
        mem.store(
            H_VERSION,
            u64::from(VERSION) | (u64::from(self.nrings) << 32),
        );
        mem.store(H_RING_BYTES, self.ring_bytes);
        mem.store(H_PLAN_OFF, self.plan_off);
        mem.store(H_PLAN_CAP, self.plan_cap);
        mem.store(H_PLAN_LEN, 0);
        mem.store(H_RINGS_OFF, self.rings_off);
        mem.store(H_CR3, cr3);
    }

    /// The encoded plan set currently in the plan area (its length bounded by the
    /// capacity), for the plugin.
    pub fn read_plans(&self, mem: &dyn SharedMem) -> Result<Vec<u8>, String> {
        let len = mem.load(H_PLAN_LEN);
        if len > self.plan_cap {
            return Err(format!(
                "the plan set ({len} bytes) exceeds the plan area ({} bytes)",
                self.plan_cap
            ));
        }
        let mut enc = vec![0u8; len as usize];
        mem.read(self.plan_off as usize, &mut enc);
        Ok(enc)
    }

    /// Offset of ring `i`'s control block.
    pub fn ctrl(&self, i: u32) -> usize {
        CTRL_OFF + i as usize * CTRL_STRIDE
    }

    /// Offset of ring `i`'s data.
    pub fn data(&self, i: u32) -> usize {
        (self.rings_off + u64::from(i) * self.ring_bytes) as usize
    }
}

/// The shared file as seen by one side: 8-byte words (atomic where the side can make
/// them so) and plain byte copies. Out-of-bounds accesses read 0 and write nothing.
pub trait SharedMem {
    /// File length in bytes.
    fn len(&self) -> usize;
    /// True if the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The 8-byte word at `off` (acquire).
    fn load(&self, off: usize) -> u64;
    /// Stores the 8-byte word at `off` (release).
    fn store(&self, off: usize, v: u64);
    /// Adds `v` to the word at `off`; atomic where several writers share it.
    fn fetch_add(&self, off: usize, v: u64) {
        self.store(off, self.load(off).wrapping_add(v));
    }
    /// Copies `bytes` to `off`.
    fn write(&self, off: usize, bytes: &[u8]);
    /// Copies from `off` into `buf`.
    fn read(&self, off: usize, buf: &mut [u8]);
}

/// Writes the plugin's status and message.
pub fn set_status(mem: &dyn SharedMem, status: u64, msg: &str) {
    let mut m = msg.as_bytes();
    if m.len() > MSG_MAX {
        m = &m[..MSG_MAX];
    }
    mem.write(H_MSG, m);
    mem.store(H_MSG_LEN, m.len() as u64);
    mem.store(H_STATUS, status);
}

/// Writes the plugin's message without changing its status (a refused plan switch).
pub fn set_message(mem: &dyn SharedMem, msg: &str) {
    let mut m = msg.as_bytes();
    if m.len() > MSG_MAX {
        m = &m[..MSG_MAX];
    }
    mem.write(H_MSG, m);
    mem.store(H_MSG_LEN, m.len() as u64);
}

/// snaptap's half of a plan switch: writes `enc` into the plan area and publishes it as
/// generation `gen` (the plugin then checks and acknowledges it). The caller makes sure
/// the plugin has acknowledged the previous generation first.
pub fn write_plans(mem: &dyn SharedMem, lay: &Layout, enc: &[u8], gen: u64) -> Result<(), String> {
    if enc.len() as u64 > lay.plan_cap {
        return Err(format!(
            "the encoded plan set ({} bytes) exceeds the plan area ({} bytes)",
            enc.len(),
            lay.plan_cap
        ));
    }
    mem.write(lay.plan_off as usize, enc);
    mem.store(H_PLAN_LEN, enc.len() as u64);
    mem.store(H_PLAN_GEN, gen);
    Ok(())
}

/// Reads the plugin's status and message.
pub fn status(mem: &dyn SharedMem) -> (u64, String) {
    let st = mem.load(H_STATUS);
    let n = (mem.load(H_MSG_LEN) as usize).min(MSG_MAX);
    let mut b = vec![0u8; n];
    mem.read(H_MSG, &mut b);
    (st, String::from_utf8_lossy(&b).into_owned())
}

/// Bytes a record made by `plan` (entry and return plans together) can take in a ring.
pub fn max_record_len(fields: usize, data: u64) -> u64 {
    (REC_HEADER + fields * REC_FIELD) as u64 + data.div_ceil(8) * 8
}

/// Encodes `rec` (its site, time, ip, fields and data) as a ring record of plan-set
/// generation 0 into `out`.
pub fn encode_record(rec: &Record, out: &mut Vec<u8>) {
    encode_record_gen(rec, 0, out)
}

/// Encodes `rec` as a ring record made by plan-set generation `gen` into `out`.
pub fn encode_record_gen(rec: &Record, gen: u32, out: &mut Vec<u8>) {
    out.clear();
    let len = REC_HEADER + rec.fields.len() * REC_FIELD + rec.data.len().div_ceil(8) * 8;
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&rec.site.0.to_le_bytes());
    out.extend_from_slice(&rec.time_ns.to_le_bytes());
    out.extend_from_slice(&rec.ip.to_le_bytes());
    out.extend_from_slice(&(rec.fields.len() as u32).to_le_bytes());
    out.extend_from_slice(&(rec.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&gen.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for f in &rec.fields {
        let (kind, a, b): (u32, u32, u64) = match *f {
            FieldStatus::Ok { offset, len } => (0, offset, u64::from(len)),
            FieldStatus::Fault { addr } => (1, 0, addr),
            FieldStatus::NoRegister(r) => (2, u32::from(r), 0),
        };
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    out.extend_from_slice(&rec.data);
    out.resize(len, 0);
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Decodes one ring record (as [`encode_record`] wrote it) into a [`Record`] with the
/// given pid/tid/cpu. `None` if the bytes are not a well-formed record.
pub fn decode_record(b: &[u8], pid: u32, tid: u32, cpu: u32) -> Option<Record> {
    let len = u32_at(b, 0)? as usize;
    let site = u32_at(b, 4)?;
    let time = u64_at(b, 8)?;
    let ip = u64_at(b, 16)?;
    let nf = u32_at(b, 24)? as usize;
    let dl = u32_at(b, 28)? as usize;
    let data_off = REC_HEADER.checked_add(nf.checked_mul(REC_FIELD)?)?;
    if len > b.len() || data_off.checked_add(dl)? > len {
        return None;
    }
    let mut rec = Record::new(SiteId(site), pid, tid, time, ip);
    rec.cpu = cpu;
    for i in 0..nf {
        let o = REC_HEADER + i * REC_FIELD;
        let (kind, a, v) = (u32_at(b, o)?, u32_at(b, o + 4)?, u64_at(b, o + 8)?);
        rec.fields.push(match kind {
            0 => {
                if u64::from(a) + v > dl as u64 {
                    return None;
                }
                FieldStatus::Ok {
                    offset: a,
                    len: v as u32,
                }
            }
            1 => FieldStatus::Fault { addr: v },
            2 => FieldStatus::NoRegister(a as u16),
            _ => return None,
        });
    }
    rec.data = b[data_off..data_off + dl].to_vec();
    Some(rec)
}

/// The sequence number of an encoded record (1 for the ring's first hit).
pub fn record_seq(b: &[u8]) -> u64 {
    u64_at(b, 32).unwrap_or(0)
}

/// The plan-set generation that made an encoded record.
pub fn record_gen(b: &[u8]) -> u32 {
    u32_at(b, 40).unwrap_or(0)
}

/// Ring producer: counts the hit, stamps `enc` (an encoded record) with its sequence
/// number and appends it to ring `ring`, or counts a drop when it does not fit in the
/// free space. Single producer per ring. Returns true if the record was written.
/// Generic over the memory so that the plugin's per-hit path inlines its word accesses.
pub fn produce<M: SharedMem + ?Sized>(mem: &M, lay: &Layout, ring: u32, enc: &mut [u8]) -> bool {
    let ctrl = lay.ctrl(ring);
    let seq = mem.load(ctrl + R_HITS).wrapping_add(1);
    mem.store(ctrl + R_HITS, seq);
    if let Some(s) = enc.get_mut(32..40) {
        s.copy_from_slice(&seq.to_le_bytes());
    }
    let size = lay.ring_bytes;
    let head = mem.load(ctrl + R_HEAD);
    let tail = mem.load(ctrl + R_TAIL);
    let used = head.wrapping_sub(tail);
    let len = enc.len() as u64;
    let pos = head % size;
    let to_end = size - pos;
    // A record never wraps: if it does not fit before the end, pad to the end first.
    let need = if len <= to_end { len } else { to_end + len };
    if used > size || need > size - used || len == 0 || !len.is_multiple_of(8) {
        mem.store(ctrl + R_DROPPED, mem.load(ctrl + R_DROPPED).wrapping_add(1));
        return false;
    }
    let base = lay.data(ring);
    let mut head = head;
    if len > to_end {
        let mut pad = [0u8; 8];
        pad[..4].copy_from_slice(&(to_end as u32).to_le_bytes());
        pad[4..].copy_from_slice(&PAD_SITE.to_le_bytes());
        mem.write(base + pos as usize, &pad);
        head += to_end;
    }
    mem.write(base + (head % size) as usize, enc);
    mem.store(ctrl + R_HEAD, head + len);
    true
}

/// One ring's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Armed probe hits on this vCPU.
    pub hits: u64,
    /// Records dropped because the ring was full.
    pub dropped: u64,
    /// Records the consumer read.
    pub delivered: u64,
}

/// Ring consumer: reads every complete record between `tail` and `head` of ring `ring`,
/// calls `f` with each record's bytes, then frees the space. Returns the number of
/// records `f` accepted. A record with a bad length, or one `f` refuses, stops the pass
/// just before it (its space is not freed): `Err((records accepted, reason))`; the
/// caller retries later and gives up if the same record stays bad.
pub fn consume(
    mem: &dyn SharedMem,
    lay: &Layout,
    ring: u32,
    buf: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<u64, (u64, String)> {
    let ctrl = lay.ctrl(ring);
    let size = lay.ring_bytes;
    let head = mem.load(ctrl + R_HEAD);
    let mut tail = mem.load(ctrl + R_TAIL);
    if head.wrapping_sub(tail) > size || head < tail {
        return Err((
            0,
            format!("ring {ring}: head {head} tail {tail} inconsistent"),
        ));
    }
    let base = lay.data(ring);
    let mut n = 0;
    while tail < head {
        let pos = tail % size;
        let avail = (head - tail).min(size - pos) as usize;
        buf.resize(avail, 0);
        mem.read(base + pos as usize, buf);
        let mut o = 0usize;
        let mut stall = None;
        while o < avail {
            let len = u32_at(buf, o).unwrap_or(0) as usize;
            let site = u32_at(buf, o + 4).unwrap_or(0);
            if len < 8 || !len.is_multiple_of(8) || o + len > avail {
                stall = Some(format!(
                    "ring {ring}: bad record length {len} at {}",
                    tail + o as u64
                ));
                break;
            }
            if site != PAD_SITE {
                if !f(&buf[o..o + len]) {
                    stall = Some(format!(
                        "ring {ring}: undecodable record at {}",
                        tail + o as u64
                    ));
                    break;
                }
                n += 1;
            }
            o += len;
        }
        tail += o as u64;
        if let Some(why) = stall {
            mem.store(ctrl + R_TAIL, tail);
            return Err((n, why));
        }
    }
    mem.store(ctrl + R_TAIL, tail);
    Ok(n)
}

// Op codes of the plan encoding.
/// `Op::Reg` (u16 operand).
pub const OP_REG: u8 = 1;
/// `Op::Const` (u64 operand).
pub const OP_CONST: u8 = 2;
/// First binary/unary op code (no operand): Add, Sub, Mul, And, Or, Xor, Shl, Shr, Sar,
/// Neg, Not in this order.
pub const OP_ADD: u8 = 3;
/// `Op::SignExtend` (u8 operand).
pub const OP_SEXT: u8 = 20;
/// `Op::Deref` (u8 operand).
pub const OP_DEREF: u8 = 21;
/// `Op::EmitValue` (u8 operand).
pub const OP_EMIT_VALUE: u8 = 22;
/// `Op::EmitBytes` (u32 operand).
pub const OP_EMIT_BYTES: u8 = 23;
/// `Op::EmitString` (u32 operand).
pub const OP_EMIT_STRING: u8 = 24;
/// `Op::EntryField` (u32 operand): a return plan reads a field of its entry record.
pub const OP_ENTRY_FIELD: u8 = 25;

const PLAN_MAGIC: u32 = u32::from_le_bytes(*b"SNPL");
const SIMPLE_OPS: [Op; 11] = [
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::And,
    Op::Or,
    Op::Xor,
    Op::Shl,
    Op::Shr,
    Op::Sar,
    Op::Neg,
    Op::Not,
];

fn put_plan(p: &CapturePlan, out: &mut Vec<u8>) {
    out.extend_from_slice(&(p.fields.len() as u32).to_le_bytes());
    for f in &p.fields {
        let label = &f.label.as_bytes()[..f.label.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(label.len() as u16).to_le_bytes());
        out.extend_from_slice(label);
        out.extend_from_slice(&(f.ops.len() as u32).to_le_bytes());
        for op in &f.ops {
            match op {
                Op::Reg(r) => {
                    out.push(OP_REG);
                    out.extend_from_slice(&r.0.to_le_bytes());
                }
                Op::Const(c) => {
                    out.push(OP_CONST);
                    out.extend_from_slice(&c.to_le_bytes());
                }
                Op::SignExtend(b) => out.extend_from_slice(&[OP_SEXT, *b]),
                Op::Deref(n) => out.extend_from_slice(&[OP_DEREF, *n]),
                Op::EmitValue(n) => out.extend_from_slice(&[OP_EMIT_VALUE, *n]),
                Op::EmitBytes(n) => {
                    out.push(OP_EMIT_BYTES);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Op::EmitString(n) => {
                    out.push(OP_EMIT_STRING);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Op::EntryField(k) => {
                    out.push(OP_ENTRY_FIELD);
                    out.extend_from_slice(&k.to_le_bytes());
                }
                // Listed one by one so that a new `Op` fails to compile here instead
                // of being encoded as something else.
                simple @ (Op::Add
                | Op::Sub
                | Op::Mul
                | Op::And
                | Op::Or
                | Op::Xor
                | Op::Shl
                | Op::Shr
                | Op::Sar
                | Op::Neg
                | Op::Not) => {
                    if let Some(i) = SIMPLE_OPS.iter().position(|o| o == simple) {
                        out.push(OP_ADD + i as u8);
                    }
                }
            }
        }
    }
}

/// Encodes the sites of `plans` the plugin needs (id, address, kind, plans, needs; not
/// the module path, which the host already checked), with no address-space filter.
pub fn encode_plans(plans: &PlanSet) -> Vec<u8> {
    encode_plans_with_cr3(plans, &[])
}

/// Like [`encode_plans`], with a per-site address-space filter: a site listed in `cr3`
/// records only hits whose `cr3` equals the value given (0 = every address space).
pub fn encode_plans_with_cr3(plans: &PlanSet, cr3: &[(SiteId, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&PLAN_MAGIC.to_le_bytes());
    out.extend_from_slice(&(plans.sites.len() as u32).to_le_bytes());
    for s in &plans.sites {
        out.extend_from_slice(&s.id.0.to_le_bytes());
        out.extend_from_slice(&s.addr.0.to_le_bytes());
        let kind = match &s.kind {
            SiteKind::Entry => 0u8,
            SiteKind::Return { .. } => 1,
            SiteKind::ProcessBegin => 2,
            SiteKind::ProcessEnd => 3,
            SiteKind::SyscallEntry => 4,
            SiteKind::SyscallReturn => 5,
            SiteKind::Semaphore => 6,
            SiteKind::ThreadBegin => 7,
            SiteKind::ThreadEnd => 8,
        };
        let needs =
            u8::from(s.needs.comm) | u8::from(s.needs.ppid) << 1 | u8::from(s.needs.cpu) << 2;
        out.extend_from_slice(&[kind, needs]);
        let filter = cr3.iter().find(|(id, _)| *id == s.id).map_or(0, |c| c.1);
        out.extend_from_slice(&filter.to_le_bytes());
        put_plan(&s.plan, &mut out);
        if let SiteKind::Return { return_plan } = &s.kind {
            put_plan(return_plan, &mut out);
        }
    }
    out
}

struct Cur<'a> {
    b: &'a [u8],
    o: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self
            .b
            .get(self.o..self.o.saturating_add(n))
            .ok_or_else(|| format!("plan encoding truncated at byte {}", self.o))?;
        self.o += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or([0; 2]),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
}

fn get_plan(c: &mut Cur, site: u32) -> Result<CapturePlan, String> {
    let nf = c.u32()? as usize;
    if nf > c.b.len() {
        return Err(format!(
            "site {site}: field count {nf} exceeds the encoding"
        ));
    }
    let mut fields = Vec::with_capacity(nf);
    for fi in 0..nf {
        let ll = c.u16()? as usize;
        let label = String::from_utf8_lossy(c.take(ll)?).into_owned();
        let nops = c.u32()? as usize;
        if nops > capture_plan::MAX_OPS_PER_FIELD {
            return Err(format!(
                "site {site} field {fi} ({label}): {nops} ops, too many"
            ));
        }
        let mut ops = Vec::with_capacity(nops);
        for _ in 0..nops {
            let tag = c.u8()?;
            ops.push(match tag {
                OP_REG => Op::Reg(DwarfReg(c.u16()?)),
                OP_CONST => Op::Const(c.u64()?),
                OP_SEXT => Op::SignExtend(c.u8()?),
                OP_DEREF => Op::Deref(c.u8()?),
                OP_EMIT_VALUE => Op::EmitValue(c.u8()?),
                OP_EMIT_BYTES => Op::EmitBytes(c.u32()?),
                OP_EMIT_STRING => Op::EmitString(c.u32()?),
                OP_ENTRY_FIELD => Op::EntryField(c.u32()?),
                t if (OP_ADD..OP_ADD + SIMPLE_OPS.len() as u8).contains(&t) => {
                    SIMPLE_OPS[(t - OP_ADD) as usize].clone()
                }
                t => {
                    return Err(format!(
                        "site {site} field {fi} ({label}): unknown op code {t:#x}"
                    ))
                }
            });
        }
        fields.push(FieldPlan { ops, label });
    }
    Ok(CapturePlan { fields })
}

/// Decodes a plan set written by [`encode_plans`]; module paths come back empty.
/// Never panics; any inconsistency is an error naming the site and field.
pub fn decode_plans(b: &[u8]) -> Result<PlanSet, String> {
    decode_plans_with_cr3(b).map(|(p, _)| p)
}

/// Decodes a plan set and each site's `cr3` filter (0 = none), in site order.
pub fn decode_plans_with_cr3(b: &[u8]) -> Result<(PlanSet, Vec<u64>), String> {
    let mut c = Cur { b, o: 0 };
    if c.u32()? != PLAN_MAGIC {
        return Err("the plan area has no plan-set magic".into());
    }
    let n = c.u32()? as usize;
    if n > b.len() {
        return Err(format!("site count {n} exceeds the encoding"));
    }
    let mut sites = Vec::with_capacity(n);
    let mut filters = Vec::with_capacity(n);
    for _ in 0..n {
        let id = c.u32()?;
        let addr = c.u64()?;
        let kind = c.u8()?;
        let needs = c.u8()?;
        filters.push(c.u64()?);
        let plan = get_plan(&mut c, id)?;
        let kind = match kind {
            0 => SiteKind::Entry,
            1 => SiteKind::Return {
                return_plan: get_plan(&mut c, id)?,
            },
            2 => SiteKind::ProcessBegin,
            3 => SiteKind::ProcessEnd,
            4 => SiteKind::SyscallEntry,
            5 => SiteKind::SyscallReturn,
            6 => SiteKind::Semaphore,
            7 => SiteKind::ThreadBegin,
            8 => SiteKind::ThreadEnd,
            k => return Err(format!("site {id}: unknown site kind {k}")),
        };
        sites.push(ProbeSite {
            id: SiteId(id),
            module: Default::default(),
            addr: FileAddr(addr),
            kind,
            plan,
            needs: ContextNeeds {
                comm: needs & 1 != 0,
                ppid: needs & 2 != 0,
                cpu: needs & 4 != 0,
            },
        });
    }
    if c.o != b.len() {
        return Err(format!(
            "{} trailing bytes after the plan set",
            b.len() - c.o
        ));
    }
    Ok((PlanSet { sites }, filters))
}

/// What the plugin checks before instrumenting anything (at load and at every plan
/// switch): the plans verify, site ids are unique, every site is an entry or return site,
/// and every record fits in a ring. Returns the reason for the
/// first problem.
pub fn check_plans(plans: &PlanSet, ring_bytes: u64) -> Result<(), String> {
    plans
        .verify()
        .map_err(|e| format!("invalid capture plan: {e}"))?;
    // Records name their site by id: two sites with one id could not be told apart.
    let mut ids: Vec<u32> = plans.sites.iter().map(|s| s.id.0).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "site {}: the id is used twice in the plan set",
            w[0]
        ));
    }
    for s in &plans.sites {
        let (fields, bytes) = match &s.kind {
            SiteKind::Entry => (s.plan.fields.len(), s.plan.max_record_bytes()),
            SiteKind::Return { return_plan } => (
                s.plan.fields.len() + return_plan.fields.len(),
                s.plan.max_record_bytes() + return_plan.max_record_bytes(),
            ),
            k => {
                return Err(format!(
                    "site {}: only entry and return probes run in the plugin (kind {k:?})",
                    s.id.0
                ))
            }
        };
        let need = max_record_len(fields, bytes);
        if need > ring_bytes / 2 {
            return Err(format!(
                "site {}: a record can take {need} bytes, more than half a ring ({ring_bytes})",
                s.id.0
            ));
        }
    }
    Ok(())
}

/// Counts a hit whose record could not be kept (no room to remember a frame): one hit, one
/// drop on ring `ring`.
pub fn count_drop(mem: &dyn SharedMem, lay: &Layout, ring: u32) {
    let ctrl = lay.ctrl(ring);
    mem.store(ctrl + R_HITS, mem.load(ctrl + R_HITS).wrapping_add(1));
    mem.store(ctrl + R_DROPPED, mem.load(ctrl + R_DROPPED).wrapping_add(1));
}
