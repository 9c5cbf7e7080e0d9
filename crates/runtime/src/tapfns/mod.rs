//! stap's process context tapset functions that snaptap can serve after the fact
//! (`uid()`, `cmdline_str()`, `env_var()`, `proc_mem_*()`...) and the pure helpers of
//! stap's tapsets (`bytes_to_string`, `signal_str`).
//!
//! The handler runs later than the probe, in snaptap, so a value about the target is
//! either in the record or read here from `/proc/PID/...` **when the handler runs**:
//! only values that describe the process and rarely change are read that way (ids,
//! process group and session, command line, environment, memory sizes, the parent's
//! name). Everything is read afresh at every call (`setuid()`, `setpgid()`, an exec
//! and allocation change these, and a program that executes itself again keeps its
//! pid and name, so no cheap check tells a copy is stale). A process that has already
//! exited when its handler runs has no `/proc` entry: its command line, environment,
//! ids, process group and session are then the copies last read (under the same
//! execname), and any other value is an error saying so, as none can be given
//! honestly.
//!
//! Functions whose value cannot be known after the fact (`jiffies()`, `HZ()`), that
//! would write the target (`set_kernel_*`, `set_user_*`) or that need a Linux kernel
//! target are refused at compile time by [`refusal`].

use std::collections::HashMap;

/// A context function served from `/proc` or computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CtxFn {
    Uid,
    Gid,
    Euid,
    Egid,
    Pgrp,
    Sid,
    /// `ngroups()`: the number of supplementary groups.
    Ngroups,
    /// `ns_pid()`: the pid as snaptap's pid namespace sees it (stap: the namespace of
    /// the stap process when no `--target-namespaces` is given).
    NsPid,
    NsTid,
    NsPpid,
    NsPgrp,
    NsSid,
    NsUid,
    NsGid,
    NsEuid,
    NsEgid,
    CmdlineStr,
    CmdlineArg,
    CmdlineArgs,
    EnvVar,
    Pexecname,
    /// `pid2execname(pid)`: `/proc/PID/comm` when the handler runs, empty when no
    /// such process exists (as stap).
    Pid2execname,
    ModuleName,
    SprintLoadavg,
    BytesToString,
    PagesToString,
    SignalStr,
    MemPageSize,
    NumOnlineCpus,
    ProbeType,
    /// `proc_mem_*()` of the current process (false) or of a pid argument (true).
    Mem(MemFn, bool),
}

/// Which of `/proc/PID/statm`'s columns a `proc_mem_*` function reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemFn {
    Size,
    Rss,
    Shr,
    Txt,
    Data,
    /// `proc_mem_string()`: all five, as stap formats them.
    String,
}

/// The page size of x86 targets: stap's `@const("PAGE_SIZE")`.
pub(crate) const PAGE_SIZE: i64 = 4096;

