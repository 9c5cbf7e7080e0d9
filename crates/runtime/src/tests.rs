//! Unit tests of the runtime: scripts are parsed with `script_syntax`, run against
//! synthetic records, and their stdout/stderr compared with stap's exact text.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;

use capture_plan::{Decode, FieldStatus, PrettyPart, Record, SiteBinding, SiteId};
use script_syntax::ast::{Expr, ExprKind, Item, Script};
use script_syntax::{Diagnostic, SourceMap};

use super::*;

#[derive(Clone, Default)]
struct Buf(Rc<RefCell<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow()).into_owned()
    }
}

struct T {
    rt: Runtime,
    out: Buf,
    err: Buf,
}

fn parse(src: &str) -> (Script, SourceMap) {
    let mut sm = SourceMap::default();
    let f = sm.add("<input>", src);
    let (script, diags) = script_syntax::parse(&sm, f, &[]);
    assert!(diags.is_empty(), "parse errors: {diags:?}");
    (script, sm)
}

fn build_with(
    src: &str,
    bindings: Vec<SiteBinding>,
    opts: RuntimeOptions,
) -> Result<T, Vec<Diagnostic>> {
    // Script arguments are substituted by the parser, as stap's lexer does.
    let mut sm = SourceMap::default();
    let f = sm.add("<input>", src);
    let (script, diags) = script_syntax::parse(&sm, f, &opts.args);
    assert!(diags.is_empty(), "parse errors: {diags:?}");
    let out = Buf::default();
    let err = Buf::default();
    let mut rt = Runtime::new(&script, &sm, bindings, opts, Box::new(out.clone()))?;
    rt.set_stderr(Box::new(err.clone()));
    Ok(T { rt, out, err })
}

fn build(src: &str) -> T {
    match build_with(src, Vec::new(), RuntimeOptions::default()) {
        Ok(t) => t,
        Err(d) => panic!("elaboration failed: {d:?}"),
    }
}

fn kinds(t: &T) -> Vec<ProbeKind> {
    t.rt.prog.handlers.iter().map(|h| h.kind).collect()
}

/// Runs a session the way the driver does: begin probes, records, end and error
/// probes, finish.
fn session(t: &mut T, records: &[Record]) -> (String, String) {
    let k = kinds(t);
    let mut exit = false;
    for (i, kind) in k.iter().enumerate() {
        if *kind == ProbeKind::Begin && !exit {
            exit = t.rt.run_probe(i as u32) == Flow::Exit;
        }
    }
    if !exit {
        for r in records {
            if t.rt.handle(r) == Flow::Exit {
                break;
            }
        }
    }
    for (i, kind) in k.iter().enumerate() {
        if matches!(kind, ProbeKind::End | ProbeKind::Error) {
            // The driver stops its end loop on Exit; end handlers never ask for that.
            assert_eq!(t.rt.run_probe(i as u32), Flow::Continue);
        }
    }
    t.rt.finish();
    (t.out.text(), t.err.text())
}

fn run(src: &str) -> (String, String) {
    let mut t = build(src);
    session(&mut t, &[])
}

fn out(src: &str) -> String {
    let (o, e) = run(src);
    assert_eq!(e, "", "unexpected stderr");
    o
}

/// The elaboration errors of `src` (the warnings printed before them left out).
fn errors(src: &str) -> Vec<Diagnostic> {
    match build_with(src, Vec::new(), RuntimeOptions::default()) {
        Ok(_) => panic!("expected elaboration errors"),
        Err(d) => d
            .into_iter()
            .filter(|x| x.severity == script_syntax::Severity::Error)
            .collect(),
    }
}

/// The ids of all expressions (in probe bodies) matching `pred`.
fn find_ids(src: &str, pred: &dyn Fn(&Expr) -> bool) -> Vec<u32> {
    let (script, _) = parse(src);
    let mut found = Vec::new();
    for item in &script.items {
        if let Item::Probe(p) = item {
            compile::walk_block_exprs(&p.body.stmts, &mut |e| {
                if pred(e) {
                    found.push(e.id.0);
                }
            });
        }
    }
    found
}

/// The id of the first expression (in probe bodies) matching `pred`.
fn find_id(src: &str, pred: &dyn Fn(&Expr) -> bool) -> u32 {
    find_ids(src, pred)[0]
}

fn target_named(name: &'static str) -> impl Fn(&Expr) -> bool {
    move |e| matches!(&e.kind, ExprKind::Target(t) if t.name == name)
}

fn call_named(name: &'static str) -> impl Fn(&Expr) -> bool {
    move |e| matches!(&e.kind, ExprKind::Call { name: n, .. } if n == name)
}

/// A record with the given fields (each `Ok` bytes or a fault address).
fn record(site: u32, tid: u32, fields: &[Result<&[u8], u64>]) -> Record {
    let mut r = Record::new(SiteId(site), 100, tid, 1_700_000_000_123_456_789, 0x401000);
    r.comm = "a.out".into();
    for f in fields {
        match f {
            Ok(b) => {
                r.fields.push(FieldStatus::Ok {
                    offset: r.data.len() as u32,
                    len: b.len() as u32,
                });
                r.data.extend_from_slice(b);
            }
            Err(addr) => r.fields.push(FieldStatus::Fault { addr: *addr }),
        }
    }
    r
}

fn binding(site: u32, probe: u32, caps: Vec<(u32, Decode)>) -> SiteBinding {
    SiteBinding {
        site: SiteId(site),
        probe,
        pp: "process(\"/tmp/a.out\").function(\"f@a.c:3\")".into(),
        function: "f".into(),
        captures: caps.into_iter().collect::<BTreeMap<_, _>>(),
        ..SiteBinding::default()
    }
}

fn col_of(src: &str, needle: &str) -> usize {
    src.find(needle).expect("needle") + 1
}

// ---------------------------------------------------------------- basics

