//! Unit, golden and robustness tests for the lexer, parser, printer and renderer.

use std::path::{Path, PathBuf};

use crate::ast::*;
use crate::*;

/// Parses `text` as a file named `name`; returns the script, the sources and the
/// diagnostics.
fn parse_text(name: &str, text: &str, args: &[&str]) -> (Script, SourceMap, Vec<Diagnostic>) {
    let mut sources = SourceMap::default();
    let f = sources.add(name, text);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (s, d) = parse(&sources, f, &args);
    (s, sources, d)
}

fn render_diags(d: &[Diagnostic], sources: &SourceMap) -> String {
    d.iter().map(|x| render(x, sources)).collect()
}

/// Parses, asserts there are no diagnostics, and returns the script.
fn ok(text: &str) -> Script {
    let (s, src, d) = parse_text("t.stp", text, &[]);
    assert!(
        d.is_empty(),
        "unexpected diagnostics:\n{}",
        render_diags(&d, &src)
    );
    s
}

/// The printout of a clean parse.
fn printout(text: &str) -> String {
    print_script(&ok(text))
}

/// The printout of the single expression statement in `probe begin { EXPR }`.
fn expr_print(expr: &str) -> String {
    let s = ok(&format!("probe begin {{ {expr} }}"));
    let Item::Probe(p) = &s.items[0] else {
        panic!("not a probe")
    };
    let StmtKind::Expr(e) = &p.body.stmts[0].kind else {
        panic!("not an expression")
    };
    print_expr(e)
}

/// The first expression of `probe begin { EXPR }`.
fn first_expr(expr: &str) -> Expr {
    let s = ok(&format!("probe begin {{ {expr} }}"));
    let Item::Probe(p) = &s.items[0] else {
        panic!("not a probe")
    };
    let StmtKind::Expr(e) = &p.body.stmts[0].kind else {
        panic!("not an expression")
    };
    e.clone()
}

/// Error messages with their line:column, one per diagnostic.
fn errors(text: &str) -> Vec<String> {
    let (_, src, d) = parse_text("t.stp", text, &[]);
    d.iter()
        .map(|x| {
            let (l, c) = src.line_col(x.labels[0].span);
            format!("{l}:{c} {}", x.message)
        })
        .collect()
}

// ---- golden tests ----

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data")
}

/// What a golden file produces: the printout (ok/) or the rendered diagnostics (err/).
fn golden_output(kind: &str, name: &str, text: &str) -> String {
    let mut sources = SourceMap::default();
    let f = sources.add(name, text);
    let args = vec!["arg1".to_string(), "arg2".to_string()];
    let mut ids = IdGen::new();
    let (s, d) = parse_session(&sources, f, &mut ids, &ParseOptions::with_args(&args));
    if kind == "ok" {
        assert!(
            d.is_empty(),
            "{name}: unexpected diagnostics:\n{}",
            render_diags(&d, &sources)
        );
        let out = print_script_with_sources(&s, &sources);
        // Round trip: the printout parses back to the same printout.
        let mut s2 = SourceMap::default();
        let f2 = s2.add("printed.stp", out.clone());
        let (again, d2) =
            parse_session(&s2, f2, &mut IdGen::new(), &ParseOptions::with_args(&args));
        assert!(
            d2.is_empty(),
            "{name}: printout does not parse:\n{}\n{out}",
            render_diags(&d2, &s2)
        );
        assert_eq!(
            print_script_with_sources(&again, &s2),
            out,
            "{name}: round trip differs"
        );
        out
    } else {
        assert!(!d.is_empty(), "{name}: expected errors, got none");
        render_all(&d, &sources)
    }
}

#[test]
fn golden_files() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    let mut count = 0;
    for kind in ["ok", "err"] {
        let dir = data_dir().join(kind);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "stp"))
            .collect();
        entries.sort();
        for path in entries {
            count += 1;
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let got = golden_output(kind, &name, &text);
            let expect_path = path.with_extension("out");
            if update {
                std::fs::write(&expect_path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&expect_path).unwrap_or_default();
            if want != got {
                failures.push(format!("--- {kind}/{name}: expected\n{want}--- got\n{got}"));
            }
        }
    }
    assert!(count >= 20, "golden corpus went missing ({count} files)");
    assert!(
        failures.is_empty(),
        "{}\n{} golden file(s) differ; rerun with UPDATE_EXPECT=1 to accept the new output",
        failures.join("\n"),
        failures.len()
    );
}

// ---- rendering ----

#[test]
fn render_parse_error_exactly_like_stap() {
    let text = "probe process(\"./a\").function(\"f\" { printf(\"x\") }\n";
    let (_, src, d) = parse_text("/tmp/x.stp", text, &[]);
    assert_eq!(d.len(), 1, "{d:?}");
    // Byte for byte what `stap -p1` (4.8) prints for this script.
    let want = "parse error: expected ')'\n        \
                saw: operator '{' at /tmp/x.stp:1:35\n     \
                source: probe process(\"./a\").function(\"f\" { printf(\"x\") }\n                                               \
                ^\n\n";
    assert_eq!(render(&d[0], &src), want);
}

#[test]
fn render_semantic_error_with_tabs_and_notes() {
    let mut src = SourceMap::default();
    let f = src.add("s.stp", "probe begin {\n\tx = foo(1)\n}\n");
    let start = 19; // `foo`
    let span = Span {
        file: f,
        start,
        end: start + 3,
    };
    let d = Diagnostic::error("semantic error", "unresolved function", span)
        .with_note("did you mean: food, fool?");
    let want = "semantic error: unresolved function: identifier 'foo' at s.stp:2:6\n        \
                source: \tx = foo(1)\n                \t    ^\n        did you mean: food, fool?\n\n";
    assert_eq!(render(&d, &src), want);
}

#[test]
fn render_warning_and_eof() {
    let mut src = SourceMap::default();
    let f = src.add("w.stp", "probe begin { x = 1 }");
    let d = Diagnostic::warning(
        "semantic error",
        "never-read local variable",
        Span {
            file: f,
            start: 14,
            end: 15,
        },
    );
    assert_eq!(
        render(&d, &src),
        "WARNING: never-read local variable: identifier 'x' at w.stp:1:15\n source: probe begin { x = 1 }\n                       ^\n"
    );
    let (_, src, d) = parse_text("e.stp", "probe begin {", &[]);
    assert_eq!(
        render(&d[0], &src),
        "parse error: expected statement\n        saw: e.stp EOF\n\n"
    );
}

#[test]
fn render_points_at_the_offending_token() {
    // The shape snaptap's own integration test relies on.
    let (_, src, d) = parse_text("<input>", "probe begin { printf(\"x\" }", &[]);
    assert_eq!(d.len(), 1);
    let r = render(&d[0], &src);
    assert!(r.contains("<input>:1:26"), "{r}");
    assert!(r.lines().any(|l| l.trim() == "^"), "{r}");
    let caret = r.lines().rfind(|l| !l.is_empty()).unwrap();
    assert_eq!(caret.find('^'), Some(13 + 25), "{r}");
}

