//! The parse tree printed the way `stap -p1` prints it (`staptree.cxx`'s `print`
//! methods), for a byte-compatible `-p1`.
//!
//! stap's dump is not pretty: every binary operand is parenthesised (`(x) + (1)`),
//! unary operands too (`-(1)`), a block prints each statement followed by `;` on its
//! own line, a probe's body follows its points without a space (`probe begin{`), and
//! the file lists embedded C, globals, aliases, probes and functions in that order
//! rather than in source order. `while` is a `for` loop in stap's tree. String
//! literals show C's escapes as written (stap keeps them in the literal); the
//! formats and delimiters of the print family are shown C-quoted once more.

use std::fmt::Write;

use crate::ast::*;
use crate::diag::SourceMap;
use crate::print::{binop_str, stat_name, Emit};

/// `stap -p1` output for `script` from the file named `file` (`<input>` for `-e`):
/// `# parse tree dump`, `# file NAME`, the declarations, and a final empty line.
/// `args` are the script arguments, which stap substitutes for `$1`/`@1`/`$#` while
/// lexing.
pub fn print_script_stap(
    script: &Script,
    sources: &SourceMap,
    file: &str,
    args: &[String],
) -> String {
    let mut p = StapPrinter {
        out: String::new(),
        args,
        sources,
    };
    p.out.push_str("# parse tree dump\n");
    let _ = writeln!(p.out, "# file {file}");
    for item in &script.items {
        if let Item::Embedded(span) = item {
            p.out.push_str(sources.snippet(*span));
        }
    }
    for item in &script.items {
        if let Item::Global(g) = item {
            p.out.push_str("global ");
            p.global(g);
            p.out.push('\n');
        }
    }
    for item in &script.items {
        if let Item::Alias(a) = item {
            p.out.push_str("probe ");
            for (i, n) in a.names.iter().enumerate() {
                if i > 0 {
                    p.out.push_str(" = ");
                }
                p.point(n);
            }
            p.out.push_str(if a.epilogue { " += " } else { " = " });
            for (i, pt) in a.points.iter().enumerate() {
                if i > 0 {
                    p.out.push_str(", ");
                }
                p.point(pt);
            }
            p.block(&a.body);
            p.out.push('\n');
        }
    }
    for item in &script.items {
        if let Item::Probe(pr) = item {
            p.out.push_str("probe ");
            for (i, pt) in pr.points.iter().enumerate() {
                if i > 0 {
                    p.out.push(',');
                }
                p.point(pt);
            }
            p.block(&pr.body);
            p.out.push('\n');
        }
    }
    for item in &script.items {
        if let Item::Function(f) = item {
            let _ = write!(p.out, "function {} (", f.name);
            for (i, a) in f.params.iter().enumerate() {
                if i > 0 {
                    p.out.push_str(", ");
                }
                p.out.push_str(&a.name);
            }
            p.out.push_str(")\n");
            match &f.body {
                FunctionBody::Script(b) => p.block(b),
                FunctionBody::EmbeddedC(span) => p.out.push_str(sources.snippet(*span)),
            }
            p.out.push('\n');
        }
    }
    p.out.push('\n');
    p.out
}

struct StapPrinter<'a> {
    out: String,
    args: &'a [String],
    /// For string literals, printed from their source text as stap's lexer keeps them.
    sources: &'a SourceMap,
}

/// A string value with C's escapes written back, as stap's lexer keeps them.
fn c_escaped(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            '\x07' => o.push_str("\\a"),
            '\x08' => o.push_str("\\b"),
            '\x0c' => o.push_str("\\f"),
            '\x0b' => o.push_str("\\v"),
            '\\' => o.push_str("\\\\"),
            c if !c.is_ascii() || (' '..='~').contains(&c) => o.push(c),
            c => {
                let _ = write!(o, "\\{:03o}", c as u32);
            }
        }
    }
    o
}

/// stap's `literal_string::print`: the raw literal with only `"` escaped.
/// A string literal as stap's lexer keeps it (and `-p1` prints it): the source text with
/// the C escapes (`\n`, `\101`, `\x41`, `\"`, `\\`...) as written and the backslash of
/// any other escape dropped. None if `raw` is not one plain literal.
fn token_string(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut o = String::from("\"");
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            return None;
        }
        if c != '\\' {
            o.push(c);
            continue;
        }
        let n = chars.next()?;
        if "abtnvfr01234567x\\\"".contains(n) {
            o.push('\\');
        }
        o.push(n);
    }
    o.push('"');
    Some(o)
}

fn literal_string(s: &str) -> String {
    format!("\"{}\"", c_escaped(s).replace('"', "\\\""))
}

