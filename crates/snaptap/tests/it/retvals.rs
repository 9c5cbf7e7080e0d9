//! Return probes read memory at the return through values saved at the entry, as stap
//! does: `user_int($outp)`, `kernel_long(@entry($a))` and `@cast($a, ...)->f` see what
//! the function stored, while `$a->f` and `@entry(...)` keep the entry's values.

use crate::support::*;

/// Lines of `text` starting with `prefix`.
fn lines_with(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn check_return_reads(opt: &str) {
    let bin = fixture("retvals", opt, &[]);
    let bin = bin.to_str().unwrap();
    // $a->total and $a->count are target expressions: stap evaluates them whole at
    // the entry. The calls and @cast run in the handler, at the return.
    let script = format!(
        r#"probe process("{bin}").function("fill").return {{
  printf("truth ret add=%d out=%d old_out=%d total=%d old_total=%d count=%d old_count=%d name=%s r=%d twice=%d sum=%d\n",
    $add, user_int($outp), @entry(user_int($outp)), kernel_long(@entry($a)), $a->total,
    @cast($a, "struct acc")->count, @entry($a->count), user_string($a->name), $return,
    @entry($add * 2 + 1), $return + @entry($add))
}}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{bin} 4"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = lines_with(&stdout, "truth ret");
    assert_eq!(want.len(), 4, "fixture output: {stdout}");
    assert_lines(
        &lines_with(&out, "truth ret"),
        &want,
        &format!("return reads {opt}"),
    );
}

#[test]
fn return_probes_read_memory_at_the_return_o0() {
    check_return_reads("-O0");
}

#[test]
fn return_probes_read_memory_at_the_return_o2() {
    check_return_reads("-O2");
}
