//! The runtime's user stacks (`runtime::Stacks`) over the CFI unwinder of the
//! `unwind` crate, fed with the modules the backend reports mapped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use runtime::{StackFrame, Stacks};
use unwind::{Frame, Unwinders, UserStacks};

#[derive(Default)]
struct Inner {
    unwinders: Unwinders,
    /// Mappings reported but not opened yet: modules are read on the first stack
    /// query, so that scripts without stack functions never pay for them.
    pending: Vec<(u32, PathBuf, u64)>,
    /// Every module of each pid with its load bias.
    modules: HashMap<u32, Vec<(PathBuf, u64)>>,
    /// The main executable of each pid: a new one means the pid exec'd, and the
    /// modules of its old image are forgotten.
    mains: HashMap<u32, (PathBuf, u64)>,
    /// Which paths are programs, read once each.
    is_main: HashMap<PathBuf, bool>,
    /// Modules that could not be opened, reported once each.
    failed: Vec<PathBuf>,
    /// Debug info by path for function sizes (`open_shared` stats the file on every
    /// call, too slow for every frame of every hit).
    opened: RefCell<HashMap<PathBuf, Option<std::sync::Arc<debuginfo::DebugInfo>>>>,
}

/// The driver's stacks, shared between the event loop (which adds modules) and the
/// runtime (which asks); both live on the driver thread.
#[derive(Clone, Default)]
pub struct SharedStacks {
    inner: Rc<RefCell<Inner>>,
    /// The pid that pid 0 (no process: begin and end probes) stands for.
    target: Rc<RefCell<u32>>,
}

impl SharedStacks {
    /// No modules yet; pid 0 stands for `target`.
    pub fn new(target: u32) -> SharedStacks {
        let s = SharedStacks::default();
        *s.target.borrow_mut() = target;
        s
    }

    /// Notes that `path` is mapped executable in `pid` with load bias `bias`.
    pub fn module_mapped(&self, pid: u32, path: PathBuf, bias: u64) {
        let mut i = self.inner.borrow_mut();
        let main = match i.is_main.get(&path) {
            Some(m) => *m,
            None => {
                let m = is_main_executable(&path);
                i.is_main.insert(path.clone(), m);
                m
            }
        };
        if main {
            let new = (path.clone(), bias);
            if i.mains.get(&pid).is_some_and(|old| *old != new) {
                i.modules.remove(&pid);
                i.pending.retain(|(p, _, _)| *p != pid);
                i.unwinders.remove_pid(pid);
            }
            i.mains.insert(pid, new);
        }
        if *self.target.borrow() == 0 {
            // The first process seen is the one `pid 0` questions are about.
            *self.target.borrow_mut() = pid;
        }
        let mods = i.modules.entry(pid).or_default();
        if !mods.iter().any(|(p, b)| *p == path && *b == bias) {
            mods.push((path.clone(), bias));
            i.pending.push((pid, path, bias));
        }
    }

    fn pid(&self, pid: u32) -> u32 {
        if pid == 0 {
            *self.target.borrow()
        } else {
            pid
        }
    }

    /// Opens the modules reported since the last query.
    fn load(&self) {
        let mut i = self.inner.borrow_mut();
        let pending = std::mem::take(&mut i.pending);
        for (pid, path, bias) in pending {
            if let Err(e) = i.unwinders.add_module(pid, &path, bias) {
                if !i.failed.contains(&path) {
                    eprintln!(
                        "WARNING: no unwind data for {}: {e}; its frames stay unsymbolised",
                        path.display()
                    );
                    i.failed.push(path);
                }
            }
        }
    }
}

/// Whether `path` is a program rather than a library: `ET_EXEC`, or a PIE (`ET_DYN`
/// flagged `DF_1_PIE`; libc.so.6 also has an interpreter, so that is not enough).
/// A PIE linked without the flag counts as a library here, which only means its pid
/// keeps its old image's modules after an exec.
fn is_main_executable(path: &std::path::Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    elf_is_program(&data).unwrap_or(false)
}

