//! The ELF file of the probed module: its kind (fixed or relocatable), entry point, and
//! the bytes its loadable segments put at each link-time address. No DWARF is read.

use std::path::{Path, PathBuf};

use object::{Object, ObjectKind, ObjectSegment};

/// One ELF module on disk.
#[derive(Debug)]
pub struct Module {
    /// Its path.
    pub path: PathBuf,
    /// `ET_DYN`: loaded at a bias only the target knows.
    pub relocatable: bool,
    /// `e_entry`.
    pub entry: u64,
    /// `(p_vaddr, p_filesz, p_offset)` of each loadable segment.
    segs: Vec<(u64, u64, u64)>,
    data: Vec<u8>,
}

impl Module {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Module, String> {
        let data = std::fs::read(path)
            .map_err(|e| format!("{}: {}", path.display(), crate::conn::clean_io(&e)))?;
        let file = object::File::parse(&*data)
            .map_err(|e| format!("{}: not an ELF file: {e}", path.display()))?;
        let relocatable = match file.kind() {
            ObjectKind::Executable => false,
            ObjectKind::Dynamic => true,
            other => {
                return Err(format!(
                    "{}: unsupported ELF kind {other:?}",
                    path.display()
                ))
            }
        };
        let entry = file.entry();
        let segs = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (s.address(), size, off)
            })
            .collect();
        Ok(Module {
            path: path.to_path_buf(),
            relocatable,
            entry,
            segs,
            data,
        })
    }

    /// The `n` bytes (fewer at the end of a segment) the file places at link-time
    /// address `addr`; `None` if no segment holds file bytes there.
    pub fn bytes_at(&self, addr: u64, n: usize) -> Option<&[u8]> {
        for &(va, filesz, off) in &self.segs {
            if addr >= va && addr - va < filesz {
                let start = off.checked_add(addr - va)?;
                let avail = filesz - (addr - va);
                let len = (n as u64).min(avail);
                let s = usize::try_from(start).ok()?;
                return self.data.get(s..s.checked_add(len as usize)?);
            }
        }
        None
    }

    /// The file name, for messages.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}
