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