/// Argument types (`true` = string) and whether the result is a string.
pub(crate) fn signature(name: &str) -> Option<(CtxFn, &'static [bool], bool)> {
    use CtxFn as C;
    const N: &[bool] = &[];
    const L: &[bool] = &[false];
    Some(match name {
        "uid" => (C::Uid, N, false),
        "gid" => (C::Gid, N, false),
        "euid" => (C::Euid, N, false),
        "egid" => (C::Egid, N, false),
        "pgrp" => (C::Pgrp, N, false),
        "sid" => (C::Sid, N, false),
        "ngroups" => (C::Ngroups, N, false),
        "ns_pid" => (C::NsPid, N, false),
        "ns_tid" => (C::NsTid, N, false),
        "ns_ppid" => (C::NsPpid, N, false),
        "ns_pgrp" => (C::NsPgrp, N, false),
        "ns_sid" => (C::NsSid, N, false),
        "ns_uid" => (C::NsUid, N, false),
        "ns_gid" => (C::NsGid, N, false),
        "ns_euid" => (C::NsEuid, N, false),
        "ns_egid" => (C::NsEgid, N, false),
        "cmdline_str" => (C::CmdlineStr, N, true),
        "cmdline_arg" => (C::CmdlineArg, L, true),
        "cmdline_args" => (C::CmdlineArgs, &[false, false, true], true),
        "env_var" => (C::EnvVar, &[true], true),
        "pexecname" => (C::Pexecname, N, true),
        "pid2execname" => (C::Pid2execname, L, true),
        "module_name" => (C::ModuleName, N, true),
        "sprint_loadavg" => (C::SprintLoadavg, N, true),
        "bytes_to_string" => (C::BytesToString, L, true),
        "pages_to_string" => (C::PagesToString, L, true),
        "signal_str" => (C::SignalStr, L, true),
        "mem_page_size" => (C::MemPageSize, N, false),
        "num_online_cpus" => (C::NumOnlineCpus, N, false),
        "probe_type" => (C::ProbeType, N, true),
        "proc_mem_size" => (C::Mem(MemFn::Size, false), N, false),
        "proc_mem_rss" => (C::Mem(MemFn::Rss, false), N, false),
        "proc_mem_shr" => (C::Mem(MemFn::Shr, false), N, false),
        "proc_mem_txt" => (C::Mem(MemFn::Txt, false), N, false),
        "proc_mem_data" => (C::Mem(MemFn::Data, false), N, false),
        "proc_mem_string" => (C::Mem(MemFn::String, false), N, true),
        "proc_mem_size_pid" => (C::Mem(MemFn::Size, true), L, false),
        "proc_mem_rss_pid" => (C::Mem(MemFn::Rss, true), L, false),
        "proc_mem_shr_pid" => (C::Mem(MemFn::Shr, true), L, false),
        "proc_mem_txt_pid" => (C::Mem(MemFn::Txt, true), L, false),
        "proc_mem_data_pid" => (C::Mem(MemFn::Data, true), L, false),
        "proc_mem_string_pid" => (C::Mem(MemFn::String, true), L, true),
        _ => return None,
    })
}

/// Every function of [`signature`], for names in messages.
const NAMES: &[&str] = &[
    "uid",
    "gid",
    "euid",
    "egid",
    "pgrp",
    "sid",
    "ns_pid",
    "ns_tid",
    "ns_ppid",
    "ns_pgrp",
    "ns_sid",
    "ns_uid",
    "ns_gid",
    "ns_euid",
    "ns_egid",
    "cmdline_str",
    "cmdline_arg",
    "cmdline_args",
    "env_var",
    "pexecname",
    "pid2execname",
    "module_name",
    "sprint_loadavg",
    "bytes_to_string",
    "pages_to_string",
    "signal_str",
    "mem_page_size",
    "num_online_cpus",
    "probe_type",
    "proc_mem_size",
    "proc_mem_rss",
    "proc_mem_shr",
    "proc_mem_txt",
    "proc_mem_data",
    "proc_mem_string",
    "proc_mem_size_pid",
    "proc_mem_rss_pid",
    "proc_mem_shr_pid",
    "proc_mem_txt_pid",
    "proc_mem_data_pid",
    "proc_mem_string_pid",
];

/// The script name of a context function.
pub(crate) fn name_of(c: CtxFn) -> &'static str {
    NAMES
        .iter()
        .find(|n| signature(n).is_some_and(|(f, _, _)| f == c))
        .copied()
        .unwrap_or("?")
}

/// Whether a context function returns a string.
pub(crate) fn returns_string(c: CtxFn) -> bool {
    signature(name_of(c)).is_some_and(|(_, _, s)| s)
}

/// stap overloads `proc_mem_*()` with a `pid` argument: those are the `_pid` forms.
pub(crate) fn overload(name: &str, nargs: usize) -> Option<&'static str> {
    Some(match (name, nargs) {
        ("proc_mem_size", 1) => "proc_mem_size_pid",
        ("proc_mem_rss", 1) => "proc_mem_rss_pid",
        ("proc_mem_shr", 1) => "proc_mem_shr_pid",
        ("proc_mem_txt", 1) => "proc_mem_txt_pid",
        ("proc_mem_data", 1) => "proc_mem_data_pid",
        ("proc_mem_string", 1) => "proc_mem_string_pid",
        _ => return None,
    })
}

