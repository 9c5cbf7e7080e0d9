//! Readers for the /proc files the backend needs: memory maps, auxv, comm, stat, tasks.

use std::fs;
use std::io;

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Permission string such as `r-xp`.
    pub perms: String,
    /// File offset of `start`.
    pub offset: u64,
    /// Device major number.
    pub dev_major: u64,
    /// Device minor number.
    pub dev_minor: u64,
    /// Inode (0 for anonymous mappings).
    pub inode: u64,
    /// Path or pseudo-name (`[heap]`), empty for anonymous mappings.
    pub path: String,
}

/// Parses the text of /proc/PID/maps; malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_map_line).collect()
}

fn parse_map_line(line: &str) -> Option<MapEntry> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let offset = it.next()?;
    let dev = it.next()?;
    let inode = it.next()?;
    let path = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let (maj, min) = dev.split_once(':')?;
    Some(MapEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        perms: perms.to_string(),
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev_major: u64::from_str_radix(maj, 16).ok()?,
        dev_minor: u64::from_str_radix(min, 16).ok()?,
        inode: inode.parse().ok()?,
        path,
    })
}

/// Reads and parses /proc/PID/maps.
pub fn read_maps(pid: u32) -> io::Result<Vec<MapEntry>> {
    Ok(parse_maps(&fs::read_to_string(format!(
        "/proc/{pid}/maps"
    ))?))
}

/// The `AT_BASE` auxv entry (the dynamic linker's load address), if any.
pub fn auxv_base(pid: u32) -> Option<u64> {
    let data = fs::read(format!("/proc/{pid}/auxv")).ok()?;
    parse_auxv(&data, libc::AT_BASE).filter(|&b| b != 0)
}

/// Finds auxv entry `key` in the raw bytes of /proc/PID/auxv (64-bit pairs).
pub fn parse_auxv(data: &[u8], key: u64) -> Option<u64> {
    for pair in data.chunks_exact(16) {
        let k = u64::from_le_bytes(pair[..8].try_into().ok()?);
        let v = u64::from_le_bytes(pair[8..].try_into().ok()?);
        if k == key {
            return Some(v);
        }
        if k == 0 {
            break;
        }
    }
    None
}

/// The thread's `comm` (without the trailing newline).
pub fn comm(tid: u32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{tid}/comm")).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

/// `(ppid, cpu)` from /proc/TID/stat (fields 4 and 39).
pub fn ppid_cpu(tid: u32) -> Option<(u32, u32)> {
    parse_stat(&fs::read_to_string(format!("/proc/{tid}/stat")).ok()?)
}

/// Parses `(ppid, processor)` out of a /proc/TID/stat line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let ppid = f.get(1)?.parse().ok()?;
    let cpu = f.get(36)?.parse().ok()?;
    Some((ppid, cpu))
}

/// Thread ids listed in /proc/PID/task.
pub fn tasks(pid: u32) -> io::Result<Vec<u32>> {
    let mut v: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// A field of /proc/TID/status, such as `Tgid` or `SigPnd`.
pub fn status_field(tid: u32, name: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// The thread-group id of `tid`.
pub fn tgid(tid: u32) -> Option<u32> {
    status_field(tid, "Tgid")?.parse().ok()
}

/// True if signal `sig` is pending for thread `tid` specifically (`SigPnd`).
pub fn thread_signal_pending(tid: u32, sig: i32) -> bool {
    let Some(v) = status_field(tid, "SigPnd") else {
        return false;
    };
    let Ok(mask) = u64::from_str_radix(&v, 16) else {
        return false;
    };
    (1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0
}
