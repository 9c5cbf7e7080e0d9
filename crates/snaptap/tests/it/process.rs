//! Tracing real processes through ptrace: target variables, returns, threads, libraries.

use crate::support::*;

fn structs_script(bin: &str) -> String {
    format!(
        r#"probe process("{bin}").function("handle") {{
  printf("truth handle id=%d name=%s a=%d b=%d next_id=%d color=%d flags=%u mode=%u s8=%d u16=%u big=%d v2=%d label=%s n=%d tag=%s\n",
         $r->id, user_string($r->name), $r->in->a, $r->in->b, $r->next ? $r->next->id : -1,
         $r->color, $r->flags, $r->mode, $r->s8, $r->u16, $r->big, $r->vals[2],
         user_string($r->label), $n, user_string($tag))
}}
probe process("{bin}").function("handle").return {{
  printf("truth return %d\n", $return)
}}"#
    )
}

fn check_structs(opt: &str) {
    let bin = fixture("structs", opt, &[]);
    let bin = bin.to_str().unwrap();
    let (out, stdout, stderr, st) = trace(&structs_script(bin), &format!("{bin} 12"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 24, "fixture output: {stdout}");
    assert_lines(&truth_lines(&out), &want, &format!("structs {opt}"));
}

#[test]
fn structs_members_arrays_strings_bitfields_o0() {
    check_structs("-O0");
}

#[test]
fn structs_members_arrays_strings_bitfields_o2() {
    check_structs("-O2");
}

fn check_recursion(opt: &str) {
    let bin = fixture("recursion", opt, &[]);
    let bin = bin.to_str().unwrap();
    let script = format!(
        r#"probe process("{bin}").function("fact").return {{ printf("truth fact %d = %d\n", @entry($n), $return) }}
probe process("{bin}").function("many") {{
  printf("truth many %d %d %d %d %d %d %d %d %d = %d\n", $a1, $a2, $a3, $a4, $a5, $a6, $a7, $a8, $a9,
         $a1 + $a2 + $a3 + $a4 + $a5 + $a6 + $a7 + $a8 + $a9)
}}
probe process("{bin}").function("twice") {{ printf("truth twice %d\n", $x) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{bin} 6"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let mut want = truth_lines(&stdout);
    assert_eq!(want.len(), 6 + 3 + 6, "fixture output: {stdout}");
    // Inlined instances are separate sites: compare as multisets for those.
    let mut got = truth_lines(&out);
    want.sort();
    got.sort();
    assert_lines(&got, &want, &format!("recursion {opt}"));
}

#[test]
fn recursion_stack_args_inline_o0() {
    check_recursion("-O0");
}

#[test]
fn recursion_stack_args_inline_o2() {
    check_recursion("-O2");
}

fn check_threads(opt: &str) {
    let bin = fixture("threads", opt, &[]);
    let bin = bin.to_str().unwrap();
    let script = format!(
        r#"global n
probe process("{bin}").function("work") {{ printf("truth work %d %d\n", $thread, $i); n++ }}
probe process("{bin}").function("work").return {{ if ($return != @entry($thread) * 1000 + @entry($i)) printf("bad return %d\n", $return) }}
probe end {{ printf("truth total %d\n", n) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{bin} 4 250"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let mut want = truth_lines(&stdout);
    assert_eq!(want.len(), 1001);
    let mut got = truth_lines(&out);
    want.sort();
    got.sort();
    assert!(!out.contains("bad return"), "{out}");
    assert_lines(&got, &want, &format!("threads {opt}"));
}

#[test]
fn threads_no_hit_lost_o0() {
    check_threads("-O0");
}

#[test]
fn threads_no_hit_lost_o2() {
    check_threads("-O2");
}

#[test]
fn shared_library_probe() {
    let (exe, lib) = shared_lib_fixture("-O2");
    let lib = lib.to_str().unwrap();
    let script = format!(
        r#"probe process("{lib}").function("lib_mix").return {{ printf("truth lib_mix %d %d = %d\n", @entry($a), @entry($b), $return) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{} 7", exe.display()));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want = truth_lines(&stdout);
    assert_eq!(want.len(), 7);
    assert_lines(&truth_lines(&out), &want, "shared library");
}

#[test]
fn context_functions_and_exit() {
    let bin = fixture("threads", "-O0", &[]);
    let bin = bin.to_str().unwrap();
    let script = format!(
        r#"probe process("{bin}").function("work") {{
  if (pid() != target()) printf("bad pid %d %d\n", pid(), target())
  if (tid() == pid()) printf("bad tid\n")
  printf("%s %s %s\n", execname(), probefunc(), pp())
  exit()
}}"#
    );
    let (out, _stdout, stderr, st) = trace(&script, &format!("{bin} 2 50"));
    assert!(st.success(), "snaptap failed: {stderr}");
    assert!(!out.contains("bad"), "{out}");
    let line = out.lines().next().unwrap_or_default().to_string();
    assert!(line.starts_with("threads work process(\""), "{line}");
    assert!(line.contains(".function(\"work@"), "{line}");
    assert_eq!(out.lines().count(), 1, "exit() stops handlers: {out}");
}

#[test]
fn options_after_the_script_and_script_arguments() {
    let bin = fixture("slow", "-O0", &[]);
    let dir = tempfile("args");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("args.stp");
    std::fs::write(&script, "global n\nprobe process.function(\"tick\") { if ($i == $1) printf(\"%s %d\\n\", @2, $i); n++ }\nprobe end { printf(\"n=%d\\n\", n) }\n").unwrap();
    let out = dir.join("out");
    let mut c = snaptap();
    c.arg(&script)
        .arg("3")
        .arg("label")
        .arg("-c")
        .arg(format!("{} 5 1", bin.display()))
        .arg("-o")
        .arg(&out);
    let o = run_with_timeout(c, 60);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "label 3\nn=5\n");
}

#[test]
fn follows_forks_and_execs_under_c() {
    let bin = fixture("forker", "-O2", &[]);
    let bin = bin.to_str().unwrap();
    let script = format!(
        r#"probe process("{bin}").function("step") {{ printf("truth step %d %d\n", $who, $i) }}
probe process("{bin}").begin {{ printf("begin\n") }}
probe process("{bin}").end {{ printf("end\n") }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, bin);
    assert!(st.success(), "snaptap failed: {stderr}");
    let mut want = truth_lines(&stdout);
    assert_eq!(want.len(), 9, "{stdout}");
    let mut got = truth_lines(&out);
    want.sort();
    got.sort();
    assert_lines(&got, &want, "fork + exec");
    // One begin and one end per process image: parent, forked child, exec'd child.
    let begins = out.lines().filter(|l| *l == "begin").count();
    let ends = out.lines().filter(|l| *l == "end").count();
    assert!(begins >= 2 && ends >= 2, "process.begin/end: {out}");
}

#[test]
fn statement_probe_sees_locals_at_that_line() {
    let bin = fixture("structs", "-O0", &[]);
    let src = fixtures_src().join("structs.c");
    let text = std::fs::read_to_string(&src).unwrap();
    // The line after the loop summing vals: `sum` is complete there.
    let line = text
        .lines()
        .position(|l| l.contains("printf(\"truth handle"))
        .unwrap()
        + 1;
    let script = format!(
        r#"probe process("{}").statement("handle@structs.c:{line}") {{ printf("truth return %d\n", $sum + $n) }}"#,
        bin.display()
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{} 6", bin.display()));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want: Vec<String> = truth_lines(&stdout)
        .into_iter()
        .filter(|l| l.starts_with("truth return"))
        .collect();
    assert_eq!(want.len(), 6);
    assert_lines(&truth_lines(&out), &want, "statement probe");
}

#[test]
fn wildcards_parms_and_pretty_printing() {
    let bin = fixture("recursion", "-O0", &[]);
    let script = format!(
        r#"probe process("{}").function("user_*") {{ printf("%s %s\n", ppfunc(), $$parms) }}"#,
        bin.display()
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{} 3", bin.display()));
    assert!(st.success(), "snaptap failed: {stderr}");
    // user_a(i) and user_b(i) for i in 0..3; the fixture reports twice's argument, from
    // which v follows: user_a prints v+1, user_b prints v*3.
    let twice: Vec<i64> = truth_lines(&stdout)
        .iter()
        .filter_map(|l| l.strip_prefix("truth twice "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(twice.len(), 6);
    let mut want = Vec::new();
    for (k, t) in twice.iter().enumerate() {
        let (f, v) = if k % 2 == 0 {
            ("user_a", t - 1)
        } else {
            ("user_b", t / 3)
        };
        want.push(format!("{f} v={v:#x}"));
    }
    let got: Vec<String> = out.lines().map(str::to_string).collect();
    assert_lines(&got, &want, "$$parms");
}

#[test]
fn timers_and_begin_end_without_target() {
    let script = "global n probe begin { printf(\"begin\\n\") } probe timer.ms(20) { n++; if (n == 5) exit() } probe end { printf(\"end %d\\n\", n) }";
    let mut c = snaptap();
    c.arg("-e").arg(script);
    let o = run_with_timeout(c, 30);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "begin\nend 5\n");
}

#[test]
fn json_output_one_object_per_line_with_context() {
    let bin = fixture("structs", "-O2", &[]);
    let bin = bin.to_str().unwrap();
    let out = tempfile("json");
    let script = format!(
        r#"probe process("{bin}").function("handle") {{ printf("truth handle id=%d\n", $r->id) }} probe end {{ println("done") }}"#
    );
    let mut c = snaptap();
    c.arg("--format")
        .arg("json")
        .arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(&script)
        .arg("-c")
        .arg(format!("{bin} 4"));
    let o = run_with_timeout(c, 60);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let ids: Vec<String> = truth_lines(&stdout)
        .iter()
        .filter(|l| l.starts_with("truth handle "))
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    let text = std::fs::read_to_string(&out).unwrap();
    let objs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    assert_eq!(objs.len(), 5, "{text}");
    let got: Vec<String> = objs[..4]
        .iter()
        .map(|o| o["line"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids);
    for o in &objs[..4] {
        assert!(
            o["probe"].as_str().unwrap().contains(".function(\"handle@"),
            "{o}"
        );
        assert!(
            o["pid"].as_u64().unwrap() > 0 && o["pid"] == o["tid"],
            "{o}"
        );
    }
    assert_eq!(objs[4]["line"], "done");
    assert_eq!(objs[4]["probe"], "end");
}

/// Target values inside a `foreach` slice and a histogram bucket index are captured
/// at the probe too (they once reached the handler uncaptured: an internal error).
#[test]
fn target_values_in_foreach_slices_and_bucket_indexes() {
    let bin = fixture("recursion", "-O0", &[]);
    let b = bin.display();
    let script = format!(
        r#"global a, h
probe process("{b}").function("fact") {{
  a[$n, 1] = $n * 10
  foreach ([k, j] in a[$n, *]) printf("slice %d %d %d\n", $n, k, a[k, j])
  h <<< $n
  printf("bucket %d %d\n", $n, @hist_linear(h, 0, 10, 1)[$n + 1])
}}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{b} 5"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let mut ns: Vec<i64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("truth fact "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, vec![1, 2, 3, 4, 5], "{stdout}");
    let mut slices: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("slice"))
        .map(str::to_string)
        .collect();
    slices.sort();
    let want: Vec<String> = ns
        .iter()
        .map(|n| format!("slice {n} {n} {}", n * 10))
        .collect();
    assert_eq!(slices, want, "{out}");
    // Linear bucket i holds the value i - 1 (bucket 0 counts what is below 0): bucket
    // $n + 1 holds the one fact($n) just added.
    let buckets: Vec<&str> = out.lines().filter(|l| l.starts_with("bucket")).collect();
    assert_eq!(buckets.len(), 5, "{out}");
    for l in buckets {
        assert!(l.ends_with(" 1"), "{l}\n{out}");
    }
}