/// The compile-time error for a tapset function snaptap will not provide, if `name`
/// is one.
pub(crate) fn refusal(name: &str) -> Option<String> {
    if name.starts_with("set_kernel_") || name.starts_with("set_user_") {
        return Some(format!(
            "{name}() writes target memory: snaptap never writes its target (the probe only copies; handlers run later on the copy)"
        ));
    }
    if (name.starts_with("set_") && name.ends_with("_arg")) || name == "set_returnval" {
        return Some(format!(
            "{name}() writes target registers: snaptap never writes its target (the probe only copies; handlers run later on the copy)"
        ));
    }
    match name {
        "jiffies" | "HZ" => Some(format!(
            "{name}() is not available: snaptap runs handlers after the probe, in user space, and cannot know the kernel's {} at the probe",
            if name == "HZ" { "tick rate" } else { "tick count" }
        )),
        "task_current" | "task_parent" | "task_state" | "task_execname" | "task_pid"
        | "task_tid" | "task_ns_pid" | "task_ns_tid" | "task_gid" | "task_uid"
        | "task_egid" | "task_euid" | "task_prio" | "task_nice" | "task_cpu"
        | "task_open_file_handles" | "task_max_file_handles" | "task_stime" | "task_utime"
        | "task_time_string" | "task_backtrace" | "pid2task"
        | "inode_path" | "inode_name" | "d_name" | "d_path" | "fullpath_struct_path"
        | "fullpath_struct_file" | "task_dentry_path" | "reverse_path_walk" | "real_mount"
        | "probemod" | "modname" | "module_size" | "stack_size" | "stack_used"
        | "stack_unused" | "print_stack" | "print_backtrace" | "backtrace"
        | "sprint_backtrace" | "sprint_stack" | "print_regs" | "kernel_buffer_quoted"
        | "symname" | "symdata" | "caller" | "caller_addr" | "callers"
        | "task_backtrace_quoted" | "get_loadavg_index" | "current_exe_file"
        | "vm_fault_contains" | "get_sa_flags" | "get_sa_handler" | "proc_mem_size_task" => {
            Some(format!(
                "{name}() needs a Linux kernel target: snaptap traces this process from user space"
            ))
        }
        _ => None,
    }
}

/// stap's `bytes_to_string`: `%5d` below 1024 (negative numbers too), else K/M/G with
/// two decimals under 10, one under 100, none above (5 characters wide).
pub(crate) fn bytes_to_string(bytes: i64) -> String {
    if bytes < 1024 {
        return format!("{bytes:5}");
    }
    let (mut n, mut remain) = (bytes / 1024, bytes % 1024);
    for unit in ["K", "M"] {
        if n < 1024 {
            return postfix(n, remain, unit);
        }
        remain = n % 1024;
        n /= 1024;
    }
    postfix(n, remain, "G")
}

/// stap's `_stp_number_to_string_postfix`: ` x.yyP`, `xx.yP`, ` xxxP`.
fn postfix(x: i64, y: i64, p: &str) -> String {
    if x < 10 {
        format!("{x}.{:02}{p}", y * 100 / 1024)
    } else if x < 100 {
        format!("{x:2}.{}{p}", y * 10 / 1024)
    } else {
        format!("{x:4}{p}")
    }
}

/// stap's `signal_str`: the name without `SIG` (`HUP`, `RTMIN+3`), empty outside 1..=64.
pub(crate) fn signal_str(n: i64) -> String {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO/POLL", "PWR", "SYS",
    ];
    match n {
        1..=31 => NAMES[n as usize - 1].to_string(),
        32 => "RTMIN".to_string(),
        33..=64 => format!("RTMIN+{}", n - 32),
        _ => String::new(),
    }
}

/// stap's `proc_mem_string` of statm's pages.
pub(crate) fn mem_string(m: &Statm) -> String {
    let s = |pages: i64| bytes_to_string(pages * PAGE_SIZE);
    format!(
        "size: {}, rss: {}, shr: {}, txt: {}, data: {}",
        s(m.size),
        s(m.rss),
        s(m.shr),
        s(m.txt),
        s(m.data)
    )
}

/// stap's `cmdline_args(n, m, delim)` over the NUL-separated arguments: from `n` to
/// `m` (all when `m < 0`); an empty argument after the first shows as `""`.
pub(crate) fn cmdline_args(raw: &[u8], n: i64, m: i64, delim: &str) -> String {
    let mut out = String::new();
    let body = raw.strip_suffix(&[0]).unwrap_or(raw);
    if body.is_empty() {
        return out;
    }
    for (i, a) in body.split(|&b| b == 0).enumerate() {
        let i = i as i64;
        if m >= 0 && i > m {
            break;
        }
        let a = String::from_utf8_lossy(a);
        if i == n {
            out = a.into_owned();
        } else if i > n {
            out.push_str(delim);
            out.push_str(if a.is_empty() { "\"\"" } else { &a });
        }
    }
    out
}

