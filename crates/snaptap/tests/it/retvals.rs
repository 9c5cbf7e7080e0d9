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

/// The `hex=` word of each line.
fn hex_words(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split(' ').find_map(|w| w.strip_prefix("hex=")))
        .map(str::to_string)
        .collect()
}

fn check_memory_formats(opt: &str) {
    let bin = fixture("retvals", opt, &[]);
    let bin = bin.to_str().unwrap();
    // %M at the entry of locate() and at the return of fill(): the same bytes, since
    // locate() runs right after fill() and does not change them. %m writes them raw.
    let script = format!(
        r#"probe process("{bin}").function("locate") {{
  printf("truth raw k=%d hex=%.8M first3=%.3M ghex=%.8M\n", $k, $a->raw, $a->raw, @var("global_acc")->raw)
  printf("rawm k=%d [%.8m]\n", $k, $a->raw)
}}
probe process("{bin}").function("fill").return {{
  printf("fillret hex=%.8M padded=[%20.*M]\n", $a->raw, 4, $a->raw)
}}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{bin} 4"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = lines_with(&stdout, "truth raw");
    assert_eq!(want.len(), 4, "fixture output: {stdout}");
    assert_lines(&lines_with(&out, "truth raw"), &want, &format!("%M {opt}"));
    // %m: the raw bytes between the brackets, hex-encoded, are the fixture's hex.
    let raw: Vec<String> = out
        .split("rawm k=")
        .skip(1)
        .filter_map(|chunk| {
            let (_, rest) = chunk.split_once('[')?;
            Some(
                rest.as_bytes()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(raw, hex_words(&want), "%m {opt}: {out}");
    let at_return = lines_with(&out, "fillret");
    assert_eq!(hex_words(&at_return), hex_words(&want), "{opt}: {out}");
    for (l, hex) in at_return.iter().zip(hex_words(&want)) {
        assert!(
            l.ends_with(&format!("padded=[{:>20}]", &hex[..8])),
            "{opt}: {l}"
        );
    }
}

#[test]
fn printf_memory_conversions_o0() {
    check_memory_formats("-O0");
}

#[test]
fn printf_memory_conversions_o2() {
    check_memory_formats("-O2");
}

fn check_addresses(opt: &str) {
    let bin = fixture("retvals", opt, &[]);
    let bin = bin.to_str().unwrap();
    // Addresses of a pointer's members and elements, of a local in memory, of a
    // global, its member and an array element, against the fixture's own `&`.
    let script = format!(
        r#"probe process("{bin}").function("locate") {{
  printf("truth addr k=%d a=%#x total=%#x count=%#x raw3=%p slot=%#x g=%#x gcount=%#x t3=%#x\n",
    $k, $a, &$a->total, &@cast($a, "struct acc")->count, &$a->raw[3], &$slot,
    &@var("global_acc"), &@var("global_acc")->count, &@var("table")[$k + 1])
  printf("raw k=%d hex=%.8M\n", $k, &$a->raw[0])
}}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{bin} 3"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = lines_with(&stdout, "truth addr");
    assert_eq!(want.len(), 3, "fixture output: {stdout}");
    // t3 is &table[3]; the script's index is $k + 1, an int further per k past 2.
    let got: Vec<String> = lines_with(&out, "truth addr")
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let (head, t3) = g.rsplit_once(" t3=0x").unwrap();
            let t3 = u64::from_str_radix(t3, 16).unwrap();
            let k = i as u64 + 1;
            format!("{head} t3={:#x}", t3 + 8 - 4 * k)
        })
        .collect();
    assert_lines(&got, &want, &format!("addresses {opt}"));
    // `&$a->raw[0]` is an address like any other: %M reads through it.
    assert_eq!(
        hex_words(&lines_with(&out, "raw k=")),
        hex_words(&lines_with(&stdout, "truth raw")),
        "{out}"
    );
}

#[test]
fn address_of_target_expressions_o0() {
    check_addresses("-O0");
}

#[test]
fn address_of_target_expressions_o2() {
    check_addresses("-O2");
}

#[test]
fn address_of_a_register_is_an_error() {
    // At -O2 locate's k lives in a register: stap's error, before the target runs.
    let bin = fixture("retvals", "-O2", &[]);
    let bin = bin.to_str().unwrap();
    let script = format!(r#"probe process("{bin}").function("locate") {{ println(&$k) }}"#);
    let (out, stdout, stderr, st) = trace(&script, &format!("{bin} 1"));
    assert!(!st.success(), "{out}");
    assert!(
        stderr.contains("semantic error: cannot take address of object in register: identifier '$k' at <input>:1:"),
        "{stderr}"
    );
    assert!(!stdout.contains("truth"), "the target ran: {stdout}");
}