#[test]
fn render_all_counts_errors() {
    let (_, src, d) = parse_text("c.stp", "probe begin { x = ) }\nprobe end { y = ] }\n", &[]);
    let out = render_all(&d, &src);
    assert!(out.ends_with("2 parse errors.\n"), "{out}");
}

#[test]
fn render_failure_closes_like_stap() {
    // `stap -p1` on this text prints the first error, suppresses the second (same
    // message), counts both and names the pass.
    let (_, src, d) = parse_text("m.stp", "probe begin { x = }\nprobe end { y = ; }\n", &[]);
    let want = "parse error: expected literal string or number\n        \
                saw: operator '}' at m.stp:1:19\n     \
                source: probe begin { x = }\n                               ^\n\n\
                2 parse errors.\nPass 1: parse failed.  [man error::pass1]\n\
                Number of similar error messages suppressed: 1.\nRerun with -v to see them.\n";
    assert_eq!(render_failure(&d, &src, 1), want);
}

#[test]
fn print_statements_are_checked_like_stap() {
    // Each message and position is what `stap -p1` reports for the same text.
    let cases = [
        (
            "probe begin { printf(\"%5%\") }",
            "1:27 invalid or missing conversion specifier",
        ),
        (
            "probe begin { printf(\"%z\", 1) }",
            "1:26 invalid or missing conversion specifier",
        ),
        (
            "probe begin { printf(\"%5\", 1) }",
            "1:26 trailing incomplete print format conversion",
        ),
        (
            "probe begin { printf(\"%lld\", 1) }",
            "1:28 invalid or missing conversion specifier",
        ),
        (
            "probe begin { x=\"a\"; printd(x, 1, 2) }",
            "1:29 expected literal string",
        ),
        (
            "probe begin { printd(\"--\", 1); x = 1 }",
            "1:30 expected literal string or number",
        ),
        (
            "probe begin { print() }",
            "1:21 expected literal string or number",
        ),
        ("probe begin { printf() }", "1:22 expected literal string"),
        ("probe begin { println(1 2) }", "1:25 expected one of ', )'"),
        (
            "function g(a,b) {} probe begin { g(1 2) }",
            "1:38 expected one of ') ,'",
        ),
        ("probe begin { a[1 2] = 1 }", "1:19 expected one of '] ,'"),
    ];
    for (text, want) in cases {
        assert_eq!(errors(text), vec![want.to_string()], "{text}");
    }
    for ok in [
        "probe begin { printf(\"%ld %l\", 1, 2) }",
        "probe begin { printf(\"%-0d %#0x %05d % d\", 1, 2, 3, 4) }",
        "probe begin { printf(\"%-5d|%#x|%*.*d|%%|%b|%m|%M\", 1, 2, 3, 4, 5, 6, 7, 8) }",
        "probe begin { println() }",
        "probe begin { printd(\"-\", 1, 2) }",
    ] {
        assert!(errors(ok).is_empty(), "{ok}: {:?}", errors(ok));
    }
}

// ---- expressions ----

#[test]
fn precedence_follows_stap() {
    let cases = [
        ("1 + 2 * 3", "+", "1", "2 * 3"),
        ("a & b == c", "&", "a", "b == c"),
        ("a | b ^ c & d", "|", "a", "b ^ c & d"),
        ("a . b + c", ".", "a", "b + c"),
        ("a << b . c", "<<", "a", "b . c"),
        ("a < b << c", "<", "a", "b << c"),
        ("a || b && c", "||", "a", "b && c"),
        ("a - b - c", "-", "a - b", "c"),
    ];
    for (src, op, l, r) in cases {
        let e = first_expr(src);
        let ExprKind::Binary { lhs, rhs, .. } = &e.kind else {
            panic!("{src}: not binary")
        };
        assert_eq!(print_expr(lhs), l, "{src}");
        assert_eq!(print_expr(rhs), r, "{src}");
        assert!(print_expr(&e).contains(&format!(" {op} ")), "{src}");
    }
    // `in` binds looser than comparisons and tighter than `&`.
    let e = first_expr("x = a == b in arr");
    let ExprKind::Assign { value, .. } = &e.kind else {
        panic!()
    };
    let ExprKind::In { keys, array } = &value.kind else {
        panic!("{value:?}")
    };
    assert_eq!(array, "arr");
    assert_eq!(print_expr(&keys[0]), "a == b");
    let e = first_expr("a & b in arr");
    assert!(matches!(
        e.kind,
        ExprKind::Binary {
            op: BinaryOp::BitAnd,
            ..
        }
    ));
}

#[test]
fn assignment_and_ternary_are_right_associative() {
    let e = first_expr("x = y = 3");
    let ExprKind::Assign { value, .. } = &e.kind else {
        panic!()
    };
    assert!(matches!(value.kind, ExprKind::Assign { .. }));
    let e = first_expr("a ? b : c ? d : e");
    let ExprKind::Ternary { els, .. } = &e.kind else {
        panic!()
    };
    assert!(matches!(els.kind, ExprKind::Ternary { .. }));
    let e = first_expr("s <<< 5");
    assert!(matches!(
        e.kind,
        ExprKind::Assign {
            op: AssignOp::Aggregate,
            ..
        }
    ));
    let e = first_expr("s .= \"x\"");
    assert!(matches!(
        e.kind,
        ExprKind::Assign {
            op: AssignOp::Compound(BinaryOp::Concat),
            ..
        }
    ));
}

#[test]
fn printer_parenthesises_only_where_needed() {
    assert_eq!(expr_print("(1 + 2) * 3"), "(1 + 2) * 3");
    assert_eq!(expr_print("1 + (2 * 3)"), "1 + 2 * 3");
    assert_eq!(expr_print("a - (b - c)"), "a - (b - c)");
    assert_eq!(expr_print("(a - b) - c"), "a - b - c");
    assert_eq!(expr_print("- -a"), "- -a");
    assert_eq!(expr_print("-(-a)"), "- -a");
    assert_eq!(expr_print("-(a + 1)"), "-(a + 1)");
    assert_eq!(expr_print("(a ? b : c) + 1"), "(a ? b : c) + 1");
    assert_eq!(expr_print("x = (a in arr) + 1"), "x = (a in arr) + 1");
    assert_eq!(expr_print("[a, b] in arr"), "[a, b] in arr");
    assert_eq!(expr_print("(a & b) == c"), "(a & b) == c");
}