fn elf_is_program(d: &[u8]) -> Option<bool> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?));
    if d.get(..6)? != b"\x7fELF\x02\x01" {
        return Some(false);
    }
    match u16_at(16)? {
        2 => return Some(true),
        3 => {}
        _ => return Some(false),
    }
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let (entsize, num) = (usize::from(u16_at(54)?), usize::from(u16_at(56)?));
    for k in 0..num {
        let e = phoff.checked_add(k.checked_mul(entsize)?)?;
        // PT_DYNAMIC: look for DT_FLAGS_1 with DF_1_PIE.
        if u32_at(e)? != 2 {
            continue;
        }
        let off = usize::try_from(u64_at(e + 8)?).ok()?;
        let size = usize::try_from(u64_at(e + 32)?).ok()?;
        for t in (0..size / 16).map(|n| off + n * 16) {
            match u64_at(t)? {
                0 => break,
                0x6fff_fffb => return Some(u64_at(t + 8)? & 0x0800_0000 != 0),
                _ => {}
            }
        }
    }
    Some(false)
}

/// The runtime's frame for an unwinder frame, with the function's size and the
/// module offset that stap's formats print.
fn frame(i: &Inner, pid: u32, f: Frame, lookup: u64) -> StackFrame {
    let module = f.module.display().to_string();
    let bias = i
        .modules
        .get(&pid)
        .and_then(|m| m.iter().find(|(p, _)| *p == f.module))
        .map_or(0, |(_, b)| *b);
    let size = if f.module.as_os_str().is_empty() {
        None
    } else {
        let di = i
            .opened
            .borrow_mut()
            .entry(f.module.clone())
            .or_insert_with(|| debuginfo::DebugInfo::open_shared(&f.module).ok())
            .clone();
        di.and_then(|di| {
            let at = lookup.wrapping_sub(bias);
            let func = di.function_at(at)?;
            let r = func
                .ranges
                .iter()
                .find(|r| r.0 <= at && at < r.1)
                .or_else(|| func.ranges.first())?;
            Some(r.1 - r.0)
        })
    };
    StackFrame {
        pc: f.pc,
        function: f.function,
        offset: f.offset,
        size,
        module,
        module_offset: f.pc.wrapping_sub(bias),
        file_line: f.file_line,
    }
}

impl Stacks for SharedStacks {
    fn unwind(
        &self,
        pid: u32,
        regs: &[u64; 17],
        stack_base: u64,
        stack: &[u8],
        max_frames: usize,
    ) -> Vec<StackFrame> {
        self.load();
        let pid = self.pid(pid);
        let i = self.inner.borrow();
        i.unwinders
            .unwind(pid, regs, stack_base, stack, max_frames)
            .into_iter()
            .enumerate()
            .map(|(n, f)| {
                let lookup = if n == 0 { f.pc } else { f.pc.wrapping_sub(1) };
                frame(&i, pid, f, lookup)
            })
            .collect()
    }

    fn symbolize(&self, pid: u32, addr: u64) -> Option<StackFrame> {
        self.load();
        let pid = self.pid(pid);
        let i = self.inner.borrow();
        let f = i.unwinders.symbolize(pid, addr)?;
        Some(frame(&i, pid, f, addr))
    }
}

/// `--flamegraph SVG`: draws the folded stacks in `folded` (lines `a;b;c COUNT`, the
/// script's output) as an SVG flame graph with inferno. Lines of other shapes are
/// skipped by inferno.
pub fn flamegraph(folded: &std::path::Path, svg: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = std::fs::read_to_string(folded)
        .with_context(|| format!("reading the folded stacks in {}", folded.display()))?;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.rsplit_once(' ')
                .is_some_and(|(s, n)| !s.is_empty() && n.parse::<u64>().is_ok())
        })
        .collect();
    if lines.is_empty() {
        anyhow::bail!(
            "no folded stacks in {} for the flame graph (lines 'a;b;c COUNT', e.g. \
             printf(\"%s %d\\n\", sprint_ufolded(k), @count(s[k])))",
            folded.display()
        );
    }
    let file = std::fs::File::create(svg).with_context(|| format!("creating {}", svg.display()))?;
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "snaptap".to_string();
    inferno::flamegraph::from_lines(&mut opts, lines, std::io::BufWriter::new(file))
        .with_context(|| format!("writing the flame graph {}", svg.display()))?;
    Ok(())
}
