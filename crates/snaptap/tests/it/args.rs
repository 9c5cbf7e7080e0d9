//! stap's dwarfless argument functions (`int_arg`, `long_arg`, `pointer_arg`,
//! `returnval`...): arguments read by the calling convention at a function's first
//! instruction, for binaries without DWARF and for PLT entries.

use crate::support::*;

/// `many` takes nine arguments (the 7th and later on the stack, the 8th an `int`
/// holding a negative number); built without `-g`, its probe is the symbol's address.
#[test]
fn arguments_by_calling_convention_without_dwarf() {
    let dir = tempfile("nodwarf-args");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("recursion");
    let st = std::process::Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(fixtures_src().join("recursion.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let b = bin.to_str().unwrap();
    let script = format!(
        r#"global args
probe process("{b}").function("many") {{
  args = sprintf("%d %d %d %d %d %d %d %d %d", long_arg(1), long_arg(2), long_arg(3), long_arg(4),
                 long_arg(5), long_arg(6), long_arg(7), int_arg(8), long_arg(9))
}}
probe process("{b}").function("many").return {{ printf("truth many %s = %d\n", args, returnval()) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{b} 3"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want: Vec<String> = truth_lines(&stdout)
        .into_iter()
        .filter(|l| l.starts_with("truth many"))
        .collect();
    assert_eq!(want.len(), 3, "{stdout}");
    assert_lines(&truth_lines(&out), &want, "dwarfless arguments");
}

/// A string argument through a PLT entry: `user_string(pointer_arg(1))` at
/// `puts@plt` reads what the fixture then prints.
#[test]
fn string_argument_at_a_plt_entry() {
    let bin = fixture("pltcalls", "-O2", &[]);
    let b = bin.to_str().unwrap();
    let script = format!(
        r#"probe process("{b}").plt("puts") {{ printf("%s\n", user_string(pointer_arg(1))) }}"#
    );
    let (out, stdout, stderr, st) = trace(&script, &format!("{b} 4"));
    assert!(st.success(), "snaptap failed: {stderr}");
    let want: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("item-"))
        .map(str::to_string)
        .collect();
    assert_eq!(want.len(), 4, "{stdout}");
    let got: Vec<String> = out.lines().map(str::to_string).collect();
    assert_lines(&got, &want, "puts argument");
}

#[test]
fn argument_number_must_be_literal() {
    let bin = fixture("pltcalls", "-O0", &[]);
    let b = bin.to_str().unwrap();
    let script = format!(
        r#"global k = 1
probe process("{b}").plt("puts") {{ println(int_arg(k)) }}"#
    );
    let (_, _, stderr, st) = trace(&script, b);
    assert!(!st.success());
    assert!(
        stderr.contains("int_arg: the argument number must be a literal"),
        "{stderr}"
    );
}