#[test]
fn numbers_and_strings() {
    let n = |s: &str| match first_expr(s).kind {
        ExprKind::Number(n) => n,
        k => panic!("{s}: {k:?}"),
    };
    assert_eq!(n("0x1f"), 31);
    assert_eq!(n("017"), 15);
    assert_eq!(n("0"), 0);
    assert_eq!(n("9223372036854775807"), i64::MAX);
    assert_eq!(n("0xffffffffffffffff"), -1);
    let st = |s: &str| match first_expr(s).kind {
        ExprKind::String(x) => x,
        k => panic!("{s}: {k:?}"),
    };
    assert_eq!(st(r#""a\tb\nc\\d\"e""#), "a\tb\nc\\d\"e");
    // stap passes C's escapes through (`\x42` is "B": stapbpf prints it so); any other
    // escaped character loses its backslash (`\.` is "."), and a NUL ends the C string.
    assert_eq!(st(r#""\101\x42\r\a\b\f\v""#), "AB\r\x07\x08\x0c\x0b");
    assert_eq!(st(r#""\x4g""#), "\x04g");
    // Adjacent literals join, across lines too, as `stap -p1` shows ("xy").
    assert_eq!(st("\"x\"\n \"y\""), "xy");
    assert_eq!(st(r#""\." "#), ".");
    assert_eq!(st(r#""\\." "#), "\\.");
    assert_eq!(st(r#""a\0b""#), "a");
    assert_eq!(st(r#""\e\'\?""#), "e'?");
}

#[test]
fn target_expressions() {
    let e = first_expr("$p->a->b[3]$");
    let ExprKind::Target(t) = &e.kind else {
        panic!()
    };
    assert_eq!(t.name, "p");
    assert_eq!(t.path.len(), 3);
    assert_eq!(t.pretty, 1);
    let e = first_expr("$p->a->b$$");
    let ExprKind::Target(t) = &e.kind else {
        panic!()
    };
    assert_eq!((t.path.len(), t.pretty), (2, 2));
    let e = first_expr("$$parms$");
    let ExprKind::Target(t) = &e.kind else {
        panic!()
    };
    assert_eq!((t.name.as_str(), t.pretty), ("$parms", 1));
    let e = first_expr("@cast(ptr, \"struct foo\", \"mod\")->x[1]");
    let ExprKind::Cast {
        type_name,
        module,
        path,
        ..
    } = &e.kind
    else {
        panic!()
    };
    assert_eq!(
        (type_name.as_str(), module.as_deref(), path.len()),
        ("struct foo", Some("mod"), 2)
    );
    let e = first_expr("@var(\"jiffies@timer.c\")");
    assert!(matches!(&e.kind, ExprKind::GlobalVar { name, .. } if name == "jiffies@timer.c"));
    let (s, _, d) = parse_text("t.stp", "probe begin { $3 }", &["a", "b", "c"]);
    assert!(d.is_empty(), "{d:?}");
    let Item::Probe(p) = &s.items[0] else {
        panic!("not a probe")
    };
    assert!(matches!(
        &p.body.stmts[0].kind,
        StmtKind::Expr(Expr {
            kind: ExprKind::ScriptArg {
                index: 3,
                as_string: false
            },
            ..
        })
    ));
    // Past the arguments it is stap's lexer error.
    assert_eq!(
        errors("probe begin { $3 }"),
        vec!["1:15 command line argument out of range [1-0]"]
    );
    let args: Vec<&str> = vec!["x"; 12];
    let (sc, _, d) = parse_text("t.stp", "probe begin { @12 }", &args);
    assert!(d.is_empty(), "{d:?}");
    let Item::Probe(p) = &sc.items[0] else {
        panic!("not a probe")
    };
    assert!(matches!(
        &p.body.stmts[0].kind,
        StmtKind::Expr(Expr {
            kind: ExprKind::ScriptArg {
                index: 12,
                as_string: true
            },
            ..
        })
    ));
    // `@#` is the string form of the count, substituted like stap's lexer does.
    assert!(matches!(first_expr("@#").kind, ExprKind::String(ref n) if n == "0"));
    let e = first_expr("print(@hist_linear(s, 0, 100, 10))");
    let ExprKind::Call { args: pargs, .. } = &e.kind else {
        panic!("{e:?}")
    };
    assert!(
        matches!(&pargs[0].kind, ExprKind::Stat { op: StatOp::HistLinear, args, .. } if args.len() == 3)
    );
    // A bare histogram only as a print argument, in foreach, or indexed (stap -p1).
    assert_eq!(
        errors("probe begin { @hist_log(s) }"),
        vec!["1:15 base histogram operator where expression expected"]
    );
    assert!(errors("probe begin { x = @hist_log(s)[2] }").is_empty());
    assert!(errors("probe begin { foreach ([b] in @hist_log(s)) println(b) }").is_empty());
    let (_, src, d) = parse_text("h.stp", "probe begin { x = 1 + @hist_log(s) }", &[]);
    assert!(render(&d[0], &src)
        .starts_with("parse error: base histogram operator where expression expected\n         at: operator '@hist_log' at h.stp:1:23\n"));
}

#[test]
fn expression_ids_are_unique_across_files() {
    let mut sources = SourceMap::default();
    let a = sources.add("a.stp", "function f(x) { return x + 1 }");
    let b = sources.add("b.stp", "probe begin { y = f(2) * 3 }");
    let mut ids = IdGen::new();
    let (s, d) = parse_files(&sources, &[a, b], &mut ids, &ParseOptions::default());
    assert!(d.is_empty());
    assert_eq!(s.items.len(), 2);
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    collect_ids(&s, &mut |id| {
        n += 1;
        assert!(seen.insert(id), "duplicate id {id:?}");
    });
    // x + 1 (3 nodes), y = f(2) * 3 (6 nodes).
    assert_eq!(n, 9);
    assert_eq!(ids.count(), 9);
}

fn collect_ids(s: &Script, f: &mut dyn FnMut(ExprId)) {
    fn expr(e: &Expr, f: &mut dyn FnMut(ExprId)) {
        f(e.id);
        match &e.kind {
            ExprKind::Binary { lhs, rhs, .. } => {
                expr(lhs, f);
                expr(rhs, f)
            }
            ExprKind::Assign { target, value, .. } => {
                expr(target, f);
                expr(value, f)
            }
            ExprKind::Call { args, .. } => args.iter().for_each(|a| expr(a, f)),
            _ => {}
        }
    }
    fn stmt(s: &Stmt, f: &mut dyn FnMut(ExprId)) {
        match &s.kind {
            StmtKind::Expr(e) | StmtKind::Return(Some(e)) => expr(e, f),
            StmtKind::Block(b) => b.stmts.iter().for_each(|s| stmt(s, f)),
            _ => {}
        }
    }
    for i in &s.items {
        match i {
            Item::Probe(p) => p.body.stmts.iter().for_each(|s| stmt(s, f)),
            Item::Function(FunctionDecl {
                body: FunctionBody::Script(b),
                ..
            }) => b.stmts.iter().for_each(|s| stmt(s, f)),
            _ => {}
        }
    }
}

#[test]
fn spans_point_at_source() {
    let (s, src, _) = parse_text("t.stp", "probe begin {\n  x = $p->a + 1\n}", &[]);
    let Item::Probe(p) = &s.items[0] else {
        panic!()
    };
    let StmtKind::Expr(e) = &p.body.stmts[0].kind else {
        panic!()
    };
    assert_eq!(src.snippet(e.span), "x = $p->a + 1");
    let ExprKind::Assign { value, .. } = &e.kind else {
        panic!()
    };
    let ExprKind::Binary { lhs, .. } = &value.kind else {
        panic!()
    };
    assert_eq!(src.snippet(lhs.span), "$p->a");
    assert_eq!(src.line_col(lhs.span), (2, 7));
    assert_eq!(src.snippet(p.points[0].span), "begin");
}

// ---- statements and items ----

#[test]
fn foreach_forms() {
    let s = ok("global arr probe end { foreach (v- = [a, b] in arr limit 3) x = 1 foreach ([a, b+] in arr) x = 1 foreach (k in arr-) x = 1 }");
    let Item::Probe(p) = &s.items[1] else {
        panic!()
    };
    let get = |i: usize| match &p.body.stmts[i].kind {
        StmtKind::Foreach {
            keys,
            value,
            array,
            sort,
            limit,
            ..
        } => (
            keys.clone(),
            value.clone(),
            array.clone(),
            *sort,
            limit.is_some(),
        ),
        k => panic!("{k:?}"),
    };
    assert_eq!(
        get(0),
        (
            vec!["a".into(), "b".into()],
            Some("v".into()),
            "arr".into(),
            Some(SortSpec {
                key: None,
                descending: true,
                aggregate: None
            }),
            true
        )
    );
    assert_eq!(
        get(1).3,
        Some(SortSpec {
            key: Some(1),
            descending: false,
            aggregate: None
        })
    );
    assert_eq!(
        get(2),
        (
            vec!["k".into()],
            None,
            "arr".into(),
            Some(SortSpec {
                key: None,
                descending: true,
                aggregate: None
            }),
            false
        )
    );
    assert_eq!(
        errors("global arr probe end { foreach ([a-, b+] in arr) x = 1 }"),
        vec!["1:39 multiple sort directives"]
    );
}

#[test]
fn probe_points_and_globals() {
    let s = ok("global a[100], b = -5, c = \"s\" probe kernel.function(\"sys_*\").return?, process(12).statement(\"f@a.c:3\")!, sys*_open.** if (a > 0) { }");
    let Item::Global(g) = &s.items[0] else {
        panic!()
    };
    assert_eq!((g.name.as_str(), g.size), ("a", Some(100)));
    let Item::Global(g) = &s.items[1] else {
        panic!()
    };
    assert_eq!(g.init, Some(Literal::Number(-5)));
    let Item::Probe(p) = &s.items[3] else {
        panic!()
    };
    assert_eq!(p.points.len(), 3);
    let names: Vec<String> = p.points[2]
        .components
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["sys*_open", "**"]);
    assert!(p.points[0].optional && !p.points[0].sufficient);
    assert!(p.points[1].sufficient);
    assert_eq!(p.points[0].components[2].name, "return");
    assert_eq!(p.points[1].components[0].arg, Some(Literal::Number(12)));
    assert!(p.points[2].condition.is_some());
}

#[test]
fn script_args_substitute_in_probe_points() {
    let (s, src, d) = parse_text(
        "t.stp",
        "probe process(@1).function($2), timer.ms($3) { }",
        &["./a.out", "main", "250"],
    );
    assert!(d.is_empty(), "{}", render_diags(&d, &src));
    let Item::Probe(p) = &s.items[0] else {
        panic!()
    };
    assert_eq!(
        p.points[0].components[0].arg,
        Some(Literal::String("./a.out".into()))
    );
    assert_eq!(
        p.points[0].components[1].arg,
        Some(Literal::String("main".into()))
    );
    assert_eq!(p.points[1].components[1].arg, Some(Literal::Number(250)));
    assert_eq!(
        errors("probe process($1) { }"),
        vec!["1:15 command line argument out of range [1-0]"]
    );
}

#[test]
fn functions() {
    let s = ok("function f:string (a:long, b:string, c) { return b } function g(x) : long { return x } function h() %{ /* pure */ %}");
    let Item::Function(f) = &s.items[0] else {
        panic!()
    };
    assert_eq!(f.ret, Some(TypeName::String));
    let tys: Vec<_> = f.params.iter().map(|p| p.ty).collect();
    assert_eq!(tys, [Some(TypeName::Long), Some(TypeName::String), None]);
    let Item::Function(g) = &s.items[1] else {
        panic!()
    };
    assert_eq!(g.ret, Some(TypeName::Long));
    let Item::Function(h) = &s.items[2] else {
        panic!()
    };
    assert!(matches!(h.body, FunctionBody::EmbeddedC(_)));
}

// ---- errors ----

#[test]
fn all_errors_are_reported_with_positions() {
    let text = "probe begin {\n  x = (1 + ;\n  y = 2\n}\nprobe end {\n  printf(\"%d\", y\n}\nfunction f(a,) { }\nprobe timer.s(1) { z = 3 +* 4 }\n";
    assert_eq!(
        errors(text),
        vec![
            "2:12 expected literal string or number",
            "7:1 expected one of ', )'",
            "8:14 expected identifier",
            "9:27 expected literal string or number",
        ]
    );
}

#[test]
fn lexer_errors() {
    assert_eq!(
        errors("probe begin { x = \"abc\n }"),
        vec!["1:19 Could not find matching closing quote"]
    );
    assert_eq!(
        errors("probe begin { x = 1 ` }"),
        // stap's lexer makes '`' an operator; its parser rejects it where it stands.
        vec!["1:21 expected literal string or number"]
    );
    // stap ends the input at an unterminated comment without a word of its own.
    assert!(errors("probe begin { } /* open").is_empty());
    assert_eq!(
        errors("probe begin { /* open"),
        vec!["1:22 expected statement"]
    );
    assert_eq!(
        errors("probe begin { x = 08 }"),
        vec!["1:19 number invalid or out of range"]
    );
    assert_eq!(
        errors("%{ never closed"),
        vec!["1:1 could not find matching '%}' to close embedded function block"]
    );
}

#[test]
fn missing_close_brace_before_next_probe() {
    assert_eq!(
        errors("probe begin {\n x = 1\nprobe end { y = 2 }\nprobe z { w = }"),
        vec![
            "3:1 expected statement",
            "4:15 expected literal string or number"
        ]
    );
}

// ---- preprocessor ----

fn globals(text: &str, args: &[&str]) -> Vec<String> {
    let (s, src, d) = parse_text("t.stp", text, args);
    assert!(d.is_empty(), "{}", render_diags(&d, &src));
    s.items
        .iter()
        .filter_map(|i| match i {
            Item::Global(g) => Some(g.name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn preprocessor_conditions() {
    assert_eq!(
        globals("%( $# == 2 %? global two %: global other %)", &["a", "b"]),
        ["two"]
    );
    assert_eq!(
        globals("%( $# == 2 %? global two %: global other %)", &[]),
        ["other"]
    );
    assert_eq!(globals("%( @# < 1 %? global none %)", &[]), ["none"]);
    assert_eq!(globals("%( runtime == \"snaptap\" %? global a %) %( runtime == \"dyn*\" %? global b %) %( runtime != \"kernel\" %? global c %)", &[]), ["a", "b", "c"]);
    assert_eq!(
        globals("%( kernel_v >= \"2.6\" %? global new %: global old %)", &[]),
        ["old"]
    );
    assert_eq!(
        globals("%( kernel_vr == \"0.*\" %? global glob %)", &[]),
        ["glob"]
    );
    assert_eq!(
        globals("%( systemtap_v >= \"4.10\" %? global v %)", &[]),
        ["v"]
    );
    assert_eq!(
        globals("%( CONFIG_FOO == \"y\" %? global y %: global n %)", &[]),
        ["n"]
    );
    assert_eq!(
        globals("%( @defined($x) %? global d %: global u %)", &[]),
        ["u"]
    );
    assert_eq!(
        globals("%( 1 == 1 && (2 < 1 || \"a\" < \"b\") %? global t %)", &[]),
        ["t"]
    );
    assert_eq!(
        globals(
            "%( 1 == 1 %? %( 2 == 3 %? global x %: global y %) global z %: global w %)",
            &[]
        ),
        ["y", "z"]
    );
    let arch = PpConfig::default().arch;
    assert_eq!(
        globals(
            &format!("%( arch == \"{arch}\" %? global same %: global diff %)"),
            &[]
        ),
        ["same"]
    );
}

#[test]
fn preprocessor_with_caller_environment() {
    let mut sources = SourceMap::default();
    let f = sources.add(
        "k.stp",
        "%( kernel_v >= \"5.4\" && arch == \"arm64\" %? global yes %: global no %)",
    );
    let mut opts = ParseOptions::default();
    opts.pp.kernel_version = "5.10.0".into();
    opts.pp.arch = "arm64".into();
    let (s, d) = parse_session(&sources, f, &mut IdGen::new(), &opts);
    assert!(d.is_empty());
    assert!(matches!(&s.items[0], Item::Global(g) if g.name == "yes"));
}

#[test]
fn preprocessor_errors() {
    // As `stap -p1` reports them: a bad condition gives the conditional up, so its `%?`
    // and `%)` are stray.
    let e = errors("%( nonsense == 1 %? global a %)");
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        &e[1..],
        [
            "1:18 incomplete conditional - missing '%('",
            "1:30 incomplete conditional - missing '%('"
        ]
    );
    assert_eq!(
        errors("%( 1 == 1 %? global a"),
        vec!["1:1 incomplete conditional at end of file"]
    );
    assert_eq!(
        errors("global a %)"),
        vec!["1:10 incomplete conditional - missing '%('"]
    );
}

#[test]
fn macros() {
    let s = ok(
        "@define sq(x) %( ((@x) * (@x)) %) @define ONE %( 1 %) probe begin { a = @sq(@ONE + 2) }",
    );
    let Item::Probe(p) = &s.items[0] else {
        panic!()
    };
    let StmtKind::Expr(e) = &p.body.stmts[0].kind else {
        panic!()
    };
    assert_eq!(print_expr(e), "a = (1 + 2) * (1 + 2)");
    assert!(
        errors("@define m(a, b) %( @a %) probe begin { x = @m(1) }")[0]
            .contains("takes 2 argument(s), 1 given")
    );
    assert!(errors("@define r %( @r %) probe begin { x = @r }")[0].contains("expands too deeply"));
    // Exponential expansion ends in an error, quickly.
    let mut text = String::from("@define m0 %( x %) ");
    for k in 1..40 {
        text.push_str(&format!("@define m{k} %( @m{} @m{} %) ", k - 1, k - 1));
    }
    text.push_str("probe begin { @m39 }");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("expands to too much text"), "{e:?}");
    // Library macros (.stpm) are visible to later files; others are not.
    let mut sources = SourceMap::default();
    let lib = sources.add("lib.stpm", "@define two %( 2 %)");
    let user = sources.add("u.stp", "probe begin { x = @two }");
    let (_, d) = parse_files(
        &sources,
        &[lib, user],
        &mut IdGen::new(),
        &ParseOptions::default(),
    );
    assert!(d.is_empty(), "{}", render_diags(&d, &sources));
    let local = sources.add("local.stp", "@define three %( 3 %)");
    let user2 = sources.add("u2.stp", "probe begin { x = @three }");
    let (_, d) = parse_files(
        &sources,
        &[local, user2],
        &mut IdGen::new(),
        &ParseOptions::default(),
    );
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].message, "unknown operator @three");
}

// ---- aliases ----

#[test]
fn alias_expansion() {
    let text = "probe sys.open = process(\"a\").function(\"open\") { name = \"open\" }\n\
                probe sys.open += process(\"a\").function(\"open2\") { done = 1 }\n\
                probe sys.* { printf(\"%s\\n\", name) }\n\
                probe sys.open.return, begin { x = 1 }\n";
    let s = ok(text);
    let mut ids = IdGen::new();
    // Ids from the parse are below 100 here; start the expansion's above them.
    for _ in 0..100 {
        ids.fresh();
    }
    let (probes, d) = expand_aliases(&s, &mut ids);
    assert!(d.is_empty());
    let shown: Vec<String> = probes
        .iter()
        .map(|p| {
            let pts: Vec<String> = p
                .points
                .iter()
                .map(|q| {
                    q.components
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect();
            format!("{} {} {}", p.probe_index, pts.join(","), p.body.stmts.len())
        })
        .collect();
    assert_eq!(
        shown,
        [
            "0 process.function 2",
            "0 process.function 2",
            "1 begin 1",
            "1 process.function.return 2",
            "1 process.function.return 2",
        ]
    );
    // Prologue first, epilogue last.
    let body = |i: usize| {
        print_script(&Script {
            items: vec![Item::Probe(ProbeDecl {
                points: probes[i].points.clone(),
                body: probes[i].body.clone(),
                span: probes[i].span,
            })],
        })
    };
    let b0 = body(0);
    assert!(
        b0.find("name = \"open\"").unwrap() < b0.find("printf").unwrap(),
        "{b0}"
    );
    let b1 = body(1);
    assert!(
        b1.find("printf").unwrap() < b1.find("done = 1").unwrap(),
        "{b1}"
    );
    // Wildcards reach every alias; the longer name wins only over names it extends.
    let s = ok("probe sc.open = k.function(\"open\") { } probe sc.open.return = k.function(\"open\").return { } probe sc.close = k.function(\"close\") { } probe sc.*.return { }");
    let (probes, _) = expand_aliases(&s, &mut IdGen::new());
    let mut pts: Vec<String> = probes
        .iter()
        .map(|p| {
            print_script(&Script {
                items: vec![Item::Probe(ProbeDecl {
                    points: p.points.clone(),
                    body: Block::default(),
                    span: p.span,
                })],
            })
        })
        .collect();
    pts.sort();
    assert_eq!(
        pts,
        [
            "probe k.function(\"close\").return {\n}\n",
            "probe k.function(\"open\").return {\n}\n"
        ]
    );
    // Recursive aliases are reported, not looped on.
    let (_, d) = expand_aliases(
        &ok("probe a = b { } probe b = a { } probe a { }"),
        &mut IdGen::new(),
    );
    assert_eq!(d.len(), 1);
}

// ---- robustness ----

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
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
}

/// Parses, renders every diagnostic and prints the script; must not panic.
fn exercise(text: &str) {
    let (s, src, d) = parse_text("fuzz.stp", text, &["1"]);
    for x in &d {
        let r = render(x, &src);
        assert!(r.contains(&x.message));
    }
    let _ = print_script_with_sources(&s, &src);
    let _ = expand_aliases(&s, &mut IdGen::new());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let len = rng.below(80);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn random_token_soup_never_panics() {
    const WORDS: &[&str] = &[
        "probe",
        "begin",
        "end",
        "global",
        "function",
        "if",
        "else",
        "for",
        "foreach",
        "in",
        "limit",
        "return",
        "delete",
        "while",
        "break",
        "continue",
        "next",
        "try",
        "catch",
        "private",
        "x",
        "arr",
        "$x",
        "$$parms",
        "$1",
        "@1",
        "$#",
        "@count",
        "@hist_linear",
        "@cast",
        "@var",
        "@entry",
        "@defined",
        "@define",
        "@m",
        "1",
        "0x10",
        "\"s\"",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ";",
        ",",
        ".",
        "=",
        "+=",
        "<<<",
        "+",
        "-",
        "*",
        "/",
        "%",
        "<",
        ">",
        "==",
        "!",
        "~",
        "&",
        "|",
        "^",
        "?",
        ":",
        "++",
        "--",
        "->",
        "=~",
        "%(",
        "%?",
        "%:",
        "%)",
        "%{ c %}",
        "long",
        "string",
        "\n",
        "#",
        "/*",
        "*/",
        "\"",
    ];
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let n = rng.below(40);
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(WORDS[rng.below(WORDS.len())]);
            if rng.below(3) > 0 {
                text.push(' ');
            }
        }
        exercise(&text);
    }
}

#[test]
fn valid_token_soup_round_trips() {
    // Random expressions built from the grammar must print and re-parse identically.
    fn gen(rng: &mut Rng, depth: usize) -> String {
        const BIN: &[&str] = &[
            "+", "-", "*", "/", "%", "<<", ">>", ".", "&", "|", "^", "&&", "||", "==", "!=", "<",
            "<=", ">", ">=", "=~", "!~",
        ];
        if depth == 0 {
            return [
                "a",
                "b",
                "1",
                "\"s\"",
                "$x->y",
                "arr[1, a]",
                "f(a, 2)",
                "@count(st)",
            ][rng.below(8)]
            .to_string();
        }
        match rng.below(8) {
            0 => format!("-{}", gen(rng, depth - 1)),
            1 => format!("!({})", gen(rng, depth - 1)),
            2 => format!(
                "({} ? {} : {})",
                gen(rng, depth - 1),
                gen(rng, depth - 1),
                gen(rng, depth - 1)
            ),
            3 => format!("({} in arr)", gen(rng, depth - 1)),
            4 => format!("[{}, {}] in arr", gen(rng, 0), gen(rng, 0)),
            _ => {
                let op = BIN[rng.below(BIN.len())];
                let (l, r) = (gen(rng, depth - 1), gen(rng, depth - 1));
                if rng.below(2) == 0 {
                    format!("({l}) {op} ({r})")
                } else {
                    format!("{l} {op} {r}")
                }
            }
        }
    }
    let mut rng = Rng(7);
    let mut clean = 0;
    for _ in 0..500 {
        let e = gen(&mut rng, 4);
        let text = format!("probe begin {{ x = {e} }}");
        let (s, src, d) = parse_text("t.stp", &text, &[]);
        if !d.is_empty() {
            // Some random combinations are not valid stap (e.g. `a in arr == b`); they
            // must still fail cleanly.
            let _ = render_diags(&d, &src);
            continue;
        }
        clean += 1;
        let once = print_script(&s);
        let again = printout(&once);
        assert_eq!(once, again, "source: {text}");
    }
    assert!(clean > 250, "only {clean} of 500 random scripts parsed");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep_parens = format!(
        "probe begin {{ x = {}1{} }}",
        "(".repeat(50_000),
        ")".repeat(50_000)
    );
    assert!(!errors(&deep_parens).is_empty());
    let long_chain = format!("probe begin {{ x = 1{} }}", " + 1".repeat(50_000));
    assert!(!errors(&long_chain).is_empty());
    let deep_blocks = format!("probe begin {}{}", "{".repeat(50_000), "}".repeat(50_000));
    assert!(!errors(&deep_blocks).is_empty());
    let unary = format!("probe begin {{ x = {}1 }}", "- ".repeat(50_000));
    assert!(!errors(&unary).is_empty());
    let ifs = format!("probe begin {{ {} x = 1 }}", "if (1) ".repeat(50_000));
    assert!(!errors(&ifs).is_empty());
    let index = format!(
        "probe begin {{ x = {}1{} }}",
        "$a[".repeat(50_000),
        "]".repeat(50_000)
    );
    assert!(!errors(&index).is_empty());
    // The limit sits where it is documented.
    let at_limit = format!("probe begin {{ {} x = 1 }}", "if (1) ".repeat(150));
    ok(&at_limit);
    let else_ifs = format!(
        "probe begin {{ if (0) x = 0 {} }}",
        "else if (1) x = 1 ".repeat(150)
    );
    ok(&else_ifs);
    // Moderate nesting is fine.
    let ok_parens = format!(
        "probe begin {{ x = {}1{} }}",
        "(".repeat(20),
        ")".repeat(20)
    );
    ok(&ok_parens);
    let ok_chain = format!("probe begin {{ x = 1{} }}", " + 1".repeat(60));
    ok(&ok_chain);
}

#[test]
fn token_at_describes_tokens() {
    let mut d = Vec::new();
    let toks = lexer::lex(
        FileId(0),
        "probe x.y { $a->b <<< @count(s) } %{ c %}",
        &mut d,
    );
    assert!(d.is_empty());
    let kinds: Vec<String> = toks.iter().map(|t| format!("{:?}", t.tok)).collect();
    assert_eq!(kinds.len(), 16, "{kinds:?}");
    assert_eq!(toks[6].tok, lexer::Tok::Op("->"));
    assert_eq!(toks[8].tok, lexer::Tok::Op("<<<"));
    assert_eq!(toks[14].tok, lexer::Tok::Embedded);
}

#[test]
fn large_input_parses_in_linear_time() {
    // Doubling the input must not much more than double the time: catches accidental
    // quadratic behaviour without depending on the machine's speed.
    let unit = "probe process(\"a\").function(\"f*\").return? {\n    x[tid(), \"k\"] <<< $return + @entry($n) * 2\n    if (x > 1) { printf(\"%d %s\\n\", x, $$parms$) } else delete x\n    foreach ([a, b] in x- limit 5) total += a\n}\n%( arch == \"none\" %? global skipped %: global kept%)\n";
    let time = |copies: usize| {
        let text = unit.repeat(copies).replace("kept%", "kept %");
        let t0 = std::time::Instant::now();
        let (s, src, d) = parse_text("big.stp", &text, &[]);
        let el = t0.elapsed();
        assert!(d.is_empty(), "{}", render_diags(&d[..1.min(d.len())], &src));
        assert_eq!(s.items.len(), copies * 2);
        el
    };
    let small = time(1000);
    let big = time(4000);
    assert!(
        big < small * 12 + std::time::Duration::from_millis(200),
        "1000 copies: {small:?}, 4000 copies: {big:?}"
    );
    eprintln!(
        "1000 copies: {small:?}, 4000 copies ({} KB): {big:?}",
        unit.len() * 4000 / 1024
    );
}

#[test]
fn random_statements_round_trip() {
    fn stmt(rng: &mut Rng, depth: usize) -> String {
        let leaf = [
            "x = 1",
            "x++",
            "delete arr[1]",
            "break",
            "continue",
            "next",
            ";",
            "{ }",
            "arr[1, \"a\"] <<< 3",
            "printf(\"%d\\n\", x)",
        ];
        if depth == 0 {
            return leaf[rng.below(leaf.len())].to_string();
        }
        let semi = if rng.below(2) == 0 { ";" } else { "" };
        match rng.below(9) {
            0 => format!("if (x) {}", stmt(rng, depth - 1)),
            1 => format!(
                "if (x) {}{semi} else {}",
                stmt(rng, depth - 1),
                stmt(rng, depth - 1)
            ),
            2 => format!("while (x < 3) {}", stmt(rng, depth - 1)),
            3 => format!("for (i = 0; i < 3; i++) {}", stmt(rng, depth - 1)),
            4 => format!("foreach ([a, b-] in arr limit 2) {}", stmt(rng, depth - 1)),
            5 => format!(
                "try {{ {} }} catch (e) {{ {} }}",
                stmt(rng, depth - 1),
                stmt(rng, depth - 1)
            ),
            6 => format!(
                "{{ {}{semi} {} }}",
                stmt(rng, depth - 1),
                stmt(rng, depth - 1)
            ),
            _ => format!("{}{semi}", leaf[rng.below(leaf.len())]),
        }
    }
    let mut rng = Rng(99);
    let mut clean = 0;
    for _ in 0..500 {
        let body = stmt(&mut rng, 4);
        let text = format!("global arr probe begin {{ {body} }}");
        let (s, src, d) = parse_text("t.stp", &text, &[]);
        if !d.is_empty() {
            // e.g. `if (x) break else ...` without a separator is still valid; anything
            // rejected must at least render.
            let _ = render_diags(&d, &src);
            continue;
        }
        clean += 1;
        let once = print_script(&s);
        let again = printout(&once);
        assert_eq!(once, again, "source: {text}");
    }
    assert!(clean > 250, "only {clean} of 500 random scripts parsed");
}

#[test]
fn expand_script_replaces_probes_in_place_with_unique_ids() {
    let text = "global g\n\
                probe two = timer.s(1), timer.s(2) { a = 1 + 2 }\n\
                probe begin { b = 3 }\n\
                probe two, end if (g > 0) { c = g * 2 }\n\
                function f() { return 1 }\n";
    let s = ok(text);
    let (mut x, d) = expand_script(&s);
    assert!(d.is_empty());
    let out = print_script(&x);
    assert_eq!(
        out,
        "global g\n\
         probe begin {\n    b = 3;\n}\n\
         probe end if (g > 0) {\n    c = g * 2;\n}\n\
         probe timer.s(1) {\n    {\n        a = 1 + 2;\n    }\n    {\n        c = g * 2;\n    }\n}\n\
         probe timer.s(2) {\n    {\n        a = 1 + 2;\n    }\n    {\n        c = g * 2;\n    }\n}\n\
         function f() {\n    return 1;\n}\n"
    );
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    visit::walk_script_mut(&mut x, &mut |e| {
        n += 1;
        assert!(seen.insert(e.id), "duplicate {:?}", e.id);
    });
    // b = 3 (3), end's condition (3) and body (5), two expansions of (5 + 5), return 1 (1).
    assert_eq!(n, 3 + 3 + 5 + 2 * 10 + 1);
}

#[test]
fn lexer_operators_comments_and_words() {
    use lexer::Tok;
    let mut d = Vec::new();
    let text = "<<< <<= >>= >>> == != <= >= && || ++ -- += -= *= /= %= &= |= ^= .= << >> -> =~ !~ %( %? %: %) \
                { } ( ) [ ] ; , . = + - * / % < > ! ~ & | ^ ? :";
    let toks = lexer::lex(FileId(0), text, &mut d);
    assert!(d.is_empty());
    let ops: Vec<&str> = toks
        .iter()
        .filter_map(|t| match t.tok {
            Tok::Op(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(ops, text.split_whitespace().collect::<Vec<_>>());
    let text = "# hash\nx // slashes\n/* block\n */ $y$$ @count $$parms $1 @2 $# @# a$b 0x1F 010 \"s\" %{ code %}";
    let toks = lexer::lex(FileId(0), text, &mut d);
    assert!(d.is_empty());
    let shown: Vec<String> = toks
        .iter()
        .map(|t| match &t.tok {
            Tok::Ident(w) => w.clone(),
            Tok::Number(n) => n.to_string(),
            Tok::Str(s) => format!("{s:?}"),
            Tok::Op(o) => o.to_string(),
            Tok::Embedded => "EMB".into(),
            Tok::Eof => "EOF".into(),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "x", "$y$$", "@count", "$$parms", "$1", "@2", "$#", "@#", "a$b", "31", "8", "\"s\"",
            "EMB", "EOF"
        ]
    );
    // Spans locate tokens for diagnostics.
    assert_eq!(
        &text[toks[1].span.start as usize..toks[1].span.end as usize],
        "$y$$"
    );
}

#[test]
fn conditional_points_get_handlers_of_their_own() {
    // A handler does not know which of its points fired, so each conditional point is
    // split off with a copy of the body (fresh ids); unconditional points stay together.
    let s = ok("global g, h\n\
                probe begin if (g), end, timer.s(1) if (h > 1), timer.s(2) { x = 1 }\n");
    let (mut x, d) = expand_script(&s);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        print_script(&x),
        "global g\n\
         global h\n\
         probe end, timer.s(2) {\n    x = 1;\n}\n\
         probe begin if (g) {\n    x = 1;\n}\n\
         probe timer.s(1) if (h > 1) {\n    x = 1;\n}\n"
    );
    let mut seen = std::collections::HashSet::new();
    visit::walk_script_mut(&mut x, &mut |e| {
        assert!(seen.insert(e.id), "duplicate {:?}", e.id);
    });
    // An alias's condition and the user's both apply.
    let s = ok("global g, h\n\
                probe ticks = timer.s(1) if (g) { }\n\
                probe ticks if (h) { }\n");
    let (x, d) = expand_script(&s);
    assert!(d.is_empty(), "{d:?}");
    assert!(
        print_script(&x).contains("probe timer.s(1) if (g && h) {"),
        "{}",
        print_script(&x)
    );
}

#[test]
fn foreach_slices_and_aggregate_sorts() {
    let text = "global a\nprobe begin {\n    foreach ([i, j-] in a[*, 3 + 1] limit 5) {\n    }\n    foreach (v = [k] in a @sum-) {\n    }\n    foreach (k in a[\"x\"] @avg+) {\n    }\n}\n";
    let s = ok(text);
    let printed = print_script(&s);
    assert_eq!(printed, printout(&printed), "printing is stable");
    assert!(
        printed.contains("foreach ([i, j-] in a[*, 3 + 1] limit 5)"),
        "{printed}"
    );
    assert!(printed.contains("foreach (v = k in a @sum-)"), "{printed}");
    assert!(
        printed.contains("foreach (k in a[\"x\"] @avg+)"),
        "{printed}"
    );
    let Item::Probe(p) = &s.items[1] else {
        panic!("probe expected")
    };
    let StmtKind::Foreach { slice, sort, .. } = &p.body.stmts[0].kind else {
        panic!("foreach expected")
    };
    assert!(slice[0].is_none() && slice[1].is_some());
    assert_eq!(sort.map(|s| s.key), Some(Some(1)));
    // An extractor needs its sort mark.
    let (_, _, d) = parse_text(
        "t.stp",
        "global a probe begin { foreach (k in a @sum) { } }",
        &[],
    );
    assert_eq!(d[0].message, "expected '+' or '-'");
}

#[test]
fn probe_point_brace_expansion() {
    let s = ok("global g\nprobe process(\"a\").{function(\"f\"), statement(\"g@a.c:3\")}.{call,return}, {begin, end} if (g) { }\n");
    let Item::Probe(p) = &s.items[1] else {
        panic!("probe expected")
    };
    let names: Vec<String> = p
        .points
        .iter()
        .map(|q| {
            q.components
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    assert_eq!(
        names,
        [
            "process.function.call",
            "process.function.return",
            "process.statement.call",
            "process.statement.return",
            "begin",
            "end"
        ]
    );
    // The condition applies to each expansion, each copy with its own ids.
    assert!(p.points[4].condition.is_some() && p.points[5].condition.is_some());
    let mut x = s.clone();
    let mut seen = std::collections::HashSet::new();
    visit::walk_script_mut(&mut x, &mut |e| {
        assert!(seen.insert(e.id), "duplicate {:?}", e.id);
    });
    // Nested groups with dotted alternatives.
    let s = ok("probe a.{b.{c,d},e} { }");
    let Item::Probe(p) = &s.items[0] else {
        panic!("probe expected")
    };
    assert_eq!(p.points.len(), 3);
    assert_eq!(p.points[1].components.len(), 3);
    // A combinatorial explosion is an error, not an allocation failure.
    let big = format!("probe a{} {{ }}", ".{b,c,d,e,f,g,h,i,j,k}".repeat(6));
    let (_, _, d) = parse_text("t.stp", &big, &[]);
    assert_eq!(d[0].message, "too many probe points after brace expansion");
    // Unbalanced groups are parse errors.
    let (_, _, d) = parse_text("t.stp", "probe a.{b,c { }", &[]);
    assert!(!d.is_empty());
}

#[test]
fn stap_p1_dump() {
    let text = "global count = 5, names[10]\n\
                probe syscall.* = process(\"a\").function(\"f\")? { x = 1 }\n\
                probe begin, timer.ms(100)! if (count > 0) {\n\
                    printf(\"%d\\n\", -count)\n\
                    while (i < 3) i++\n\
                    if (s =~ \"^a\") { delete names } else next\n\
                    foreach ([k-] in names limit 2) println(k, names[k])\n\
                    try { error(\"x\") } catch (e) { print(@hist_log(h)) }\n\
                    t = $1 . @2 . sprint($#)\n\
                    n = (a ? b : c) + ++j\n\
                }\n\
                function f(a, b) { return a * (b + 1) }\n";
    let (s, src, d) = parse_text("<input>", text, &["7", "x"]);
    assert!(d.is_empty(), "{d:?}");
    let out = print_script_stap(&s, &src, "<input>", &["7".to_string(), "x".to_string()]);
    let expected = "# parse tree dump\n\
# file <input>\n\
global count = 5\n\
global names[10]\n\
probe syscall.* = process(\"a\").function(\"f\")?{\n\
(x) = (1);\n\
}\n\
probe begin,timer.ms(100)! if ((count) > (0)){\n\
printf(\"%d\\\\n\", -(count));\n\
for (; (i) < (3); ) (i)++;\n\
if ((s) =~ \"^a\") {\n\
delete names;\n\
}\n\
else next\n\
;\n\
foreach ([k-] in names limit 2) println(k, names[k]);\n\
try {\n\
{\n\
error(\"x\");\n\
}\n\
} catch (e) {\n\
{\n\
print(@hist_log(h));\n\
}\n\
}\n\
;\n\
(t) = (((7) . (\"x\")) . (sprint(2)));\n\
(n) = (((a)?(b):(c)) + (++(j)));\n\
}\n\
function f (a, b)\n\
{\n\
return (a) * ((b) + (1));\n\
}\n\
\n";
    assert_eq!(out, expected);
}

#[test]
fn wildcard_array_indexes() {
    let s = ok("global a\nprobe begin { delete a[*, 3]; if ([*, k] in a) x = a[1, *] }\n");
    let printed = print_script(&s);
    assert_eq!(printed, printout(&printed), "printing is stable");
    assert!(printed.contains("delete a[*, 3];"), "{printed}");
    assert!(printed.contains("if ([*, k] in a)"), "{printed}");
    let (_, src, _) = parse_text("<input>", "probe begin { delete a[*, 3] }", &[]);
    let dump = print_script_stap(&ok("probe begin { delete a[*, 3] }"), &src, "<input>", &[]);
    assert!(dump.contains("delete a[*, 3];\n"), "{dump}");
    // `*` is an index only when a `,` or `]` follows; otherwise it is multiplication
    // or an error.
    let (_, _, d) = parse_text("t.stp", "probe begin { x = a[* 2] }", &[]);
    assert!(!d.is_empty());
}

#[test]
fn histogram_bucket_syntax() {
    let s = ok("global s\nprobe begin { x = @hist_log(s)[3]; foreach (c = [b] in @hist_linear(s, 0, 10, 2)- limit 2) print(b) }\n");
    let printed = print_script(&s);
    assert_eq!(printed, printout(&printed), "printing is stable");
    assert!(printed.contains("x = @hist_log(s)[3];"), "{printed}");
    assert!(
        printed.contains("foreach (c = b in @hist_linear(s, 0, 10, 2)- limit 2)"),
        "{printed}"
    );
    let (_, _, d) = parse_text("t.stp", "global s probe begin { x = @count(s)[1] }", &[]);
    assert_eq!(d[0].message, "only a histogram can be indexed");
}

#[test]
fn failed_parses_of_the_stap_corpus_render_byte_for_byte() {
    // The parse-error goldens of snaptap's stap corpus hold what `stap -p1` printed (minus
    // the container's and Debian's extra lines): render_failure must reproduce them.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snaptap/tests/stap-golden");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".stp") else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(want) = std::fs::read_to_string(dir.join(format!("{stem}.err"))) else {
            continue;
        };
        if !text.starts_with("# golden: p1") {
            continue;
        }
        let mut sources = SourceMap::default();
        let f = sources.add(name, text.as_str());
        let (_, d) = parse(&sources, f, &[]);
        assert_eq!(render_failure(&d, &sources, 1), want, "{name}");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} parse-error goldens");
}
