//! Tapsets: script libraries of probe aliases and functions loaded before the user's
//! script, as stap loads its tapset directories.
//!
//! The Mach tapset ships inside the binary, so `mach.msg.trap` and `task_name()` work
//! wherever snaptap is copied; `-I DIR` adds every `*.stp` file of DIR, and
//! `SNAPTAP_TAPSET_DIRS` (colon-separated) does the same from the environment.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use script_syntax::ast::FileId;
use script_syntax::SourceMap;

/// The tapsets built into snaptap: (name shown in diagnostics, text).
const BUILTIN: &[(&str, &str)] = &[
    (
        "<tapset>/mach.stpm",
        include_str!("../../../mach/tapset/mach.stpm"),
    ),
    (
        "<tapset>/mach.stp",
        include_str!("../../../mach/tapset/mach.stp"),
    ),
];

/// Adds the built-in tapsets and those found in `dirs` (and `SNAPTAP_TAPSET_DIRS`) to
/// `sources`, in a stable order, and returns their file ids.
pub fn load(sources: &mut SourceMap, dirs: &[PathBuf]) -> Result<Vec<FileId>> {
    let mut files: Vec<FileId> = BUILTIN
        .iter()
        .map(|(name, text)| sources.add(*name, *text))
        .collect();
    let mut all: Vec<PathBuf> = dirs.to_vec();
    if let Some(env) = std::env::var_os("SNAPTAP_TAPSET_DIRS") {
        all.extend(std::env::split_paths(&env));
    }
    for dir in all {
        for path in stp_files(&dir)? {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read tapset '{}'", path.display()))?;
            files.push(sources.add(path.display().to_string(), text));
        }
    }
    Ok(files)
}

fn stp_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read tapset directory '{}'", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "stp" || x == "stpm"))
        .collect();
    // Macro files first, so their macros are visible to every script file.
    v.sort_by_key(|p| (p.extension().is_some_and(|x| x == "stp"), p.clone()));
    Ok(v)
}
