//! Fuzz target: arbitrary bytes as an ELF file with DWARF, CFI and SDT notes. Every
//! query the planner and the unwinder make must return (an error at worst), never
//! panic or hang.
#![no_main]

use std::path::Path;

use debuginfo::DebugInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(di) = DebugInfo::from_bytes(Path::new("/nonexistent/fuzz.elf"), data, &[]) {
        exercise(&di);
    }
    // The same bytes through the file reader, which reads ELF headers itself.
    let path = std::env::temp_dir().join(format!("debuginfo-fuzz-{}.elf", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        if let Ok(di) = DebugInfo::open_in(&path, &[]) {
            exercise(&di);
        }
    }
});

fn exercise(di: &DebugInfo) {
    let _ = di.sdt_probes();
    let _ = di.global_names();
    let _ = di.find_type("struct req");
    let _ = di.close_matches("mian");
    for f in di.functions().iter().take(50) {
        let pc = di.probe_addr(f);
        for v in di.variables_at(f, pc).iter().take(20) {
            let _ = di.type_of(v.ty);
            let _ = di.strip(v.ty);
        }
        let _ = di.variables_at_entry(f);
        let _ = di.line_at(pc);
        let _ = di.unwind_row(pc);
        let _ = di.cfa_at(pc);
        let _ = di.symbol_at(pc);
        let _ = di.inline_instances(f);
        let _ = di.match_functions(&f.name);
        let _ = di.type_of(f.return_type);
    }
    for f in di.inline_instances_all().iter().take(20) {
        let _ = di.variables_at(f, f.entry_pc);
    }
    let _ = di.match_functions("*");
    let _ = di.match_inlines("*");
    let _ = di.line_addrs("*.c", 10);
    for (a, _) in di.exec_ranges().iter().take(4) {
        let _ = di.function_at(*a);
        let _ = di.scope_at(*a);
        let _ = di.unwind_row(*a);
    }
}