/// stap's `env_var(name)` over the NUL-separated environment block.
pub(crate) fn env_var(raw: &[u8], name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
        .next()
        .unwrap_or_default()
}

/// stap's `probe_type()` for a probe point, from its spelling: `uprobe`/`uretprobe`
/// for code sites, `utrace`/`utrace_syscall` for process events, `begin_end`,
/// `hrtimer`/`timer`/`profile_timer` for timers.
pub(crate) fn probe_type(pp: &str) -> &'static str {
    let pp = pp.trim();
    if pp.starts_with("begin") || pp.starts_with("end") || pp.starts_with("error") {
        "begin_end"
    } else if pp.starts_with("timer.profile") {
        "profile_timer"
    } else if pp.starts_with("timer.jiffies") {
        // stap serves timer.{s,ms,us,ns,hz} with hrtimers, timer.jiffies with timers.
        "timer"
    } else if pp.starts_with("timer") {
        "hrtimer"
    } else if pp.contains(".syscall") {
        "utrace_syscall"
    } else if pp.ends_with(".begin") || pp.ends_with(".end") {
        "utrace"
    } else if pp.ends_with(".return") {
        "uretprobe"
    } else {
        "uprobe"
    }
}

/// `/proc/PID/statm` in pages: size, resident, shared, text and data + stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Statm {
    pub(crate) size: i64,
    pub(crate) rss: i64,
    pub(crate) shr: i64,
    pub(crate) txt: i64,
    pub(crate) data: i64,
}

/// Parses `/proc/PID/statm` (`size resident shared text lib data dt`).
pub(crate) fn parse_statm(text: &str) -> Option<Statm> {
    let v: Vec<i64> = text
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    Some(Statm {
        size: *v.first()?,
        rss: *v.get(1)?,
        shr: *v.get(2)?,
        txt: *v.get(3)?,
        data: *v.get(5)?,
    })
}

/// The ids of `/proc/PID/status`: real and effective uid and gid.
pub(crate) fn parse_ids(status: &str, key: &str) -> Option<(i64, i64)> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut w = line[key.len()..].split_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// The number of supplementary groups on the `Groups:` line of `/proc/PID/status`.
pub(crate) fn parse_ngroups(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("Groups:"))?;
    Some(line["Groups:".len()..].split_whitespace().count() as i64)
}

/// Process group and session of `/proc/PID/stat` (fields 5 and 6; the name in field
/// 2 may hold spaces and parentheses, so fields are counted after its last `)`).
pub(crate) fn parse_pgrp_sid(stat: &str) -> Option<(i64, i64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut w = rest.split_whitespace();
    // state, ppid, pgrp, session
    let _ = (w.next()?, w.next()?);
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// The `(load1 load5 load15)` text of `/proc/loadavg` as stap's `sprint_loadavg`
/// prints it (the kernel rounds both the same way), with its newline.
pub(crate) fn loadavg(text: &str) -> Option<String> {
    let w: Vec<&str> = text.split_whitespace().take(3).collect();
    (w.len() == 3).then(|| format!("{} {} {}\n", w[0], w[1], w[2]))
}

/// Counts the CPUs of a `/sys/devices/system/cpu/online` list (`0-3,5`).
pub(crate) fn count_cpus(list: &str) -> Option<i64> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<i64>().ok()? - a.parse::<i64>().ok()? + 1,
            None => {
                part.parse::<i64>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// Decodes a UTF-16 (`unit` 2) or UTF-32 (4) little-endian string up to its NUL
/// terminator into UTF-8, as stap's `*_string_utf16/32` do: at most `max` bytes of
/// output; a broken surrogate or an invalid code point is stap's conversion error.
pub(crate) fn decode_wide(bytes: &[u8], unit: usize, max: usize) -> Result<String, u32> {
    let mut out = String::new();
    let units: Vec<u32> = bytes
        .chunks_exact(unit)
        .map(|c| {
            if unit == 2 {
                u32::from(u16::from_le_bytes([c[0], c[1]]))
            } else {
                u32::from_le_bytes([c[0], c[1], c[2], c[3]])
            }
        })
        .collect();
    let mut i = 0;
    while i < units.len() && units[i] != 0 {
        let mut c = units[i];
        if unit == 2 && (0xD800..=0xDBFF).contains(&c) {
            if let Some(&lo) = units.get(i + 1) {
                if (0xDC00..=0xDFFF).contains(&lo) {
                    c = 0x10000 + ((c & 0x3FF) << 10) + (lo & 0x3FF);
                    i += 1;
                }
            }
        }
        let ch = char::from_u32(c).ok_or(c)?;
        if out.len() + ch.len_utf8() > max {
            break;
        }
        out.push(ch);
        i += 1;
    }
    Ok(out)
}

/// The files of `/proc/PID` whose last copy the runtime keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcFile {
    Cmdline,
    Environ,
    /// Ids and groups.
    Status,
    /// Process group and session.
    Stat,
}

impl ProcFile {
    fn name(self) -> &'static str {
        match self {
            ProcFile::Cmdline => "cmdline",
            ProcFile::Environ => "environ",
            ProcFile::Status => "status",
            ProcFile::Stat => "stat",
        }
    }
}