/// stap's `lex_cast_qstring`: `"` and `\` escaped, other unprintable bytes octal.
fn qstring(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                o.push('\\');
                o.push(ch);
            }
            c if c.is_ascii() && !(' '..='~').contains(&c) => {
                let _ = write!(o, "\\{:03o}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Emit for StapPrinter<'_> {
    fn out(&mut self) -> &mut String {
        &mut self.out
    }

    fn whole_expr(&mut self, e: &Expr) {
        self.expr(e);
    }
}

impl StapPrinter<'_> {
    fn global(&mut self, g: &GlobalDecl) {
        self.out.push_str(&g.name);
        if let Some(n) = g.size {
            let _ = write!(self.out, "[{n}]");
        }
        if let Some(init) = &g.init {
            self.out.push_str(" = ");
            self.literal(init);
        }
    }

    fn literal(&mut self, l: &Literal) {
        match l {
            Literal::Number(n) => {
                let _ = write!(self.out, "{n}");
            }
            Literal::String(s) => self.out.push_str(&literal_string(s)),
        }
    }

    fn point(&mut self, pt: &ProbePoint) {
        for (i, c) in pt.components.iter().enumerate() {
            if i > 0 {
                self.out.push('.');
            }
            self.out.push_str(&c.name);
            if let Some(a) = &c.arg {
                self.out.push('(');
                self.literal(a);
                self.out.push(')');
            }
        }
        if pt.sufficient {
            self.out.push('!');
        } else if pt.optional {
            self.out.push('?');
        }
        if let Some(c) = &pt.condition {
            self.out.push_str(" if (");
            self.expr(c);
            self.out.push(')');
        }
    }

    fn block(&mut self, b: &Block) {
        self.out.push_str("{\n");
        for s in &b.stmts {
            self.stmt(s);
            self.out.push_str(";\n");
        }
        self.out.push('}');
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::Expr(e) => self.expr(e),
            StmtKind::If { cond, then, els } => {
                self.out.push_str("if (");
                self.expr(cond);
                self.out.push_str(") ");
                self.stmt(then);
                self.out.push('\n');
                if let Some(e) = els {
                    self.out.push_str("else ");
                    self.stmt(e);
                    self.out.push('\n');
                }
            }
            StmtKind::While { cond, body } => {
                self.out.push_str("for (; ");
                self.expr(cond);
                self.out.push_str("; ) ");
                self.stmt(body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                self.out.push_str("for (");
                if let Some(e) = init {
                    self.expr(e);
                }
                self.out.push_str("; ");
                match cond {
                    Some(e) => self.expr(e),
                    // stap fills in an always-true condition.
                    None => self.out.push('1'),
                }
                self.out.push_str("; ");
                if let Some(e) = step {
                    self.expr(e);
                }
                self.out.push_str(") ");
                self.stmt(body);
            }
            StmtKind::Foreach { body, .. } => {
                self.out.push_str("foreach (");
                self.foreach_head(&s.kind, true);
                self.out.push_str(") ");
                self.stmt(body);
            }
            StmtKind::Break => self.out.push_str("break"),
            StmtKind::Continue => self.out.push_str("continue"),
            StmtKind::Next => self.out.push_str("next"),
            StmtKind::Return(e) => {
                self.out.push_str("return");
                if let Some(e) = e {
                    self.out.push(' ');
                    self.expr(e);
                }
            }
            StmtKind::Delete(e) => {
                self.out.push_str("delete ");
                self.expr(e);
            }
            StmtKind::Try { body, var, catch } => {
                self.out.push_str("try {\n");
                self.block(body);
                self.out.push_str("\n} catch ");
                if let Some(v) = var {
                    let _ = write!(self.out, "({v}) ");
                }
                self.out.push_str("{\n");
                self.block(catch);
                self.out.push_str("\n}\n");
            }
            StmtKind::Empty => self.out.push(';'),
            StmtKind::Error => {}
        }
    }

    fn paren(&mut self, e: &Expr) {
        self.out.push('(');
        self.expr(e);
        self.out.push(')');
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Number(n) => {
                let _ = write!(self.out, "{n}");
            }
            ExprKind::String(s) => {
                let raw = token_string(self.sources.snippet(e.span));
                self.out.push_str(&raw.unwrap_or_else(|| literal_string(s)));
            }
            ExprKind::Var(n) => self.out.push_str(n),
            ExprKind::ScriptArg { index, as_string } => {
                let a = self
                    .args
                    .get((*index as usize).wrapping_sub(1))
                    .map_or("", |s| s.as_str());
                if *as_string {
                    self.out.push_str(&literal_string(a));
                } else {
                    self.out.push_str(a);
                }
            }
            ExprKind::ArgCount => {
                let _ = write!(self.out, "{}", self.args.len());
            }
            ExprKind::Index { array, keys } => {
                let _ = write!(self.out, "{array}[");
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.expr(k);
                }
                self.out.push(']');
            }
            ExprKind::Call { name, args } => self.call(name, args),
            ExprKind::Target(t) => {
                // The AST keeps the name without its `$` (`$$parms` keeps one).
                self.out.push('$');
                self.out.push_str(&t.name);
                self.steps(&t.path);
                if t.pretty > 0 {
                    let _ = write!(self.out, "->{}", "$".repeat(t.pretty as usize));
                }
            }
            ExprKind::Cast {
                expr,
                type_name,
                module,
                path,
                pretty,
            } => {
                self.out.push_str("@cast(");
                self.expr(expr);
                let _ = write!(self.out, ", {}", qstring(type_name));
                if let Some(m) = module {
                    let _ = write!(self.out, ", {}", qstring(m));
                }
                self.out.push(')');
                self.steps(path);
                if *pretty > 0 {
                    let _ = write!(self.out, "->{}", "$".repeat(*pretty as usize));
                }
            }
            ExprKind::GlobalVar { name, module, path } => {
                let _ = write!(self.out, "@var(\"{name}\"");
                if let Some(m) = module {
                    let _ = write!(self.out, ", {}", qstring(m));
                }
                self.out.push(')');
                self.steps(path);
            }
            ExprKind::Entry(x) => {
                self.out.push_str("@entry(");
                self.expr(x);
                self.out.push(')');
            }
            ExprKind::Defined(x) => {
                self.out.push_str("@defined(");
                self.expr(x);
                self.out.push(')');
            }
            ExprKind::ProbeWrite(n) => {
                let _ = write!(self.out, "@probewrite({n})");
            }
            ExprKind::Stat { op, expr, args } => {
                let _ = write!(self.out, "{}(", stat_name(*op));
                self.expr(expr);
                for a in args {
                    self.out.push_str(", ");
                    self.expr(a);
                }
                self.out.push(')');
            }
            ExprKind::Unary { op, expr } => {
                self.out.push_str(match op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Plus => "+",
                    UnaryOp::Not => "!",
                    UnaryOp::BitNot => "~",
                    UnaryOp::AddressOf => "&",
                });
                // stap prints the address of a target symbol without parentheses.
                let target = matches!(
                    expr.kind,
                    ExprKind::Target(_) | ExprKind::Cast { .. } | ExprKind::GlobalVar { .. }
                );
                if *op == UnaryOp::AddressOf && target {
                    self.expr(expr);
                } else {
                    self.paren(expr);
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                self.paren(lhs);
                let _ = write!(self.out, " {} ", binop_str(*op).0);
                // A regular expression is printed bare: stap's parser wants a literal.
                if matches!(op, BinaryOp::Match | BinaryOp::NotMatch) {
                    self.expr(rhs);
                } else {
                    self.paren(rhs);
                }
            }
            ExprKind::Ternary { cond, then, els } => {
                self.paren(cond);
                self.out.push('?');
                self.paren(then);
                self.out.push(':');
                self.paren(els);
            }
            ExprKind::Assign { op, target, value } => {
                self.paren(target);
                let o = match op {
                    AssignOp::Set => "=".to_string(),
                    AssignOp::Compound(b) => format!("{}=", binop_str(*b).0),
                    AssignOp::Aggregate => "<<<".to_string(),
                };
                let _ = write!(self.out, " {o} ");
                self.paren(value);
            }
            ExprKind::IncDec {
                prefix,
                increment,
                target,
            } => {
                let op = if *increment { "++" } else { "--" };
                if *prefix {
                    self.out.push_str(op);
                    self.paren(target);
                } else {
                    self.paren(target);
                    self.out.push_str(op);
                }
            }
            ExprKind::In { keys, array } => {
                self.out.push('[');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.expr(k);
                }
                let _ = write!(self.out, "] in {array}");
            }
            ExprKind::Wildcard => self.out.push('*'),
            ExprKind::HistBucket { hist, index } => {
                self.expr(hist);
                self.out.push('[');
                self.expr(index);
                self.out.push(']');
            }
            ExprKind::Error => {}
        }
    }

    /// A function call; the print family shows its format or delimiter the way stap's
    /// `print_format::print` does (the raw literal, C-quoted).
    fn call(&mut self, name: &str, args: &[Expr]) {
        let formatted = matches!(name, "printf" | "sprintf");
        let delimited = matches!(name, "printd" | "printdln" | "sprintd" | "sprintdln");
        let _ = write!(self.out, "{name}(");
        let mut rest = args;
        if formatted || delimited {
            if let Some((first, tail)) = args.split_first() {
                if let ExprKind::String(s) = &first.kind {
                    self.out.push_str(&qstring(&c_escaped(s)));
                    rest = tail;
                    for a in rest {
                        self.out.push_str(", ");
                        self.expr(a);
                    }
                    self.out.push(')');
                    return;
                }
            }
        }
        for (i, a) in rest.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.expr(a);
        }
        self.out.push(')');
    }
}