#[test]
fn hello_and_arithmetic() {
    assert_eq!(out(r#"probe begin { println("hello") }"#), "hello\n");
    assert_eq!(
        out("probe begin { x = 7; y = x * 3 - 1; printf(\"%d %d %d %d\\n\", y, y / 4, y % 4, -y / 4) }"),
        "20 5 0 -5\n"
    );
    assert_eq!(
        out("probe begin { x = 0x7fffffffffffffff; x++; println(x); println(1 << 62 << 1); println(-8 >> 1); println(-8 >>> 60) }"),
        "-9223372036854775808\n-9223372036854775808\n-4\n15\n"
    );
    // Shift counts are clamped to [0, 64] as stap does, 64 wrapping like x86.
    assert_eq!(
        out("probe begin { println(5 << -1, 5 << 64, 1 << 63 >> 70) }"),
        "55-9223372036854775808\n"
    );
    assert_eq!(
        out("probe begin { println(!0, !5, ~0, 6 & 3, 6 | 3, 6 ^ 3) }"),
        "10-1275\n"
    );
}

#[test]
fn strings_and_comparisons() {
    assert_eq!(
        out(
            r#"probe begin { s = "ab" . "cd"; s .= "e"; println(s, " ", strlen(s)); if (s == "abcde" && s < "b" && "b" > s) println("ok") }"#
        ),
        "abcde 5\nok\n"
    );
    assert_eq!(
        out(
            r#"probe begin { println(substr("hello", 1, 3), "|", substr("hello", 4, 10), "|", substr("hello", 9, 1), "|") }"#
        ),
        "ell|o||\n"
    );
    assert_eq!(
        out(
            r#"probe begin { println(isinstr("hello", "ll"), isinstr("hello", "x"), strtol("ff", 16), strtol("  -12", 10), strtol("0x1f", 0), strtol("017", 0)) }"#
        ),
        "10255-123115\n"
    );
    assert_eq!(
        out(
            r#"probe begin { println(str_replace("a-b-c", "-", "+"), toupper("aB"), tolower("aB"), isdigit("7x"), isdigit("x7"), stringat("AB", 1)) }"#
        ),
        "a+b+cABab1066\n"
    );
    assert_eq!(
        out(
            r#"probe begin { println(text_str("a\nb\"")); println(string_quoted("q")); println(sprint(42), sprintln("x")) }"#
        ),
        "a\\nb\\\"\n\"q\"\n42x\n\n"
    );
}

#[test]
fn tokenize_skips_empty_tokens() {
    assert_eq!(
        out(
            r#"probe begin { t = tokenize("a,,b c", ", "); while (t != "") { print(t, ";"); t = tokenize("", ", ") } println() }"#
        ),
        "a;b;c;\n"
    );
}

#[test]
fn regex_match_and_matched() {
    assert_eq!(
        out(
            r#"probe begin { s = "foo123bar"; if (s =~ "([a-z]+)([0-9]+)") println(matched(1), ":", matched(2)); println(s !~ "^x") }"#
        ),
        "foo:123\n1\n"
    );
}

#[test]
fn ternary_loops_break_continue() {
    assert_eq!(
        out("probe begin { for (i = 0; i < 10; i++) { if (i == 2) continue; if (i == 5) break; print(i) } println(); i = 3; while (i--) print(i > 0 ? \"y\" : \"n\"); println() }"),
        "0134\nyyn\n"
    );
}

#[test]
fn functions_recursion_and_types() {
    assert_eq!(
        out("function fib(n) { if (n < 2) return n; return fib(n-1) + fib(n-2) } function greet(who) { return \"hi \" . who } probe begin { println(fib(9)); println(greet(\"bob\")) }"),
        "34\nhi bob\n"
    );
    // A function without a return value returns 0.
    assert_eq!(
        out("function f(x) { y = x } probe begin { println(f(3)) }"),
        "0\n"
    );
}

#[test]
fn maxnesting_stops_deep_recursion() {
    let (o, e) = run("function r(n) { return r(n + 1) } probe begin { r(0) }");
    assert_eq!(o, "");
    let col = col_of(
        "function r(n) { return r(n + 1) } probe begin { r(0) }",
        "r(n + 1)",
    );
    assert_eq!(
        e,
        format!("ERROR: MAXNESTING exceeded near identifier 'r' at <input>:1:{col}\nWARNING: Number of errors: 1, skipped probes: 0\n")
    );
}

#[test]
fn try_catch_gets_message() {
    assert_eq!(
        out(
            r#"probe begin { try { x = 1 / 0 } catch (m) { println("caught: ", m) } try { error("boom") } catch { println("again") } }"#
        ),
        "caught: division by 0\nagain\n"
    );
}

#[test]
fn script_args_and_target() {
    let t = build_with(
        "probe begin { printf(\"%d %s %d %d\\n\", $1, @2, $#, target()) }",
        Vec::new(),
        RuntimeOptions {
            args: vec!["0x10".into(), "two".into()],
            target_pid: 4242,
            defines: Vec::new(),
        },
    );
    let mut t = t.unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(session(&mut t, &[]).0, "16 two 2 4242\n");
}

#[test]
fn global_initialisers() {
    assert_eq!(
        out("global n = 5, s = \"x\" probe begin { println(n, s) }"),
        "5x\n"
    );
}

// ---------------------------------------------------------------- printf

#[test]
fn printf_integer_conversions() {
    let cases: &[(&str, &str)] = &[
        ("%d|%i", "-5|-5"),
        ("%5d|%-5d|%05d", "   42|42   |00042"),
        ("%+d|% d|%+d", "+5| 5|-5"),
        ("%x|%X|%#x|%#X|%#x", "ff|FF|0xff|0XFF|0x0"),
        ("%o|%#o|%#o", "10|010|00"),
        ("%u|%x", "18446744073709551615|ffffffffffffffff"),
        ("%.3d|%8.3d|%-8.3d|", "007|     007|007     |"),
        // stap takes one flag only: in `%#08x` the 0 belongs to the width.
        (
            "%#08x|%#8x|%-8x|%08x|",
            "    0xff|    0xff|ff      |000000ff|",
        ),
        (
            "%p|%p|%20p|%-8p|",
            "0x1234|0x0|              0x1234|0x1234  |",
        ),
        ("%c%c|%3c|%-3c|%#c%#c%#c|", "AB|  A|A  |\\n\\001x|"),
        ("%*d|%-*d|%.*d", "   42|42   |007"),
        ("100%%", "100%"),
    ];
    let args: &[&str] = &[
        "-5, -5",
        "42, 42, 42",
        "5, 5, -5",
        "255, 255, 255, 255, 0",
        "8, 8, 0",
        "-1, -1",
        "7, 7, 7",
        "255, 255, 255, 255",
        "0x1234, 0, 0x1234, 0x1234",
        "65, 66, 65, 65, 10, 1, 120",
        "5, 42, 5, 42, 3, 7",
        "",
    ];
    for ((fmt, want), a) in cases.iter().zip(args) {
        let sep = if a.is_empty() { "" } else { ", " };
        let src = format!("probe begin {{ printf(\"{fmt}\"{sep}{a}) }}");
        assert_eq!(out(&src), *want, "format {fmt}");
    }
}

#[test]
fn printf_strings_and_sprintf() {
    assert_eq!(
        out(
            r#"probe begin { printf("[%s][%5s][%-5s][%.2s][%#s]\n", "abc", "abc", "abc", "abc", "a\tb") }"#
        ),
        "[abc][  abc][abc  ][ab][a\\tb]\n"
    );
    assert_eq!(
        out(r#"probe begin { s = sprintf("%d-%s", 3, "x"); println(s, strlen(s)) }"#),
        "3-x3\n"
    );
}

#[test]
fn printf_binary_writes_bytes() {
    let (o, _) = run(
        r#"probe begin { printf("%b%1b%2b%.2b|%4.1b|%-4.1b|", 0x0102030405060708, 65, 0x4243, 0x4445, 0x46, 0x47) }"#,
    );
    assert_eq!(
        o.as_bytes(),
        b"\x08\x07\x06\x05\x04\x03\x02\x01ACBED|\0\0\0F|G\0\0\0|"
    );
}

#[test]
fn print_family() {
    assert_eq!(
        out(
            r#"probe begin { print("a", 1); println("b", 2); printd(",", "x", 3, "y"); println(); printdln("-", 1, 2, 3); log("logged") }"#
        ),
        "a1b2\nx,3,y\n1-2-3\nlogged\n"
    );
}

#[test]
fn printf_type_and_count_errors() {
    let d = errors(r#"probe begin { printf("%d\n", "str") }"#);
    assert!(d[0].message.contains("type mismatch"), "{d:?}");
    let d = errors(r#"probe begin { printf("%d %d\n", 1) }"#);
    assert_eq!(
        d[0].message,
        "Wrong number of args to formatted print operator"
    );
    let d = errors(r#"probe begin { printf("%m", 1) }"#);
    assert!(d[0].message.contains("%m"), "{d:?}");
}

/// `%m`/`%M` as stap's `_stp_vsprint_memory`: the precision is the byte count
/// (default 1), the width pads with spaces like a string (`%M` counting two digits a
/// byte), `-` pads on the right. The argument is the probe's copy, as hex text.
#[test]
fn printf_memory_conversions() {
    use crate::format::{format, hex_bytes, parse_format, Arg};
    let bytes = hex_bytes(&[0x0a, 0x41, 0x00, 0xff]);
    assert_eq!(bytes, "0a4100ff");
    let pieces = parse_format("[%.4M][%M][%6.2M][%-6.2M][%.2m][%4.2m][%.3m]").unwrap();
    let mut out = Vec::new();
    format(&mut out, &pieces, &[Arg::S(&bytes); 7]);
    let mut want = b"[0a4100ff][0a][  0a41][0a41  ][".to_vec();
    want.extend_from_slice(b"\nA][  \nA][\nA\0]");
    assert_eq!(out, want);
}

// ---------------------------------------------------------------- arrays

#[test]
fn arrays_in_delete_multikey() {
    assert_eq!(
        out(
            r#"global a, b probe begin { a["x"] = 1; a["y"] = 2; println(["x"] in a, ["z"] in a, a["x"] + a["y"] + a["none"]); delete a["x"]; println(["x"] in a); b[1, "p"] = "one"; b[2, "q"] = "two"; println(b[2, "q"], b[1, "p"], [1, "p"] in b); delete b; println([1, "p"] in b) }"#
        ),
        "103\n0\ntwoone1\n0\n"
    );
}

#[test]
fn foreach_orders_like_stap() {
    let src = r#"global a
probe begin {
  a["b"] = 2; a["a"] = 3; a["c"] = 1; a["d"] = 3
  foreach (k in a) print(k); println()
  foreach (k+ in a) print(k); println()
  foreach (k- in a) print(k); println()
  foreach (k in a+) print(k); println()
  foreach (k in a-) print(k); println()
  foreach (k in a- limit 2) print(k); println()
  foreach (v = k in a) print(k, v); println()
}"#;
    assert_eq!(out(src), "bacd\nabcd\ndcba\ncbad\nadbc\nad\nb2a3c1d3\n");
}

#[test]
fn foreach_multikey_sort_and_reinsertion_order() {
    let src = r#"global m
probe begin {
  m[2, "x"] = 1; m[1, "y"] = 1; m[1, "x"] = 1
  foreach ([i, j+] in m) print(i, j, " "); println()
  foreach ([i+, j] in m) print(i, j, " "); println()
  delete m[2, "x"]; m[2, "x"] = 5
  foreach ([i, j] in m) print(i, j, " "); println()
}"#;
    assert_eq!(out(src), "2x 1x 1y \n1y 1x 2x \n1y 1x 2x \n");
}

#[test]
fn map_overflow_uses_stap_message() {
    let mut t = build_with(
        "global a probe begin { for (i = 0; i < 10; i++) a[i] = i }",
        Vec::new(),
        RuntimeOptions {
            defines: vec![("MAXMAPENTRIES".into(), "4".into())],
            ..RuntimeOptions::default()
        },
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let (_, e) = session(&mut t, &[]);
    let col = col_of(
        "global a probe begin { for (i = 0; i < 10; i++) a[i] = i }",
        "a[i]",
    );
    assert_eq!(
        e,
        format!("ERROR: Array overflow, check MAXMAPENTRIES near identifier 'a' at <input>:1:{col}\nWARNING: Number of errors: 1, skipped probes: 0\n")
    );
    let src = "global a[3] probe begin { a[1]++; a[2]++; a[3]++; a[4]++ }";
    let (_, e) = run(src);
    let col = col_of(src, "a[4]");
    assert!(
        e.starts_with(&format!(
            "ERROR: Array overflow, check size limit (3) near identifier 'a' at <input>:1:{col}\n"
        )),
        "{e}"
    );
}

// ---------------------------------------------------------------- aggregates

#[test]
fn aggregate_extractors() {
    assert_eq!(
        out("global s probe begin { s <<< 1; s <<< 2; s <<< 3; s <<< 4; printf(\"%d %d %d %d %d %d\\n\", @count(s), @sum(s), @min(s), @max(s), @avg(s), @variance(s)) }"),
        "4 10 1 4 2 5\n"
    );
    assert_eq!(
        out("global s probe begin { s <<< -7; s <<< 2; printf(\"%d %d %d %d\\n\", @min(s), @max(s), @avg(s), @sum(s)) }"),
        "-7 2 -2 -5\n"
    );
    assert_eq!(
        out("global a probe begin { a[\"x\"] <<< 5; a[\"x\"] <<< 7; a[\"y\"] <<< 1; println(@count(a[\"x\"]), @avg(a[\"x\"]), @count(a[\"none\"])) }"),
        "260\n"
    );
}

#[test]
fn empty_aggregate_is_an_error_except_count_and_sum() {
    let src = "global s probe begin { println(@count(s), @sum(s)); println(@max(s)) }";
    let (o, e) = run(src);
    assert_eq!(o, "00\n");
    let col = col_of(src, "@max");
    assert_eq!(
        e,
        format!("ERROR: empty aggregate near operator '@max' at <input>:1:{col}\nWARNING: Number of errors: 1, skipped probes: 0\n")
    );
}

fn spaces(n: usize) -> String {
    " ".repeat(n)
}

fn dashes() -> String {
    "-".repeat(50)
}

#[test]
fn hist_log_matches_stap_layout() {
    let got = out("global h probe begin { h <<< 0; h <<< 1; h <<< 1; h <<< 2; h <<< 3; h <<< 8; print(@hist_log(h)) }");
    let want = [
        format!("value |{} count", dashes()),
        format!("    0 |@{}1", spaces(50)),
        format!("    1 |@@{}2", spaces(49)),
        format!("    2 |@@{}2", spaces(49)),
        format!("    4 |{}0", spaces(51)),
        format!("    8 |@{}1", spaces(50)),
        format!("   16 |{}0", spaces(51)),
        format!("   32 |{}0", spaces(51)),
        String::new(),
        String::new(),
    ]
    .join("\n");
    assert_eq!(got, want);
}

#[test]
fn hist_log_elides_zero_rows() {
    let got = out("global h probe begin { h <<< 1; h <<< 1024; print(@hist_log(h)) }");
    let want = [
        format!("value |{} count", dashes()),
        format!("    0 |{}0", spaces(51)),
        format!("    1 |@{}1", spaces(50)),
        format!("    2 |{}0", spaces(51)),
        format!("    4 |{}0", spaces(51)),
        "      ~".to_string(),
        format!("  256 |{}0", spaces(51)),
        format!("  512 |{}0", spaces(51)),
        format!(" 1024 |@{}1", spaces(50)),
        format!(" 2048 |{}0", spaces(51)),
        format!(" 4096 |{}0", spaces(51)),
        String::new(),
        String::new(),
    ]
    .join("\n");
    assert_eq!(got, want);
}

#[test]
fn hist_log_negative_values_and_scaling() {
    // 120 values in one bucket: the bar is scaled to at most 50 '@' (scale 3 → 40).
    let got = out(
        "global h probe begin { for (i = 0; i < 120; i++) h <<< 5; h <<< -3; print(@hist_log(h)) }",
    );
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], format!("value |{} count", dashes()));
    assert_eq!(lines[1], format!("   -8 |{}0", spaces(53)));
    assert_eq!(lines[2], format!("   -4 |{}0", spaces(53)));
    assert_eq!(lines[3], format!("   -2 |{}1", spaces(53)));
    assert_eq!(lines[4], format!("   -1 |{}0", spaces(53)));
    assert_eq!(lines[5], format!("    0 |{}0", spaces(53)));
    assert_eq!(lines[6], format!("    1 |{}0", spaces(53)));
    assert_eq!(lines[7], format!("    2 |{}0", spaces(53)));
    assert_eq!(
        lines[8],
        format!("    4 |{}{}120", "@".repeat(40), spaces(11))
    );
    assert_eq!(lines[9], format!("    8 |{}0", spaces(53)));
    assert_eq!(lines[10], format!("   16 |{}0", spaces(53)));
}

#[test]
fn hist_linear_matches_stap_layout() {
    let got = out("global h probe begin { h <<< 5; h <<< 15; h <<< 15; h <<< 95; h <<< 150; h <<< -3; println(@hist_linear(h, 0, 100, 10)) }");
    let want = [
        format!("value |{} count", dashes()),
        format!("   <0 |@{}1", spaces(50)),
        format!("    0 |@{}1", spaces(50)),
        format!("   10 |@@{}2", spaces(49)),
        format!("   20 |{}0", spaces(51)),
        format!("   30 |{}0", spaces(51)),
        "      ~".to_string(),
        format!("   70 |{}0", spaces(51)),
        format!("   80 |{}0", spaces(51)),
        format!("   90 |@{}1", spaces(50)),
        format!("  100 |{}0", spaces(51)),
        format!(" >100 |@{}1", spaces(50)),
        String::new(),
        String::new(),
    ]
    .join("\n");
    assert_eq!(got, want);
}

#[test]
fn hist_of_array_element_and_errors() {
    let got = out("global h probe begin { h[\"a\"] <<< 1; print(@hist_log(h[\"a\"])) }");
    assert!(got.contains("    1 |@"), "{got}");
    let d = errors("global h probe begin { h <<< 1; print(@hist_linear(h, 0, 10, 0)) }");
    assert!(d[0].message.contains("interval"), "{d:?}");
    let d = errors(
        "global h probe begin { h <<< 1; print(@hist_log(h)); print(@hist_linear(h, 0, 10, 1)) }",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message, "multiple histogram types declared on '__global_h'",
        "{d:?}"
    );
}

// ---------------------------------------------------------------- runtime errors

#[test]
fn division_by_zero_reports_operator_location() {
    let src = "probe begin {\n  x = 0\n  y = 10 / x\n  println(\"not reached\")\n}";
    let mut t = build(src);
    let flow = t.rt.run_probe(0);
    assert_eq!(flow, Flow::Exit);
    t.rt.finish();
    assert_eq!(t.out.text(), "");
    assert_eq!(
        t.err.text(),
        "ERROR: division by 0 near operator '/' at <input>:3:10\nWARNING: Number of errors: 1, skipped probes: 0\n"
    );
    assert_eq!(t.rt.error_count(), 1);
    assert_eq!(t.rt.exit_code(), 1);
}

#[test]
fn maxerrors_allows_several_errors() {
    let src = "global n probe timer.ms(1) { n++; if (n % 2) error(sprintf(\"odd %d\", n)) } probe end { println(n) }";
    let mut t = build_with(
        src,
        Vec::new(),
        RuntimeOptions {
            defines: vec![("MAXERRORS".into(), "2".into())],
            ..RuntimeOptions::default()
        },
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let mut flows = Vec::new();
    for _ in 0..6 {
        flows.push(t.rt.run_probe(0));
    }
    // Errors at n = 1, 3, 5: the third exceeds MAXERRORS = 2.
    assert_eq!(flows[..4], [Flow::Continue; 4]);
    assert_eq!(flows[4], Flow::Exit);
    // End probes are skipped after MAXERRORS was exceeded, as in stap.
    t.rt.run_probe(1);
    t.rt.finish();
    assert_eq!(t.out.text(), "");
    let e = t.err.text();
    assert_eq!(e.matches("ERROR: odd").count(), 3, "{e}");
    assert!(
        e.ends_with("WARNING: Number of errors: 3, skipped probes: 0\n"),
        "{e}"
    );
}

#[test]
fn error_probe_runs_only_after_fatal_errors() {
    let (o, _) = run("probe begin { error(\"x\") } probe end { println(\"end\") } probe error { println(\"error probe\") }");
    assert_eq!(o, "error probe\n");
    let (o, _) = run("probe begin { exit() } probe end { println(\"end\") } probe error { println(\"error probe\") }");
    assert_eq!(o, "end\n");
}

#[test]
fn maxaction_counts_statements() {
    let src = "global n probe timer.ms(1) { while (1) n++ }";
    let mut t = build(src);
    assert_eq!(t.rt.run_probe(0), Flow::Exit);
    let e = t.err.text();
    // 1000 actions, shared between the loop test and the body: the body's turn.
    let col = col_of(src, "n++");
    assert_eq!(
        e,
        format!("ERROR: MAXACTION exceeded near identifier 'n' at <input>:1:{col}\n")
    );
    t.rt.finish();
    assert!(t.out.text().is_empty());
    // The interruptible begin probe gets ten times as much.
    let mut t = build_with(
        "global n probe begin { for (i = 0; i < 150; i++) n++; println(n) }",
        Vec::new(),
        RuntimeOptions {
            defines: vec![("MAXACTION".into(), "100".into())],
            ..RuntimeOptions::default()
        },
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(session(&mut t, &[]).0, "150\n");
    let mut t = build_with(
        "global n probe timer.s(1) { for (i = 0; i < 150; i++) n++; println(n) }",
        Vec::new(),
        RuntimeOptions {
            defines: vec![("MAXACTION".into(), "100".into())],
            ..RuntimeOptions::default()
        },
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(t.rt.run_probe(0), Flow::Exit);
    assert!(t.err.text().starts_with("ERROR: MAXACTION exceeded"));
}

#[test]
fn exit_finishes_handler_then_stops() {
    let mut t = build("global n probe timer.ms(10) { n++; exit(); println(\"after exit \", n) } probe end { println(\"end \", n) }");
    assert_eq!(t.rt.run_probe(0), Flow::Exit);
    // Timer probes do not run again after exit().
    assert_eq!(t.rt.run_probe(0), Flow::Exit);
    t.rt.run_probe(1);
    t.rt.finish();
    assert_eq!(t.out.text(), "after exit 1\nend 1\n");
    assert_eq!(t.rt.exit_code(), 0);
}

#[test]
fn warn_goes_to_stderr() {
    let (o, e) = run("probe begin { warn(\"careful\"); println(\"x\") }");
    assert_eq!(o, "x\n");
    assert_eq!(e, "WARNING: careful\n");
}

#[test]
fn maxstringlen_truncates() {
    let mut t = build_with(
        "probe begin { s = \"abcdefghij\"; s = s . s; println(s); println(sprintf(\"%s%s\", s, s)) }",
        Vec::new(),
        RuntimeOptions {
            defines: vec![("MAXSTRINGLEN".into(), "8".into())],
            ..RuntimeOptions::default()
        },
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(session(&mut t, &[]).0, "abcdefg\nabcdefg\n");
}

// ---------------------------------------------------------------- elaboration

#[test]
fn unresolved_function_suggests_names() {
    let d = errors("probe begin { prinln(\"x\") }");
    assert_eq!(d[0].kind, "semantic error");
    assert_eq!(
        d[0].message,
        "unresolved function prinln (similar: println, print, printd, printdln, printf)"
    );
    let d = errors("function frobnicate() { return 1 } probe begin { frobnicat() }");
    assert!(
        d[0].message
            .starts_with("unresolved function frobnicat (similar: frobnicate, "),
        "{:?}",
        d[0].message
    );
}

#[test]
fn type_mismatches_are_reported() {
    // (Without the println, stap elides both assignments and finds no probes.)
    let d = errors("probe begin { x = 1; x = \"s\"; println(x) }");
    // stap 4.8's wording: the conflict at the variable, then where its type came from.
    assert_eq!(d[0].message, "type mismatch (string)");
    assert_eq!(d[1].message, "type was first inferred here (long)");
    assert_eq!(
        (d[0].labels[0].span.start, d[1].labels[0].span.start),
        (21, 14)
    );
    let d = errors("global a probe begin { a[1] = 1; a[\"k\"] = 2 }");
    assert!(d[0].message.contains("type mismatch"), "{d:?}");
    let d = errors("function f(x) { return x . \"s\" } probe begin { f(1) }");
    assert!(d[0].message.contains("type mismatch"), "{d:?}");
    let d = errors("probe begin { println(x) }");
    assert_eq!(d[0].message, "unresolved type ");
    let (_, sm) = parse("probe begin { println(x) }");
    assert!(
        script_syntax::render_all(&d, &sm)
            .starts_with("semantic error: unresolved type : identifier 'x' at <input>:1:23\n"),
        "{d:?}"
    );
}

#[test]
fn arity_and_undeclared_arrays() {
    let src = "function f(a, b) { return a + b } probe begin { f(1) }";
    let d = errors(src);
    assert_eq!(
        d[0].message,
        "arity mismatch found (function 'f' takes 2 args)"
    );
    let (_, sm) = parse(src);
    // Byte for byte what `stap -p2` prints, but for the second file name (see golden.rs).
    assert_eq!(
        script_syntax::render(&d[0], &sm),
        format!(
            "semantic error: arity mismatch found (function 'f' takes 2 args): identifier 'f' at <input>:1:49\n\
             {pad}source: {src}\n{pad}{c49}^\n\
             identifier 'f' at <input>:1:10\n\
             {pad}source: {src}\n{pad}{c10}^\n\n",
            pad = " ".repeat(8),
            c49 = " ".repeat(8 + 48),
            c10 = " ".repeat(8 + 9),
        )
    );
    let d = errors("probe begin { a[1] = 2 }");
    assert_eq!(
        d[0].message,
        "unresolved arity-1 global array a, missing global declaration?"
    );
    let d = errors("global a probe begin { a[1] = 1; a[1, 2] = 2 }");
    assert_eq!(d[0].message, "inconsistent arity (1 vs 2)");
    assert_eq!(d[1].message, "arity 1 first inferred here");
    let d = errors("probe begin { strlen(1, 2) }");
    assert_eq!(
        d[0].message,
        "arity mismatch found (function 'strlen' takes 1 args)"
    );
}

#[test]
fn embedded_c_is_rejected() {
    let d = errors("function f:long () %{ STAP_RETURN(1); %} probe begin { println(f()) }");
    assert!(d[0].message.contains("embedded C"), "{d:?}");
}

#[test]
fn inference_through_calls_and_printf() {
    // Parameter type comes from the call site, return type from the return.
    assert_eq!(
        out("function id(v) { return v } probe begin { s = id(\"str\"); println(s) }"),
        "str\n"
    );
    // A local typed only by a printf conversion.
    assert_eq!(out("global g probe begin { printf(\"%s|\\n\", g) }"), "|\n");
}

// ---------------------------------------------------------------- records

const COUNT_SRC: &str = "global c probe process(\"a.out\").function(\"f\") { c[tid()]++ }";

#[test]
fn counting_handler_and_unread_global_printout() {
    let mut t = build_with(
        COUNT_SRC,
        vec![binding(0, 0, vec![])],
        RuntimeOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let recs: Vec<Record> = [7, 8, 7, 9, 7, 8]
        .iter()
        .map(|&tid| record(0, tid, &[]))
        .collect();
    let (o, e) = session(&mut t, &recs);
    assert_eq!(e, "");
    // Sorted by value, descending; ties in insertion order; values in decimal, as the
    // `printf("c[%#d]=%d\n", ...)` stap 4.8 synthesises.
    assert_eq!(o, "c[7]=3\nc[8]=2\nc[9]=1\n");
}

#[test]
fn unread_globals_of_every_kind() {
    let src = r#"global x, s, a, st, e, used
probe begin { x = 5; s = "hi\n"; a["k", 1] = 1; a["j", 2] = 2; st <<< 3; st <<< 5; e <<< 1; delete e; used = 1 }
probe end { if (used) println("end") }"#;
    let (o, _) = run(src);
    assert_eq!(
        o,
        "end\nx=5\ns=\"hi\\n\"\na[\"j\",2]=2\na[\"k\",1]=1\nst @count=2 @min=3 @max=5 @sum=8 @avg=4\ne @count=0x0\n"
    );
}

#[test]
fn context_functions_from_record() {
    let src = "probe process(\"a.out\").function(\"f\") { printf(\"%d %d %s %x %s %s %d %d\\n\", pid(), tid(), execname(), uaddr(), probefunc(), pp(), gettimeofday_s(), gettimeofday_ms()) }";
    let mut t = build_with(src, vec![binding(3, 0, vec![])], RuntimeOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"));
    let (o, _) = session(&mut t, &[record(3, 77, &[])]);
    assert_eq!(
        o,
        "100 77 a.out 401000 f process(\"/tmp/a.out\").function(\"f@a.c:3\") 1700000000 1700000000123\n"
    );
}

#[test]
fn captured_values_decode() {
    let src = "probe process(\"a.out\").function(\"f\") { printf(\"%d %d %s %d|%s\\n\", $len, $flags, user_string($name), @defined($nope), $$parms) }";
    let len = find_id(src, &target_named("len"));
    let flags = find_id(src, &target_named("flags"));
    let us = find_id(src, &call_named("user_string"));
    let parms = find_id(
        src,
        &|e| matches!(&e.kind, ExprKind::Target(t) if t.name == "$parms"),
    );
    let b = binding(
        0,
        0,
        vec![
            (
                len,
                Decode::Int {
                    field: 0,
                    size: 4,
                    signed: true,
                },
            ),
            (
                flags,
                Decode::Bitfield {
                    field: 1,
                    size: 2,
                    signed: false,
                    bit_offset: 4,
                    bit_size: 3,
                },
            ),
            (us, Decode::Str { field: 2 }),
            (
                parms,
                Decode::Pretty(vec![
                    PrettyPart::Text("len=".into()),
                    PrettyPart::Dec(Decode::Int {
                        field: 0,
                        size: 4,
                        signed: true,
                    }),
                    PrettyPart::Text(" p=".into()),
                    PrettyPart::Hex(Decode::Int {
                        field: 3,
                        size: 8,
                        signed: false,
                    }),
                    PrettyPart::Text(" s=".into()),
                    PrettyPart::Quoted(Decode::Str { field: 2 }),
                    PrettyPart::Text(" c=".into()),
                    PrettyPart::Char(Decode::Int {
                        field: 4,
                        size: 1,
                        signed: true,
                    }),
                ]),
            ),
        ],
    );
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let rec = record(
        0,
        1,
        &[
            Ok(&(-3i32).to_le_bytes()),
            Ok(&0x00d0u16.to_le_bytes()),
            Ok(b"he\"y\0junk"),
            Ok(&0xdeadbeefu64.to_le_bytes()),
            Ok(b"\n"),
        ],
    );
    let (o, e) = session(&mut t, &[rec]);
    assert_eq!(e, "");
    assert_eq!(
        o,
        "-3 5 he\"y 0|len=-3 p=0xdeadbeef s=\"he\\\"y\" c='\\n'\n"
    );
}

#[test]
fn capture_faults_use_stap_messages() {
    let src = "probe process(\"a.out\").function(\"f\") {\n  println(user_string($p))\n}";
    let us = find_id(src, &call_named("user_string"));
    let b = binding(0, 0, vec![(us, Decode::Str { field: 0 })]);
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let (o, e) = session(
        &mut t,
        &[record(0, 1, &[Err(0)]), record(0, 1, &[Ok(b"x\0")])],
    );
    assert_eq!(o, "");
    assert_eq!(
        e,
        "ERROR: user string copy fault -14 at 0x0000000000000000 [man error::fault] near identifier 'user_string' at <input>:2:11\nWARNING: Number of errors: 1, skipped probes: 0\n"
    );

    let src = "probe process(\"a.out\").function(\"f\") { println($p->x) }";
    let px = find_id(src, &target_named("p"));
    let b = binding(
        0,
        0,
        vec![(
            px,
            Decode::Int {
                field: 0,
                size: 8,
                signed: false,
            },
        )],
    );
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let (_, e) = session(&mut t, &[record(0, 1, &[Err(0x10)])]);
    let col = col_of(src, "$p->x");
    assert_eq!(
        e,
        format!("ERROR: read fault [man error::fault] at 0x0000000000000010 near identifier '$p' at <input>:1:{col}\nWARNING: Number of errors: 1, skipped probes: 0\n")
    );
}

#[test]
fn user_string2_falls_back_on_fault() {
    let src = "probe process(\"a.out\").function(\"f\") { println(user_string2($p, \"<bad>\")) }";
    let us = find_id(src, &call_named("user_string2"));
    let b = binding(0, 0, vec![(us, Decode::Str { field: 0 })]);
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let (o, e) = session(&mut t, &[record(0, 1, &[Err(8)])]);
    assert_eq!((o.as_str(), e.as_str()), ("<bad>\n", ""));
}

#[test]
fn uncaptured_target_is_an_internal_error() {
    let src = "probe process(\"a.out\").function(\"f\") { println($x) }";
    let mut t = build_with(src, vec![binding(0, 0, vec![])], RuntimeOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"));
    let (_, e) = session(&mut t, &[record(0, 1, &[])]);
    assert!(
        e.starts_with("ERROR: internal error: target expression '$x' was not captured"),
        "{e}"
    );
}

#[test]
fn histogram_of_captured_len_and_string_keys() {
    let src = "global h, by probe process(\"a.out\").function(\"f\") { h <<< $len; by[execname()] <<< $len } probe end { print(@hist_log(h)); foreach (k in by) printf(\"%s %d %d\\n\", k, @count(by[k]), @sum(by[k])) }";
    let caps = find_ids(src, &target_named("len"))
        .into_iter()
        .map(|id| {
            (
                id,
                Decode::Int {
                    field: 0,
                    size: 8,
                    signed: false,
                },
            )
        })
        .collect();
    let b = binding(0, 0, caps);
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let recs: Vec<Record> = [1u64, 1, 2]
        .iter()
        .map(|v| record(0, 1, &[Ok(&v.to_le_bytes())]))
        .collect();
    let (o, e) = session(&mut t, &recs);
    assert_eq!(e, "");
    assert!(o.contains(&format!("    1 |@@{}2\n", spaces(49))), "{o}");
    assert!(o.ends_with("a.out 3 4\n"), "{o}");
}

#[test]
fn probe_condition_gates_handler() {
    let src = "global on = 0, n probe process(\"a.out\").function(\"f\") if (on) { n++ } probe end { println(n) }";
    let mut t = build_with(src, vec![binding(0, 0, vec![])], RuntimeOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(session(&mut t, &[record(0, 1, &[])]).0, "0\n");
}

#[test]
fn uncalled_functions_are_elided() {
    assert_eq!(
        out("function unused(a, b) { return a } probe begin { println(1) }"),
        "1\n"
    );
}

#[test]
fn skipped_records_are_reported() {
    let mut t = build("probe begin { println(1) }");
    t.rt.note_skipped(7);
    let (o, e) = session(&mut t, &[]);
    assert_eq!(o, "1\n");
    assert_eq!(e, "WARNING: Number of errors: 0, skipped probes: 7\n");
}

#[test]
fn unknown_sites_are_ignored() {
    let mut t = build_with(
        COUNT_SRC,
        vec![binding(2, 0, vec![])],
        RuntimeOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(t.rt.handle(&record(9, 1, &[])), Flow::Continue);
    assert_eq!(t.rt.handle(&record(2, 1, &[])), Flow::Continue);
    let (o, _) = session(&mut t, &[]);
    assert_eq!(o, "c[1]=1\n");
}

#[test]
fn string_assignment_as_value_evaluates_once() {
    assert_eq!(
        out(
            r#"global a, n function f() { n++; return "v" } probe begin { x = a["k"] = f(); y = (z = "w"); println(x, y, z, n) }"#
        ),
        "vww1\na[\"k\"]=\"v\"\n"
    );
}

#[test]
fn every_end_probe_runs_after_exit() {
    let (o, _) = run(
        "probe begin { exit() } probe end { println(\"a\"); exit() } probe end { println(\"b\") }",
    );
    assert_eq!(o, "a\nb\n");
}

#[test]
fn begin_end_probe_runs_in_both_places() {
    let mut t =
        build("global n probe begin, end { n++; printf(\"run %d\\n\", n) } probe begin { exit() }");
    assert_eq!(t.rt.run_probe(0), Flow::Continue);
    assert_eq!(t.rt.run_probe(1), Flow::Exit);
    assert_eq!(t.rt.run_probe(0), Flow::Continue);
    t.rt.finish();
    assert_eq!(t.out.text(), "run 1\nrun 2\n");
}

#[test]
fn defined_and_entry_without_captures() {
    // Nothing captured anywhere: @defined is 0 and the guarded access never runs.
    let src = "probe process(\"a.out\").function(\"f\").return { println(@defined($x) ? $x : -1, \" \", @defined(1 + 1)) }";
    let mut t = build_with(src, vec![binding(0, 0, vec![])], RuntimeOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(session(&mut t, &[record(0, 1, &[])]).0, "-1 1\n");

    // @entry($n) captured through its inner expression, $return directly.
    let src = "probe process(\"a.out\").function(\"f\").return { printf(\"%d -> %d\\n\", @entry($n), $return) }";
    let n = find_id(src, &target_named("n"));
    let r = find_id(src, &target_named("return"));
    let b = binding(
        0,
        0,
        vec![
            (
                n,
                Decode::Int {
                    field: 0,
                    size: 4,
                    signed: true,
                },
            ),
            (
                r,
                Decode::Int {
                    field: 1,
                    size: 8,
                    signed: true,
                },
            ),
        ],
    );
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let rec = record(0, 1, &[Ok(&5i32.to_le_bytes()), Ok(&120i64.to_le_bytes())]);
    assert_eq!(session(&mut t, &[rec]).0, "5 -> 120\n");
}

#[test]
fn warn_variants_and_kernel_strings() {
    let src = "probe process(\"a.out\").function(\"f\") { println(\"[\", user_string_warn($p), \"]\"); println(kernel_string($k)) }";
    let w = find_id(src, &call_named("user_string_warn"));
    let k = find_id(src, &call_named("kernel_string"));
    let b = binding(
        0,
        0,
        vec![(w, Decode::Str { field: 0 }), (k, Decode::Str { field: 1 })],
    );
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let (o, e) = session(
        &mut t,
        &[record(0, 1, &[Err(0x20), Err(0xffff800000001000)])],
    );
    assert_eq!(o, "[]\n");
    let col = col_of(src, "kernel_string");
    assert_eq!(
        e,
        format!(
            "WARNING: user string copy fault -14 at 0x0000000000000020 [man error::fault]\n\
             ERROR: kernel string copy fault at 0xffff800000001000 [man error::fault] near identifier 'kernel_string' at <input>:1:{col}\n\
             WARNING: Number of errors: 1, skipped probes: 0\n"
        )
    );
}

#[test]
fn signed_bitfields_and_short_fields() {
    let src = "probe process(\"a.out\").function(\"f\") { println($b, \" \", $c, \" \", $u) }";
    let b = find_id(src, &target_named("b"));
    let c = find_id(src, &target_named("c"));
    let u = find_id(src, &target_named("u"));
    let bind = binding(
        0,
        0,
        vec![
            (
                b,
                Decode::Bitfield {
                    field: 0,
                    size: 1,
                    signed: true,
                    bit_offset: 1,
                    bit_size: 3,
                },
            ),
            (
                c,
                Decode::Int {
                    field: 1,
                    size: 1,
                    signed: true,
                },
            ),
            (
                u,
                Decode::Int {
                    field: 1,
                    size: 1,
                    signed: false,
                },
            ),
        ],
    );
    let mut t =
        build_with(src, vec![bind], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    // bits 1..3 of 0b0000_1100 are 0b110 = -2 as a signed 3-bit value.
    let rec = record(0, 1, &[Ok(&[0b0000_1100]), Ok(&[0xff])]);
    assert_eq!(session(&mut t, &[rec]).0, "-2 -1 255\n");
}

#[test]
fn missing_register_is_an_internal_error() {
    let src = "probe process(\"a.out\").function(\"f\") { println($x) }";
    let x = find_id(src, &target_named("x"));
    let b = binding(
        0,
        0,
        vec![(
            x,
            Decode::Int {
                field: 0,
                size: 8,
                signed: false,
            },
        )],
    );
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let mut rec = record(0, 1, &[]);
    rec.fields.push(FieldStatus::NoRegister(33));
    let (_, e) = session(&mut t, &[rec]);
    assert!(
        e.starts_with("ERROR: internal error: DWARF register 33 is not available"),
        "{e}"
    );
}

#[test]
fn string_keys_and_values_in_records() {
    let src = "global last probe process(\"a.out\").function(\"f\") { last[execname(), tid()] = user_string($p) } probe end { foreach ([n, t+] in last) printf(\"%s/%d=%s\\n\", n, t, last[n, t]) }";
    let us = find_id(src, &call_named("user_string"));
    let b = binding(0, 0, vec![(us, Decode::Str { field: 0 })]);
    let mut t =
        build_with(src, vec![b], RuntimeOptions::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let recs = [
        record(0, 9, &[Ok(b"nine\0")]),
        record(0, 3, &[Ok(b"three\0")]),
        record(0, 9, &[Ok(b"nine again")]),
    ];
    assert_eq!(
        session(&mut t, &recs).0,
        "a.out/3=three\na.out/9=nine again\n"
    );
}

#[test]
fn ctime_and_abort() {
    assert_eq!(
        out("probe begin { println(ctime(0)); println(ctime(741476948)); println(ctime(1700000000)); println(ctime(-1)) }"),
        "Thu Jan  1 00:00:00 1970\nWed Jun 30 21:49:08 1993\nTue Nov 14 22:13:20 2023\nWed Dec 31 23:59:59 1969\n"
    );
    let (o, _) = run("global x probe begin { x = 1; abort(); println(\"not reached\") } probe end { println(\"end\") }");
    assert_eq!(o, "");
}

#[test]
fn thread_indent_nests_per_thread() {
    let src = "probe process(\"a.out\").function(\"f\") { printf(\"%s->f\\n\", thread_indent(1)) } probe process(\"a.out\").function(\"f\").return { printf(\"%s<-f\\n\", thread_indent(-1)) }";
    let mut t = build_with(
        src,
        vec![binding(0, 0, vec![]), binding(1, 1, vec![])],
        RuntimeOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let mut recs = Vec::new();
    for (i, site) in [0u32, 0, 1, 1].iter().enumerate() {
        let mut r = record(*site, 5, &[]);
        r.time_ns = 1_000_000 + i as u64 * 7_000;
        recs.push(r);
    }
    let (o, _) = session(&mut t, &recs);
    assert_eq!(
        o,
        "     0 a.out(5):->f\n     7 a.out(5): ->f\n    14 a.out(5): <-f\n    21 a.out(5):<-f\n"
    );
}

#[test]
fn huge_widths_are_clamped() {
    let o = out(r#"probe begin { printf("%999999999d|%*s|\n", 1, 2000000000, "x") }"#);
    assert_eq!(o.len(), 8192 + 1 + 8192 + 2);
}

// ---------------------------------------------------------------- robustness

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// A random long-valued expression (sometimes ill-typed, which elaboration must reject).
fn rand_long(r: &mut Rng, d: usize) -> String {
    const LEAVES: &[&str] = &[
        "0",
        "1",
        "-1",
        "7",
        "x",
        "n",
        "a[1]",
        "a[n]",
        "b[\"k\", 2]",
        "@count(s)",
        "@sum(s)",
        "@min(s)",
        "@avg(s)",
        "@variance(s)",
        "@max(h[1])",
        "strlen(t)",
        "$#",
        "pid()",
        "9223372036854775807",
        "-9223372036854775808",
        "0x10",
        "gettimeofday_s()",
        "y",
        "stringat(t, n)",
        "strtol(t, 16)",
        "isinstr(t, \"a\")",
        "randint(5)",
        "f(n)",
        "g(t)",
        "1 in a",
        "[1, \"k\"] in b",
        "t =~ \"a+\"",
        "t !~ \"^[a-c]*$\"",
        "abs(n)",
    ];
    if d == 0 || r.below(3) == 0 {
        return r.pick(LEAVES).to_string();
    }
    let op = r.pick(&[
        "+", "-", "*", "/", "%", "<<", ">>", ">>>", "&", "|", "^", "&&", "||", "<", "==",
    ]);
    match r.below(6) {
        0 => format!("({} {op} {})", rand_long(r, d - 1), rand_long(r, d - 1)),
        1 => format!("(t < {})", rand_str(r, d - 1)),
        2 => format!(
            "({} ? {} : {})",
            rand_long(r, d - 1),
            rand_long(r, d - 1),
            rand_long(r, d - 1)
        ),
        3 => format!("(x = {})", rand_long(r, d - 1)),
        4 => format!("-{}", rand_long(r, d - 1)),
        _ => format!("a[{}]++", rand_long(r, d - 1)),
    }
}

/// A random string-valued expression.
fn rand_str(r: &mut Rng, d: usize) -> String {
    const LEAVES: &[&str] = &[
        "\"\"",
        "\"abc\"",
        "\"a\\n\\\"b\"",
        "t",
        "u",
        "@1",
        "execname()",
        "pp()",
        "matched(0)",
        "b[\"k\", 1]",
        "sprint(n)",
        "sprintln(t, n)",
        "ctime(n)",
        "error_str",
    ];
    if d == 0 || r.below(3) == 0 {
        return r.pick(LEAVES).to_string();
    }
    // Formats with the argument types they consume: long, long, string.
    let fmt = r.pick(&[
        "%d%d%s",
        "%d%x%s",
        "%-*d%s",
        "%*.*s",
        "%#x%05o%s",
        "%+i%c%10.3s",
        "%b%.2b%s",
        "%p%u%% %s",
        "%#c%d%s",
        "%*d%s",
    ]);
    match r.below(10) {
        0 => format!("({} . {})", rand_str(r, d - 1), rand_str(r, d - 1)),
        1 => format!(
            "substr({}, {}, {})",
            rand_str(r, d - 1),
            rand_long(r, d - 1),
            rand_long(r, d - 1)
        ),
        2 => format!(
            "sprintf(\"{fmt}\", {}, {}, {})",
            rand_long(r, d - 1),
            rand_long(r, d - 1),
            rand_str(r, d - 1)
        ),
        3 => format!(
            "str_replace({}, {}, \"xy\")",
            rand_str(r, d - 1),
            rand_str(r, d - 1)
        ),
        4 => format!("tokenize({}, \" ,\")", rand_str(r, d - 1)),
        5 => format!(
            "text_strn({}, {}, {})",
            rand_str(r, d - 1),
            rand_long(r, d - 1),
            rand_long(r, d - 1)
        ),
        6 => format!("(u = {})", rand_str(r, d - 1)),
        7 => format!(
            "sprintf(\"%s%d\", {}, {})",
            rand_str(r, d - 1),
            rand_long(r, d - 1)
        ),
        8 => format!("thread_indent({})", rand_long(r, d - 1)),
        _ => format!("string_quoted({})", rand_str(r, d - 1)),
    }
}

fn rand_stmt(r: &mut Rng, d: usize) -> String {
    let simple = |r: &mut Rng| -> String {
        match r.below(25) {
            0 => format!("x = {}", rand_long(r, 2)),
            1 => format!("t = {}", rand_str(r, 2)),
            2 => format!("a[{}] = {}", rand_long(r, 1), rand_long(r, 2)),
            3 => format!(
                "b[{}, {}] = {}",
                rand_str(r, 1),
                rand_long(r, 1),
                rand_str(r, 2)
            ),
            4 => format!("s <<< {}", rand_long(r, 2)),
            5 => format!("h[{}] <<< {}", rand_long(r, 1), rand_long(r, 2)),
            6 => "print(@hist_log(s))".into(),
            7 => "print(@hist_linear(h[1], -10, 100, 7))".into(),
            8 => format!(
                "printf(\"%d %s\\n\", {}, {})",
                rand_long(r, 2),
                rand_str(r, 2)
            ),
            9 => format!("println({}, {})", rand_long(r, 2), rand_str(r, 1)),
            10 => "delete a".into(),
            11 => format!("delete b[{}, 1]", rand_str(r, 1)),
            12 => format!("printd(\"::\", {}, {})", rand_long(r, 1), rand_str(r, 1)),
            13 => "next".into(),
            14 => r
                .pick(&["exit()", "error(\"boom\")", "warn(t)", "break", "continue"])
                .into(),
            15 => format!("n = {}", rand_long(r, 3)),
            16 => "delete s".into(),
            17 => format!("u .= {}", rand_str(r, 2)),
            18 => format!(
                "x {}= {}",
                r.pick(&["+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^"]),
                rand_long(r, 2)
            ),
            19 => "print(@hist_log(s))".into(),
            20 => format!("printdln(\",\", {}, {})", rand_long(r, 1), rand_str(r, 1)),
            21 => format!("print(@hist_linear(h[{}], -10, 100, 7))", rand_long(r, 1)),
            22 => format!("y = {}", rand_long(r, 2)),
            23 => r
                .pick(&[
                    "delete a[*]",
                    "x = [*] in a",
                    "x = @hist_log(s)[n]",
                    "foreach ([k] in a[n]) x += k",
                    "foreach ([k] in @hist_log(s) limit 3) x += k",
                    "foreach (w = [k] in @hist_linear(h[1], -10, 100, 7)-) x += w",
                    "foreach ([p, q] in b[*, 1]) x++",
                    "delete b[\"k\", *]",
                ])
                .into(),
            _ => rand_long(r, 2),
        }
    };
    if d == 0 {
        return simple(r);
    }
    match r.below(10) {
        0 => format!(
            "if ({}) {{ {} }} else {{ {} }}",
            rand_long(r, 2),
            rand_stmt(r, d - 1),
            rand_stmt(r, d - 1)
        ),
        1 => format!("while ({}) {{ {} }}", rand_long(r, 1), rand_stmt(r, d - 1)),
        2 => format!(
            "for (i = 0; i < {}; i++) {{ {} }}",
            rand_long(r, 1),
            rand_stmt(r, d - 1)
        ),
        3 => format!(
            "foreach ([k{}] in a{} limit {}) {{ {} }}",
            r.pick(&["", "+", "-"]),
            "",
            rand_long(r, 1),
            rand_stmt(r, d - 1)
        ),
        4 => format!("foreach ([p, q-] in b) {{ {} }}", rand_stmt(r, d - 1)),
        5 => format!(
            "try {{ {} }} catch (error_str) {{ {} }}",
            rand_stmt(r, d - 1),
            rand_stmt(r, d - 1)
        ),
        6 => format!("foreach ([k] in h-) {{ {} }}", rand_stmt(r, d - 1)),
        _ => format!("{}; {}", rand_stmt(r, d - 1), rand_stmt(r, d - 1)),
    }
}

/// Random scripts through parse, elaboration and the begin/end probes with tiny limits:
/// whatever the script does, nothing panics and every handler terminates.
#[test]
fn random_scripts_never_panic() {
    // RANDOM_SCRIPTS_CASES / RANDOM_SCRIPTS_SEED run a longer soak by hand.
    let cases: usize = std::env::var("RANDOM_SCRIPTS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("RANDOM_SCRIPTS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let mut r = Rng(seed | 1);
    let mut ran = 0;
    for case in 0..cases {
        let text = format!(
            "global a, b, s, h, y\n\
             function f(n) {{ if (n > 0) return f(n - 1) + 1; {} ; return n }}\n\
             function g(t:string) {{ {} ; if (t == \"\") return 2; return strlen(t) }}\n\
             probe begin {{ n = 3; t = \"a,b c\"; u = \"\"; error_str = \"\"; {} }}\n\
             probe begin {{ {} }}\n\
             probe end {{ {} }}\n\
             probe error {{ {} }}\n",
            rand_stmt(&mut r, 1),
            rand_stmt(&mut r, 1),
            rand_stmt(&mut r, 3),
            rand_stmt(&mut r, 2),
            rand_stmt(&mut r, 2),
            rand_stmt(&mut r, 1),
        );
        let mut sm = SourceMap::default();
        let f = sm.add("<random>", text.clone());
        let (script, diags) = script_syntax::parse(&sm, f, &["7".to_string()]);
        let _ = script_syntax::render_all(&diags, &sm);
        if !diags.is_empty() {
            if std::env::var_os("RANDOM_SCRIPTS_DEBUG").is_some() {
                eprintln!("PARSE {}", script_syntax::render_all(&diags[..1], &sm));
            }
            continue;
        }
        let opts = RuntimeOptions {
            args: vec!["7".to_string()],
            defines: vec![
                ("MAXACTION".into(), (5 + case % 50).to_string()),
                ("MAXSTRINGLEN".into(), (8 + case % 100).to_string()),
                ("MAXMAPENTRIES".into(), (1 + case % 20).to_string()),
                ("MAXERRORS".into(), (case % 3).to_string()),
            ],
            ..Default::default()
        };
        let out = Buf::default();
        let mut rt = match Runtime::new(&script, &sm, Vec::new(), opts, Box::new(out.clone())) {
            Ok(rt) => rt,
            Err(d) => {
                // Every elaboration error has a location to point at.
                let rendered = script_syntax::render_all(&d, &sm);
                assert!(rendered.contains("semantic error"), "{text}\n{rendered}");
                if std::env::var_os("RANDOM_SCRIPTS_DEBUG").is_some() {
                    eprintln!("SEM {}", script_syntax::render_all(&d[..1], &sm));
                    eprintln!("TEXT {text}");
                }
                continue;
            }
        };
        let err = Buf::default();
        rt.set_stderr(Box::new(err.clone()));
        let mut t = T { rt, out, err };
        let _ = session(&mut t, &[record(0, 1, &[])]);
        ran += 1;
    }
    assert!(ran > cases / 8, "only {ran} of {cases} random scripts ran");
}

/// Found by `random_scripts_never_panic`: a huge `thread_indent` delta used to overflow
/// and ask for a padding width the formatter rejects.
#[test]
fn thread_indent_with_huge_delta_is_bounded() {
    let o = out(
        "probe begin { s = thread_indent(9223372036854775807); t = thread_indent(9223372036854775807); println(strlen(s) <= 512, strlen(t) <= 512) }",
    );
    assert_eq!(o, "11\n");
}

#[test]
fn conditions_of_multi_point_probes_apply_per_point() {
    // The driver expands the script first, which gives each conditional point its own
    // handler; only the point whose condition holds (or that has none) runs.
    let src = "global on = 0, off = 0\n\
               probe begin if (off), begin, end if (on) { println(pp()) }\n\
               probe begin { on = 1 }\n";
    let (script, sm) = parse(src);
    let (script, d) = script_syntax::expand_script(&script);
    assert!(d.is_empty());
    let out = Buf::default();
    let err = Buf::default();
    let mut rt = Runtime::new(
        &script,
        &sm,
        Vec::new(),
        RuntimeOptions::default(),
        Box::new(out.clone()),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    rt.set_stderr(Box::new(err.clone()));
    let mut t = T { rt, out, err };
    let (o, e) = session(&mut t, &[]);
    assert_eq!(e, "");
    assert_eq!(o, "begin\nend\n");
}

fn warnings_of(src: &str) -> String {
    let (script, sm) = parse(src);
    let rt = Runtime::new(
        &script,
        &sm,
        Vec::new(),
        RuntimeOptions::default(),
        Box::new(Buf::default()),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    script_syntax::render_all(rt.warnings(), &sm)
}

#[test]
fn unused_code_warnings_follow_stap() {
    // stap 4.8's optimiser order (`stap -p2` on this script): never-assigned variables,
    // dead assignments, side-effect-free statements; unused functions and globals are
    // elided silently; after the first location the file name is left out; the second
    // side-effect-free warning is suppressed as similar (stap counts one more that
    // snaptap does not make).
    let src = "global hits, spare, never\n\
               function used() { return 1 }\n\
               function lonely(a) { return a }\n\
               probe begin { hits = 1; z = 3; println(y + never); w = used(); 5 }\n";
    let w = warnings_of(src);
    let expected = "\
WARNING: never-assigned local variable 'y' (similar: w, z, hits, never): identifier 'y' at <input>:4:40
 source: probe begin { hits = 1; z = 3; println(y + never); w = used(); 5 }
                                                ^
WARNING: never-assigned global variable 'never' (similar: never, hits): identifier 'never' at :1:21
 source: global hits, spare, never
                             ^
WARNING: Eliding assignment to 'z': operator '=' at :4:27
 source: probe begin { hits = 1; z = 3; println(y + never); w = used(); 5 }
                                   ^
WARNING: Eliding assignment to 'w': operator '=' at :4:54
 source: probe begin { hits = 1; z = 3; println(y + never); w = used(); 5 }
                                                              ^
WARNING: Eliding side-effect-free expression : identifier 'z' at :4:25
 source: probe begin { hits = 1; z = 3; println(y + never); w = used(); 5 }
                                 ^
";
    assert_eq!(w, expected);
    let (script, sm) = parse(src);
    let rt = Runtime::new(
        &script,
        &sm,
        Vec::new(),
        RuntimeOptions::default(),
        Box::new(Buf::default()),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(rt.similar_warnings(), 1, "the side-effect-free `5`");
    // Written-but-unread globals are printed at the end instead; read locals, foreach
    // variables, catch variables and compound assignments are no dead code.
    assert_eq!(
        warnings_of(
            "global g, a\n\
             probe begin { g = 1; a[1] = 2; x = 1; x += 2; println(x); foreach ([k] in a) { }\n\
             try { error(\"e\") } catch (m) { } for (i = 0; i < 2; i++) { } }"
        ),
        ""
    );
}

#[test]
fn foreach_diagnostics_point_at_the_names() {
    let src = "global a\nprobe begin { a[\"x\"] = 1; k = 1; foreach ([k] in a) { } }";
    let d = errors(src);
    let (_, sm) = parse(src);
    let r = script_syntax::render_all(&d, &sm);
    assert!(
        r.starts_with(
            "semantic error: type mismatch: expected string but found long: identifier 'k' at <input>:2:44\n"
        ),
        "{r}"
    );
    let src = "probe begin { foreach ([k, v] in nosuch) { } }";
    let d = errors(src);
    let (_, sm) = parse(src);
    assert_eq!(
        script_syntax::render_all(&d, &sm),
        "semantic error: unresolved arity-2 global array nosuch, missing global declaration?: identifier 'nosuch' at <input>:1:34\n        source: probe begin { foreach ([k, v] in nosuch) { } }\n                                                 ^\n\n1 semantic error.\n"
    );
}

#[test]
fn hist_elision_and_width_follow_defines() {
    let src = "global s probe begin { for (i = 0; i < 30; i++) s <<< 1; s <<< 1000; print(@hist_log(s)) }";
    let run_with = |defs: &[(&str, &str)]| {
        let opts = RuntimeOptions {
            defines: defs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        };
        let mut t = build_with(src, Vec::new(), opts).unwrap_or_else(|d| panic!("{d:?}"));
        session(&mut t, &[]).0
    };
    // HIST_ELISION=0 keeps no zero rows between data rows.
    assert_eq!(
        run_with(&[("HIST_ELISION", "0")]),
        format!(
            "value |{d} count\n      ~\n    1 |{a}{s}30\n      ~\n  512 |@{s1}1\n\n",
            d = dashes(),
            a = "@".repeat(30),
            s = spaces(21),
            s1 = spaces(51)
        )
    );
    // A negative HIST_ELISION shows every row in range; HIST_WIDTH scales the bars.
    let all = run_with(&[("HIST_ELISION", "-1"), ("HIST_WIDTH", "10")]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines[0], "value |---------- count");
    assert_eq!(lines[2], "    1 |@@@@@@@@@@ 30");
    assert!(!all.contains('~'), "{all}");
    // Rows 0, 1, 2, ..., 2048 (two past the data), then the blank line.
    assert_eq!(lines.len(), 1 + 13 + 1, "{all}");
}

#[test]
fn text_str_follows_stap_escaping_and_truncation() {
    // `"` and `\` are escaped, `'` is not; UTF-8 becomes \uXXXX; control bytes octal.
    assert_eq!(
        out(r#"probe begin { println(text_str("a\tb\001\"'\\")) }"#),
        "a\\tb\\001\\\"'\\\\\n"
    );
    assert_eq!(
        out("probe begin { println(string_quoted(\"h\u{e9}llo\u{2603}\u{1f600}\")) }"),
        "\"h\\u00E9llo\\u2603\\U0001F600\"\n"
    );
    // text_strn: the quotes count against the length, and a cut input ends in `"...`
    // within it, exactly as _stp_text_str backs up.
    assert_eq!(
        out("probe begin { println(text_strn(\"abcdefgh\", 6, 1)); println(text_strn(\"abcd\", 6, 1)); println(text_strn(\"abc\\ndef\", 4, 1)); println(text_strn(\"abcdef\", 3, 0)); println(text_strn(\"h\u{e9}\", 3, 0)) }"),
        "\"a\"...\n\"abcd\"\n\"\"...\nabc\nh\n"
    );
    // text_str stops before an escape that would pass MAXSTRINGLEN - 1 bytes.
    let mut t = build_with(
        r#"probe begin { println(text_str("abcdef\n")) }"#,
        Vec::new(),
        RuntimeOptions {
            defines: vec![("MAXSTRINGLEN".into(), "8".into())],
            ..Default::default()
        },
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(session(&mut t, &[]).0, "abcdef\n");
    // `%#s` escapes the same way; `%#c` quotes `'` as C does.
    assert_eq!(
        out(r#"probe begin { printf("%#s|%#c%#c\n", "x\"y'z", 39, 10) }"#),
        "x\\\"y'z|\\'\\n\n"
    );
}

#[test]
fn stringat_out_of_bounds_uses_stap_message() {
    let (o, e) =
        run("probe begin { println(stringat(\"abc\", 1)); println(stringat(\"abc\", 3)) }");
    assert_eq!(o, "98\n");
    assert!(
        e.starts_with("ERROR: Position out of bounds near identifier 'stringat' at <input>:1:"),
        "{e}"
    );
}

#[test]
fn errno_and_return_str() {
    assert_eq!(
        out("probe begin { printf(\"%s %s [%s] [%s] %d %d\\n\", errno_str(-2), errno_str(111), errno_str(0), errno_str(41), errno_p(-13), errno_p(5000)) }"),
        "ENOENT ECONNREFUSED [] [] 13 0\n"
    );
    assert_eq!(
        out("probe begin { printf(\"%s|%s|%s|%s|%s\\n\", return_str(1, -2), return_str(2, 255), return_str(3, 8), return_str(1, 7), return_str(1, -4095)) }"),
        "-2 (ENOENT)|0xff|010|7|-4095\n"
    );
    // The table agrees with the C library's numbering.
    for (n, name) in [
        (libc_like::EPIPE, "EPIPE"),
        (libc_like::ENOTSOCK, "ENOTSOCK"),
        (libc_like::ETIMEDOUT, "ETIMEDOUT"),
        (libc_like::EOWNERDEAD, "EOWNERDEAD"),
    ] {
        assert_eq!(exec::errno_name(n), Some(name));
    }
}

/// errno values from <asm-generic/errno*.h>, written out so the test needs no libc.
mod libc_like {
    pub const EPIPE: i64 = 32;
    pub const ENOTSOCK: i64 = 88;
    pub const ETIMEDOUT: i64 = 110;
    pub const EOWNERDEAD: i64 = 130;
}

#[test]
fn ansi_and_session_context_functions() {
    assert_eq!(
        out("probe begin { ansi_clear_screen(); ansi_set_color(32); ansi_set_color2(31, 44); ansi_set_color3(31, 40, 1); ansi_set_color3(31, 40, 0); ansi_reset_color(); ansi_cursor_move(3, 4); ansi_new_line(); ansi_cursor_hide(); ansi_cursor_save(); ansi_cursor_restore(); ansi_cursor_show() }"),
        "\x1b[1;1H\x1b[J\x1b[32m\x1b[44;31m\x1b[40;31;1m\x1b[40;31m\x1b[0;0m\x1b[4;3H\n\x1b[>5I\x1b[s\x1b[u\x1b[>5h"
    );
    assert_eq!(
        out("probe begin { println(user_mode(), is_myproc(), remote_id(), \"[\", remote_uri(), \"]\", pn(), stp_pid() == stp_pid()) }"),
        "00-1[]begin1\n"
    );
    // In a site handler: user mode, and pn() is stap's script-level point: the resolved
    // point (`stap -p3` gives a wildcard function probe `.pn` equal to its `.pp`), or
    // the alias the script wrote, which the planner puts in the binding.
    let src = "probe process(\"/tmp/a.out\").function(\"f*\") { println(user_mode(), \" \", pn(), \" \", pp()) }";
    let mut t = build_with(src, vec![binding(0, 0, vec![])], RuntimeOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"));
    let (o, _) = session(&mut t, &[record(0, 1, &[])]);
    assert_eq!(
        o,
        "1 process(\"/tmp/a.out\").function(\"f@a.c:3\") process(\"/tmp/a.out\").function(\"f@a.c:3\")\n"
    );
    let aliased = SiteBinding {
        pn: "myal".into(),
        ..binding(0, 0, vec![])
    };
    let mut t = build_with(src, vec![aliased], RuntimeOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"));
    let (o, _) = session(&mut t, &[record(0, 1, &[])]);
    assert!(o.starts_with("1 myal process("), "{o}");
}

#[test]
fn printf_formats_parse_like_stap() {
    // Width or precision 0 is dropped, one `l` is allowed, `%0s` ends with a NUL byte
    // (stap's _stp_vsprint_memory).
    assert_eq!(
        out(r#"probe begin { printf("[%.0s][%0d][%ld][%-5s][%05s]", "abc", 7, 8, "ab", "ab") }"#),
        "[abc][7][8][ab   ][   ab\0]"
    );
    // Everything else is stap's parse error, at the token after the format string
    // (`stap -p1` 4.8 reports each of these exactly so).
    for (fmt, msg) in [
        ("%+-5d", "invalid or missing conversion specifier"),
        ("%lld", "invalid or missing conversion specifier"),
        ("%hd", "invalid or missing conversion specifier"),
        ("%q", "invalid or missing conversion specifier"),
        ("ab%", "invalid or missing conversion specifier"),
        ("%5", "trailing incomplete print format conversion"),
        ("%-", "trailing incomplete print format conversion"),
    ] {
        let src = format!("probe begin {{ printf(\"{fmt}\", 1) }}");
        let mut sm = SourceMap::default();
        let f = sm.add("<input>", src.as_str());
        let (_, d) = script_syntax::parse(&sm, f, &[]);
        assert_eq!(d[0].kind, "parse error", "{fmt}");
        assert_eq!(d[0].message, msg, "{fmt}");
        let r = script_syntax::render_all(&d, &sm);
        let col = 22 + fmt.len() + 2;
        assert!(
            r.starts_with(&format!(
                "parse error: {msg}\n        saw: operator ',' at <input>:1:{col}\n"
            )),
            "{r}"
        );
    }
}

#[test]
fn foreach_slices_and_aggregate_sorts() {
    assert_eq!(
        out(
            "global a, n probe begin { a[1,2] = 5; a[2,3] = 1; a[4,3] = 7; n = 3\n\
             foreach ([i, j] in a[*, n]) printf(\"%d,%d \", i, j)\n\
             foreach ([i, j] in a[2, *]) printf(\"[%d,%d]\", i, j)\n\
             println() }"
        ),
        "2,3 4,3 [2,3]\n"
    );
    // Value sorts of aggregate arrays compare @count unless another extractor is named.
    assert_eq!(
        out(
            "global s probe begin { s[1] <<< 100; s[2] <<< 1; s[2] <<< 1; s[3] <<< 7\n\
             foreach (k in s-) print(k); println()\n\
             foreach (k in s @sum-) print(k); println()\n\
             foreach (k in s @min+ limit 2) print(k); println()\n\
             foreach (k in s @avg-) print(k); println() }"
        ),
        "213\n132\n23\n132\n"
    );
    let d = errors("global a probe begin { a[1, 2] = 1; foreach ([i, j] in a[1]) { } }");
    assert_eq!(
        d[0].message,
        "unresolved arity-1 global array a, missing global declaration?"
    );
}

#[test]
fn session_level_diagnostics_have_locations_or_none() {
    // A capture decoded as a long at one site and a string at another points at the
    // script expression.
    let src = "probe process(\"/tmp/a.out\").function(\"f*\") { println($x) }";
    let id = find_id(src, &target_named("x"));
    let b0 = binding(
        0,
        0,
        vec![(
            id,
            Decode::Int {
                field: 0,
                size: 8,
                signed: true,
            },
        )],
    );
    let b1 = binding(1, 0, vec![(id, Decode::Str { field: 0 })]);
    let Err(d) = build_with(src, vec![b0, b1], RuntimeOptions::default()) else {
        panic!("expected an error");
    };
    let (_, sm) = parse(src);
    let r = script_syntax::render_all(&d, &sm);
    assert!(
        r.contains("different types at different sites (long vs. string): identifier '$x' at <input>:1:54\n"),
        "{r}"
    );
    // A bad -D value is about the command line: no script location, no caret.
    let Err(d) = build_with(
        "probe begin { }",
        Vec::new(),
        RuntimeOptions {
            defines: vec![("MAXACTION".into(), "lots".into())],
            ..Default::default()
        },
    ) else {
        panic!("expected an error");
    };
    let (_, sm) = parse("probe begin { }");
    assert_eq!(
        script_syntax::render_all(&d, &sm),
        "semantic error: invalid value 'lots' for -D MAXACTION\n\n1 semantic error.\n"
    );
}

#[test]
fn pp_of_multi_point_and_brace_expanded_probes() {
    // Each run reports the point of its phase; brace expansion gives plain points.
    let mut t = build(
        "probe {begin, end} { println(pp()) } probe timer.{ms(5), s(1)} { println(pp()) } probe begin { exit() }",
    );
    assert_eq!(t.rt.run_probe(0), Flow::Continue);
    assert_eq!(t.rt.run_probe(1), Flow::Continue);
    assert_eq!(t.rt.run_probe(2), Flow::Exit);
    assert_eq!(t.rt.run_probe(0), Flow::Continue);
    t.rt.finish();
    assert_eq!(t.out.text(), "begin\ntimer.ms(5)\nend\n");
}

#[test]
fn warnings_of_copied_bodies_are_reported_once() {
    // `probe a = ...` expansions and split conditional points copy the body.
    let src = "global g\n\
               probe twice = begin, end { }\n\
               probe twice, timer.s(1) if (g) { z = 1 }\n";
    let (script, sm) = parse(src);
    let (script, d) = script_syntax::expand_script(&script);
    assert!(d.is_empty());
    let rt = Runtime::new(
        &script,
        &sm,
        Vec::new(),
        RuntimeOptions::default(),
        Box::new(Buf::default()),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let w = script_syntax::render_all(rt.warnings(), &sm);
    assert_eq!(w.matches("Eliding assignment to 'z'").count(), 1, "{w}");
    assert_eq!(
        w.matches("Eliding side-effect-free expression").count(),
        1,
        "{w}"
    );
}

// ---------------------------------------------------------------- golden checker output

/// What the checker says about one script file: parse errors, else elaboration errors,
/// else the warnings, each rendered as stap prints them.
fn checker_output(name: &str, text: &str) -> String {
    let mut sm = SourceMap::default();
    let f = sm.add(name, text);
    let (script, diags) = script_syntax::parse(&sm, f, &[]);
    if !diags.is_empty() {
        return script_syntax::render_all(&diags, &sm);
    }
    let (script, diags) = script_syntax::expand_script(&script);
    if !diags.is_empty() {
        return script_syntax::render_all(&diags, &sm);
    }
    match Runtime::new(
        &script,
        &sm,
        Vec::new(),
        RuntimeOptions::default(),
        Box::new(Buf::default()),
    ) {
        Ok(rt) => script_syntax::render_all(rt.warnings(), &sm),
        Err(d) => script_syntax::render_all(&d, &sm),
    }
}

/// `test_data/check/*.stp` against `*.out`; `UPDATE_EXPECT=1` rewrites the expectations.
#[test]
fn golden_checker_output() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/check");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "stp"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 14, "golden corpus went missing");
    let mut failures = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let got = checker_output(&name, &text);
        assert!(!got.is_empty(), "{name}: the checker said nothing");
        let expect = path.with_extension("out");
        if update {
            std::fs::write(&expect, &got).unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        let want = std::fs::read_to_string(&expect).unwrap_or_default();
        if want != got {
            failures.push(format!("--- {name}: expected\n{want}--- got\n{got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nrerun with UPDATE_EXPECT=1 to accept the new output",
        failures.join("\n")
    );
}

#[test]
fn indent_depth_shares_the_indent_counters() {
    assert_eq!(
        out("probe begin { println(indent_depth(1), indent_depth(1), indent_depth(-1), indent_depth(-1), thread_indent_depth(2), thread_indent_depth(-2)) }"),
        "011011\n"
    );
    // After indent_depth(1), indent(1) nests one deeper.
    let o = out("probe begin { d = indent_depth(1); s = indent(1); println(d, \"[\", substr(s, 7, 10), \"]\") }");
    assert_eq!(o, "0[: ]\n");
}

#[test]
fn sprintd_sprintdln_and_print_char() {
    assert_eq!(
        out("probe begin { x = sprintd(\"-\", 1, \"a\"); y = sprintdln(\"+\", 2, \"b\"); print(x, \"|\", y); print_char(65); print_char(10) }"),
        "1-a|2+b\nA\n"
    );
}

#[test]
fn wildcard_slices_in_delete_and_in() {
    assert_eq!(
        out(
            "global a probe begin { a[1, \"x\"] = 1; a[2, \"x\"] = 2; a[2, \"y\"] = 3\n\
             println([*, \"x\"] in a, [2, *] in a, [3, *] in a, [*, \"z\"] in a)\n\
             delete a[*, \"x\"]; foreach ([i, j] in a) println(i, j)\n\
             delete a[*, *]; println(\"left \", [*, *] in a) }"
        ),
        "1100\n2y\nleft 0\n"
    );
    let d = errors("global a probe begin { a[1] = 1; x = a[*] }");
    assert_eq!(
        d[0].message,
        "'*' may only be an array index in delete, in or a foreach array slice"
    );
}

#[test]
fn histogram_buckets_index_and_iterate() {
    // Buckets are numbered as stap's runtime numbers them: for @hist_log, 64 holds 0
    // and 65 + k holds [2^k, 2^(k+1)); for @hist_linear, 0 is the underflow bucket.
    assert_eq!(
        out("global s, h probe begin { s <<< 1; s <<< 5; s <<< 5; h <<< 3\n\
             println(@hist_log(s)[65], \" \", @hist_log(s)[67], \" \", @hist_linear(h, 0, 10, 2)[2])\n\
             foreach ([b] in @hist_log(s)) if (@hist_log(s)[b]) printf(\"%d:%d \", b, @hist_log(s)[b])\n\
             println()\n\
             foreach (c = [b] in @hist_linear(h, 0, 10, 2) limit 3) printf(\"%d=%d \", b, c)\n\
             println()\n\
             foreach ([b] in @hist_log(s)- limit 1) println(b) }"),
        "1 2 1\n65:1 67:2 \n0=0 1=0 2=1 \n67\n"
    );
    let (o, e) = run("global s probe begin { s <<< 1; println(@hist_log(s)[128]) }");
    assert_eq!(o, "");
    assert!(
        e.starts_with("ERROR: histogram index out of range near "),
        "{e}"
    );
    assert_eq!(
        warnings_of("global s probe begin { s <<< 1; foreach ([b] in @hist_log(s)) println(b) }"),
        ""
    );
}

#[test]
fn maxskipped_stops_the_session_like_stap() {
    let src = "probe process(\"/tmp/a.out\").function(\"f*\") { println(\"hit\") } probe end { println(\"end\") } probe error { println(\"error probe\") }";
    let mut t = build_with(
        src,
        vec![binding(0, 0, vec![])],
        RuntimeOptions {
            defines: vec![("MAXSKIPPED".into(), "3".into())],
            ..Default::default()
        },
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(t.rt.handle(&record(0, 1, &[])), Flow::Continue);
    t.rt.note_skipped(3);
    assert_eq!(t.rt.handle(&record(0, 1, &[])), Flow::Continue);
    t.rt.note_skipped(1);
    assert_eq!(t.rt.handle(&record(0, 1, &[])), Flow::Exit);
    let (o, e) = session(&mut t, &[]);
    assert_eq!(o, "hit\nhit\nerror probe\n");
    assert_eq!(
        e,
        "ERROR: Skipped too many probes, check MAXSKIPPED or try again with stap -t for more details.\nWARNING: Number of errors: 0, skipped probes: 4\n"
    );
    assert_eq!(t.rt.exit_code(), 1);
}

/// A fake unwinder: checks the stack it is given and walks one frame through the
/// return address stored at rsp.
struct FakeStacks;

impl crate::Stacks for FakeStacks {
    fn unwind(
        &self,
        pid: u32,
        regs: &[u64; 17],
        stack_base: u64,
        stack: &[u8],
        max: usize,
    ) -> Vec<crate::StackFrame> {
        assert_eq!(pid, 100);
        // Pages 0 and 1 copied, page 2 faulted: page 3 must not be used.
        assert_eq!(stack_base, 0x7fff_1000);
        assert_eq!(stack.len(), 8192);
        let off = (regs[7] - stack_base) as usize;
        let ret = u64::from_le_bytes(stack[off..off + 8].try_into().unwrap());
        let mut frames = vec![
            self.symbolize(pid, regs[16]).unwrap(),
            // Return addresses are looked up one byte earlier, the offset kept.
            crate::StackFrame {
                pc: ret,
                offset: 0x2f,
                ..self.symbolize(pid, ret - 1).unwrap()
            },
        ];
        frames.truncate(max);
        frames
    }

    fn symbolize(&self, _pid: u32, addr: u64) -> Option<crate::StackFrame> {
        let (name, start, size) = match addr {
            0x1000..=0x1014 => ("leaf", 0x1000, 0x15),
            0x2000..=0x203f => ("main", 0x2000, 0x40),
            0x3000..=0x3fff => {
                return Some(crate::StackFrame {
                    pc: addr,
                    module: "/lib/libx.so".into(),
                    module_offset: addr - 0x3000,
                    ..Default::default()
                })
            }
            _ => return None,
        };
        Some(crate::StackFrame {
            pc: addr,
            function: Some(name.into()),
            offset: addr - start,
            size: Some(size),
            module: "/tmp/app".into(),
            module_offset: addr,
            file_line: Some(("app.c".into(), 7)),
        })
    }
}

fn backtrace_record(with_stacks: bool, src: &str) -> (String, String) {
    backtrace_record_with(with_stacks, src, RuntimeOptions::default())
}

fn backtrace_record_with(with_stacks: bool, src: &str, opts: RuntimeOptions) -> (String, String) {
    let id = find_ids(src, &|e| {
        matches!(&e.kind, ExprKind::Call { name, .. }
            if ["ubacktrace", "print_ubacktrace", "sprint_ubacktrace", "ucallers", "print_ubacktrace_brief"]
                .contains(&name.as_str()))
    });
    let d = Decode::Backtrace {
        regs: (0..17).map(Some).collect(),
        stack: 17,
        more_pages: 3,
    };
    let b = binding(0, 0, id.iter().map(|&i| (i, d.clone())).collect());
    let mut t = build_with(src, vec![b], opts).unwrap_or_else(|d| panic!("{d:?}"));
    if with_stacks {
        t.rt.set_stacks(Box::new(FakeStacks));
    }
    let mut regs = [0u64; 17];
    regs[7] = 0x7fff_1010;
    regs[16] = 0x1000;
    let reg_bytes: Vec<[u8; 8]> = regs.iter().map(|r| r.to_le_bytes()).collect();
    let mut page0 = vec![0u8; 4096];
    page0[0x10..0x18].copy_from_slice(&0x202fu64.to_le_bytes());
    let page = vec![0u8; 4096];
    let mut fields: Vec<Result<&[u8], u64>> = reg_bytes.iter().map(|b| Ok(&b[..])).collect();
    fields.extend([
        Ok(&page0[..]),
        Ok(&page[..]),
        Err(0x7fff_3000),
        Ok(&page[..]),
    ]);
    let rec = record(0, 1, &fields);
    session(&mut t, &[rec])
}

#[test]
fn user_stacks_in_stap_formats() {
    let src = r#"probe process("a.out").function("f") {
  print_ubacktrace()
  println(ubacktrace())
  println(sprint_ubacktrace())
  println(ucallers(1))
  print_ustack(ubacktrace())
  println(sprint_ustack(ubacktrace()))
  println(sprint_ufolded(ubacktrace()))
  print_ubacktrace_brief()
  println(usymname(0x1004), " ", usymdata(0x1004), " ", umodname(0x1004))
  println(usymname(5), " ", usymdata(0x3010), " ", usymfileline(0x1004), " ", usymline(0x1004))
  println(sprint_ufolded("0x1000 0x3010 0x202f"))
  println(umodname(5))
}"#;
    let (o, e) = backtrace_record(true, src);
    let full = " 0x0000000000001000 : leaf+0x0/0x15 [/tmp/app]\n 0x000000000000202f : main+0x2f/0x40 [/tmp/app]\n";
    let want = format!(
        "{full}0x0000000000001000 0x000000000000202f\nleaf+0x0 [app]\nmain+0x2f [app]\n\
         0x0000000000001000\n{full}leaf+0x0 [app]\nmain+0x2f [app]\nmain;leaf\n\
         leaf+0x0\nmain+0x2f\n\
         leaf leaf+0x4/0x15 [/tmp/app] /tmp/app\n\
         0x0000000000000005 0x0000000000003010 [/lib/libx.so+0x10] app.c:7 7\n\
         main;[unknown];leaf\n"
    );
    assert_eq!(o, want);
    assert!(
        e.starts_with("ERROR: umodname: no module known for address 0x0000000000000005"),
        "{e}"
    );
}

#[test]
fn maxbacktrace_bounds_the_frames() {
    let src = r#"probe process("a.out").function("f") { println(ubacktrace()) }"#;
    let opts = RuntimeOptions {
        defines: vec![("MAXBACKTRACE".into(), "1".into())],
        ..RuntimeOptions::default()
    };
    let (o, e) = backtrace_record_with(true, src, opts);
    assert_eq!((o.as_str(), e.as_str()), ("0x0000000000001000\n", ""));
    let (o, _) = backtrace_record(true, src);
    assert_eq!(o, "0x0000000000001000 0x000000000000202f\n");
}

#[test]
fn user_stacks_without_an_unwinder_or_a_process() {
    // Without an unwinder only the probed address is known, unsymbolised.
    let src = r#"probe process("a.out").function("f") {
  println(ubacktrace()) print_ubacktrace() println(usymname(0x1000))
}"#;
    let (o, e) = backtrace_record(false, src);
    assert_eq!(e, "");
    assert_eq!(
        o,
        "0x0000000000001000\n 0x0000000000001000\n0x0000000000001000\n"
    );
    // begin has no user context: empty backtraces.
    let o = out(
        r#"probe begin { printf("[%s][%s]\n", ubacktrace(), sprint_ubacktrace()) print_ubacktrace() }"#,
    );
    assert_eq!(o, "[][]\n");
}

// ---------------------------------------------------------------- time zones and system()

/// A TZif file (version 2: an empty v1 block, then the 64-bit block) with the given
/// transitions (time, type index) and types (UTC offset east, is-DST, abbreviation).
fn tzif(transitions: &[(i64, u8)], types: &[(i32, bool, &str)]) -> Vec<u8> {
    let mut chars = Vec::new();
    let mut idx = Vec::new();
    for (_, _, name) in types {
        idx.push(chars.len() as u8);
        chars.extend_from_slice(name.as_bytes());
        chars.push(0);
    }
    let header = |v: u8, timecnt: u32, typecnt: u32, charcnt: u32| {
        let mut h = b"TZif".to_vec();
        h.push(v);
        h.extend_from_slice(&[0; 15]);
        for c in [0u32, 0, 0, timecnt, typecnt, charcnt] {
            h.extend_from_slice(&c.to_be_bytes());
        }
        h
    };
    // The v1 block: one type (UTC) so readers that stop there see a valid file.
    let mut d = header(b'2', 0, 1, 4);
    d.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    d.extend_from_slice(b"UTC\0");
    d.extend(header(
        b'2',
        transitions.len() as u32,
        types.len() as u32,
        chars.len() as u32,
    ));
    for (t, _) in transitions {
        d.extend_from_slice(&t.to_be_bytes());
    }
    for (_, i) in transitions {
        d.push(*i);
    }
    for (k, (off, dst, _)) in types.iter().enumerate() {
        d.extend_from_slice(&off.to_be_bytes());
        d.push(u8::from(*dst));
        d.push(idx[k]);
    }
    d.extend_from_slice(&chars);
    d
}

#[test]
fn time_zone_from_tzif_posix_string_or_utc() {
    // New York's 2021 switch to daylight time at 2021-03-14 07:00 UTC.
    let ny = tzif(
        &[(1_615_705_200, 1), (1_636_264_800, 0)],
        &[(-18_000, false, "EST"), (-14_400, true, "EDT")],
    );
    assert_eq!(
        tz::tzif_zone(&ny, 1_615_705_199),
        Some((-18_000, "EST".into()))
    );
    assert_eq!(
        tz::tzif_zone(&ny, 1_615_705_200),
        Some((-14_400, "EDT".into()))
    );
    assert_eq!(
        tz::tzif_zone(&ny, 1_700_000_000),
        Some((-18_000, "EST".into()))
    );
    // Before the first transition: the first standard-time type.
    assert_eq!(tz::tzif_zone(&ny, 0), Some((-18_000, "EST".into())));
    assert_eq!(tz::tzif_zone(b"TZif2 truncated", 0), None);
    assert_eq!(tz::tzif_zone(&ny[..ny.len() - 3], 0), None);

    let files = move |p: &str| (p == "/usr/share/zoneinfo/America/New_York").then(|| ny.clone());
    // tz_gmtoff() counts seconds west, as staprun passes it.
    assert_eq!(
        tz::zone_for(Some("America/New_York"), 1_615_705_200, &files),
        (14_400, "EDT".into())
    );
    assert_eq!(
        tz::zone_for(Some(":America/New_York"), 0, &files),
        (18_000, "EST".into())
    );
    assert_eq!(
        tz::zone_for(Some("JST-9"), 0, &files),
        (-32_400, "JST".into())
    );
    assert_eq!(
        tz::zone_for(Some("<+0530>-5:30"), 0, &files),
        (-19_800, "+0530".into())
    );
    assert_eq!(
        tz::zone_for(Some("EST5EDT"), 0, &files),
        (18_000, "EST".into())
    );
    assert_eq!(tz::zone_for(None, 0, &files), (0, "UTC".into()));
    assert_eq!(
        tz::zone_for(Some("../../etc/passwd"), 0, &files),
        (0, "UTC".into())
    );
    assert_eq!(tz::zone_for(Some("x"), 0, &files), (0, "UTC".into()));
}

#[test]
fn tz_functions_follow_the_tapset() {
    let src =
        "probe begin { printf(\"%d|%s|%s|%s\\n\", tz_gmtoff(), tz_name(), tz_ctime(0), ctime(0)) }";
    let mut t = build(src);
    t.rt.set_timezone(18_000, "EST");
    let (o, e) = session(&mut t, &[]);
    assert_eq!(e, "");
    // tz_ctime(s) is ctime(s - tz_gmtoff()) . " " . tz_name() (tapset/tzinfo.stp).
    assert_eq!(
        o,
        "18000|EST|Wed Dec 31 19:00:00 1969 EST|Thu Jan  1 00:00:00 1970\n"
    );
}

#[test]
fn ctime_out_of_range_is_stap_error() {
    let (o, e) = run("probe begin { println(ctime(2147483647)); println(ctime(2147483648)) }");
    assert_eq!(o, "Tue Jan 19 03:14:07 2038\n");
    assert!(
        e.starts_with("ERROR: Time too far in the future to be converted near "),
        "{e}"
    );
    let (_, e) = run("probe begin { println(ctime(-2147483649)) }");
    assert!(
        e.starts_with("ERROR: Time too far in the past to be converted near "),
        "{e}"
    );
}

#[test]
fn system_runs_after_the_handler_and_is_waited_for() {
    let dir = std::env::temp_dir().join(format!("rt-system-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("marks");
    let _ = std::fs::remove_file(&f);
    // Both commands ran, in their handlers' order, and finish() waited for the slow
    // one (the file is read right after the session).
    let src = format!(
        "probe begin {{ system(\"echo one >> {p}\"); println(\"begin\") }} \
         probe end {{ system(\"sleep 0.2; echo two >> {p}\") }}",
        p = f.display()
    );
    // Without the driver's permission nothing runs, and the session says so once.
    let mut t = build(&src);
    let (o, e) = session(&mut t, &[]);
    assert_eq!(o, "begin\n");
    assert_eq!(
        e,
        "WARNING: system() is disabled in this session: its commands are not run\n"
    );
    assert!(!f.exists());
    let mut t = build(&src);
    t.rt.set_system_allowed(true);
    let (o, e) = session(&mut t, &[]);
    assert_eq!(e, "");
    assert_eq!(o, "begin\n");
    let marks = std::fs::read_to_string(&f).unwrap();
    assert_eq!(marks, "one\ntwo\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn elaboration_lists_declarations_as_stap_p2() {
    // `stap -p2` (4.8) on this script prints exactly these sections.
    let src = "global count, names[10], st, sa, unused\n\
               function add:long(a:long, b) { c = a + b; return c }\n\
               function g() { println(1) }\n\
               function h:string(s) { return s }\n\
               function unused_fn() { }\n\
               probe begin { x = 1; count += add(x, 1); g(); println(h(\"x\")); s = \"a\"; names[1] = s; st <<< 1; sa[1, \"a\"] <<< 2 }\n\
               probe end { foreach (k in names) println(k); println(count, @count(st), @count(sa[1, \"a\"])) }\n";
    let t = build(src);
    let e = t.rt.elaboration();
    assert_eq!(
        e.globals,
        "count:long\nnames[10]:string [long]\nst:stats\nsa:stats [long, string]\n"
    );
    assert_eq!(
        e.functions,
        "add:long (a:long, b:long)\n  # locals\n  c:long\ng:unknown ()\nh:string (s:string)\n"
    );
    assert_eq!(
        e.probe_locals,
        vec![
            "  # locals\n  x:long\n  s:string\n".to_string(),
            "  # locals\n  k:long\n".to_string()
        ]
    );
}

#[test]
fn globals_follow_stap_first_use_order() {
    // `stap -p2` lists `count, st, names` for these declarations, and the printout of
    // unread globals follows the same order.
    let src = "global count, names[10], st\n\
               probe begin { count += 1; st <<< 2 }\n\
               probe end { names[3] = \"n\" }\n";
    let mut t = build(src);
    assert_eq!(
        t.rt.elaboration().globals,
        "count:long\nst:stats\nnames[10]:string [long]\n"
    );
    let (o, _) = session(&mut t, &[]);
    assert_eq!(
        o,
        "count=1\nst @count=1 @min=2 @max=2 @sum=2 @avg=2\nnames[3]=\"n\"\n"
    );
}

#[test]
fn more_tapset_functions() {
    // Values follow the tapset definitions (string.stp, regex.stp, logging.stp,
    // linux/task_time.stp).
    assert_eq!(
        out("probe begin { printf(\"%d %d %d\\n\", strpos(\"hello\", \"ll\"), strpos(\"hello\", \"z\"), strpos(\"abc\", \"\")) }"),
        "2 -1 0\n"
    );
    assert_eq!(
        out("probe begin { if (\"abc123\" =~ \"[0-9]+\") println(matched_str()) }"),
        "123\n"
    );
    assert_eq!(
        out("probe begin { println(msecs_to_string(123456), \" \", usecs_to_string(61000007), \" \", nsecs_to_string(5)) }"),
        "2m3.456s 1m1.000007s 0m0.000000005s\n"
    );
    let (o, e) = run("probe begin { assert(1); println(\"a\"); try { assert(0) } catch (m) { println(m) } assert(1 < 0, \"custom\") }");
    assert_eq!(o, "a\nAssertion failed\n");
    assert!(e.starts_with("ERROR: custom near "), "{e}");
}

#[test]
fn empty_probes_are_elided_as_stap_does() {
    // `stap -p2` warns for each probe left empty and stops when none is left.
    let w = warnings_of("probe begin { if (1) {} } probe end { println(1) }");
    assert_eq!(
        w,
        "WARNING: Probe 'begin' has been elided: keyword at <input>:1:1\n source: probe begin { if (1) {} } probe end { println(1) }\n         ^\n"
    );
    assert!(warnings_of("probe begin { for (i = 0; i < 3; i++) {} }").is_empty());
    let d = match build_with("probe begin { }", Vec::new(), RuntimeOptions::default()) {
        Ok(_) => panic!("no probes found expected"),
        Err(d) => d,
    };
    let (_, sm) = parse("probe begin { }");
    assert_eq!(
        script_syntax::render_failure(&d, &sm, 2),
        "WARNING: Probe 'begin' has been elided: keyword at <input>:1:1\n source: probe begin { }\n         ^\n\
         semantic error: no probes found\n\nPass 2: analysis failed.  [man error::pass2]\n"
    );
}