/// What the runtime remembers of a process: its command line, environment, ids,
/// process group and session as last read, for handlers that run after the process
/// has exited (`process.end` handlers, a queue that drains after the exit).
///
/// They are read afresh at every call while the process exists: a program that
/// executes itself again keeps its pid and its name, and `setuid()` or `setsid()`
/// change the rest, so nothing cheaper tells that a remembered copy is stale.
/// Memory sizes are not remembered: they change all the time.
#[derive(Default)]
pub(crate) struct ProcCache {
    procs: HashMap<u32, CachedProc>,
}

struct CachedProc {
    comm: String,
    files: [Option<Vec<u8>>; 4],
}

/// The most processes remembered; beyond it the memory starts again from empty.
const CACHE_MAX: usize = 4096;

impl ProcCache {
    fn entry(&mut self, pid: u32, comm: &str) -> &mut CachedProc {
        if self.procs.len() >= CACHE_MAX && !self.procs.contains_key(&pid) {
            self.procs.clear();
        }
        let e = self.procs.entry(pid).or_insert_with(|| CachedProc {
            comm: comm.to_string(),
            files: Default::default(),
        });
        if e.comm != comm {
            // Another program (or a reused pid): what was read belongs to it.
            e.comm = comm.to_string();
            e.files = Default::default();
        }
        e
    }

    /// `/proc/PID/FILE` now, or the copy last read while the process `comm` existed.
    pub(crate) fn file(&mut self, pid: u32, comm: &str, f: ProcFile) -> Result<&[u8], String> {
        let fresh = read_proc(pid, f.name());
        let slot = &mut self.entry(pid, comm).files[f as usize];
        match fresh {
            Ok(b) => *slot = Some(b),
            Err(m) if slot.is_none() => return Err(m),
            Err(_) => {}
        }
        Ok(slot.as_deref().unwrap_or_default())
    }

    /// [`ProcCache::file`] as text.
    pub(crate) fn text(&mut self, pid: u32, comm: &str, f: ProcFile) -> Result<String, String> {
        self.file(pid, comm, f)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// `/proc/PID/cmdline` (see [`ProcCache`]).
    pub(crate) fn cmdline(&mut self, pid: u32, comm: &str) -> Result<&[u8], String> {
        self.file(pid, comm, ProcFile::Cmdline)
    }

    /// `/proc/PID/environ` (see [`ProcCache`]).
    pub(crate) fn environ(&mut self, pid: u32, comm: &str) -> Result<&[u8], String> {
        self.file(pid, comm, ProcFile::Environ)
    }
}

/// Reads `/proc/PID/FILE`, or says why it cannot.
pub(crate) fn read_proc(pid: u32, file: &str) -> Result<Vec<u8>, String> {
    if pid == 0 {
        return Err(format!(
            "/proc/{pid}/{file}: this target has no Linux process to read it from"
        ));
    }
    std::fs::read(format!("/proc/{pid}/{file}")).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "the process has exited".to_string()
        } else {
            e.to_string()
        };
        format!("cannot read /proc/{pid}/{file} ({why}); snaptap reads it when the handler runs, not at the probe")
    })
}

/// Reads `/proc/PID/FILE` as text.
pub(crate) fn read_proc_text(pid: u32, file: &str) -> Result<String, String> {
    read_proc(pid, file).map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests;
