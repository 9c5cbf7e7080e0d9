//! Tidy checks over the source tree: every Rust file opens with a `//!` doc line, and
//! `unsafe` appears only where ARCHITECTURE.md allows it: the ptrace syscall chokepoint
//! and the QEMU plugin's FFI module.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target" || n == "fuzz") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&crates_dir(), &mut files);
    assert!(files.len() > 10);
    let missing: Vec<_> = files
        .iter()
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim_start()
                .starts_with("//!")
        })
        .collect();
    assert!(missing.is_empty(), "files without a //! line: {missing:?}");
}

#[test]
fn unsafe_only_in_the_ffi_chokepoints() {
    let mut files = Vec::new();
    rust_files(&crates_dir(), &mut files);
    let offenders: Vec<_> = files
        .iter()
        .filter(|p| {
            !p.ends_with("backend-ptrace/src/sys.rs")
                && !p.ends_with("qemu-plugin/src/ffi.rs")
                && !p.ends_with("tests/it/tidy.rs")
        })
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    let code = l.split("//").next().unwrap_or("");
                    code.contains("unsafe {")
                        || code.contains("unsafe fn")
                        || code.contains("unsafe impl")
                })
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "unsafe outside backend-ptrace/src/sys.rs and qemu-plugin/src/ffi.rs: {offenders:?}"
    );
}
