//! The SystemTap preprocessor: `%( COND %? THEN %: ELSE %)` and `@define` macros.
//!
//! It works on the token stream between the lexer and the parser. Conditions are
//! evaluated against a [`PpConfig`] describing the (pretend) environment: snaptap runs
//! scripts in userland, so `runtime` matches both `"snaptap"` and `"dyninst"`, kernel
//! configuration symbols are all unset and `@defined(...)` is false.

use std::collections::HashMap;

use crate::ast::Span;
use crate::diag::Diagnostic;
use crate::lexer::{Tok, Token};

/// The environment preprocessor conditions are evaluated against.
#[derive(Clone, Debug)]
pub struct PpConfig {
    /// `arch`, e.g. `x86_64`.
    pub arch: String,
    /// `kernel_v` / `kernel_vr`.
    pub kernel_version: String,
    /// `systemtap_v`: the stap language version we claim to speak.
    pub systemtap_version: String,
    /// `systemtap_privilege`.
    pub privilege: String,
    /// `$#` / `@#`: number of script arguments.
    pub arg_count: usize,
}

impl Default for PpConfig {
    fn default() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86" => "i386",
            "aarch64" => "arm64",
            "powerpc64" => "powerpc",
            a => a,
        };
        PpConfig {
            arch: arch.into(),
            kernel_version: "0.0".into(),
            systemtap_version: "5.0".into(),
            privilege: "stapusr".into(),
            arg_count: 0,
        }
    }
}

/// A `@define` macro.
#[derive(Clone, Debug)]
pub struct Macro {
    /// Parameter names (without `@`).
    pub params: Vec<String>,
    /// Body tokens (between `%(` and `%)`).
    pub body: Vec<Token>,
}

/// Macros by name (without `@`).
pub type MacroTable = HashMap<String, Macro>;

/// How deep macro expansions may nest before we assume runaway recursion.
const MAX_EXPANSION_DEPTH: usize = 64;

/// How many tokens macro expansion may produce per file: macros that use another macro
/// twice grow exponentially with nesting, which must end in an error, not a hang.
const MAX_EXPANDED_TOKENS: usize = 1 << 18;

/// Runs the preprocessor over one file's tokens (which end with `Eof`).
pub fn preprocess(
    tokens: &[Token],
    cfg: &PpConfig,
    macros: &mut MacroTable,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Token> {
    let mut pp = Pp {
        cfg,
        macros,
        diags,
        budget: MAX_EXPANDED_TOKENS,
        exhausted: false,
    };
    let mut out = Vec::with_capacity(tokens.len());
    let (body, eof) = match tokens.split_last() {
        Some((last, rest)) if last.tok == Tok::Eof => (rest, last.clone()),
        _ => (
            tokens,
            Token {
                tok: Tok::Eof,
                span: Span::default(),
            },
        ),
    };
    pp.run(body, &mut out, 0);
    out.push(eof);
    out
}

struct Pp<'a> {
    cfg: &'a PpConfig,
    macros: &'a mut MacroTable,
    diags: &'a mut Vec<Diagnostic>,
    /// Tokens macro expansion may still produce in this file.
    budget: usize,
    /// The budget ran out (reported once).
    exhausted: bool,
}

fn is_op(t: &Token, op: &str) -> bool {
    matches!(t.tok, Tok::Op(o) if o == op)
}

fn describe(t: &Token) -> String {
    match &t.tok {
        Tok::Ident(s) => format!("identifier '{s}'"),
        Tok::Number(n) => format!("number '{n}'"),
        Tok::Str(s) => format!("string '{}'", crate::lexer::printable(s)),
        Tok::Op(o) => format!("operator '{o}'"),
        Tok::Embedded => "embedded-code".into(),
        Tok::Eof => String::new(),
    }
}

/// Finds the index of the token closing the conditional section that starts at `from`
/// (just after `%(` or `%?`/`%:`), skipping nested `%( ... %)` pairs. Stops at any of
/// `stops` at nesting level zero.
fn find_close(toks: &[Token], from: usize, stops: &[&str]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(from) {
        if let Tok::Op(o) = t.tok {
            if o == "%(" {
                depth += 1;
            } else if depth > 0 && o == "%)" {
                depth -= 1;
            } else if depth == 0 && stops.contains(&o) {
                return Some(i);
            }
        }
    }
    None
}

impl Pp<'_> {
    /// stap's preprocessor names the token it stopped at explicitly (`at:`, not `saw:`).
    fn error(&mut self, msg: impl Into<String>, t: &Token) {
        let mut d = Diagnostic::error("parse error", msg, t.span);
        d.labels[0].message = format!("{}{}", crate::parser::AT_TOKEN, describe(t));
        self.diags.push(d);
    }

    fn run(&mut self, toks: &[Token], out: &mut Vec<Token>, depth: usize) {
        let mut i = 0;
        while i < toks.len() {
            let t = &toks[i];
            match &t.tok {
                Tok::Op("%(") => i = self.conditional(toks, i, out, depth),
                Tok::Op("%?" | "%:" | "%)") => {
                    self.error("incomplete conditional - missing '%('", t);
                    i += 1;
                }
                Tok::Ident(w) if w == "@define" => i = self.define(toks, i),
                Tok::Ident(w)
                    if w.len() > 1 && w.starts_with('@') && self.macros.contains_key(&w[1..]) =>
                {
                    i = self.expand(toks, i, out, depth)
                }
                _ => {
                    out.push(t.clone());
                    i += 1;
                }
            }
        }
    }

    /// Handles `%( COND %? A [%: B] %)` starting at `toks[at]`; returns the next index.
    fn conditional(
        &mut self,
        toks: &[Token],
        at: usize,
        out: &mut Vec<Token>,
        depth: usize,
    ) -> usize {
        let Some(q) = find_close(toks, at + 1, &["%?"]) else {
            self.error("incomplete conditional at end of file", &toks[at]);
            return toks.len();
        };
        let Some(mid) = find_close(toks, q + 1, &["%:", "%)"]) else {
            self.error("incomplete conditional at end of file", &toks[at]);
            return toks.len();
        };
        let (else_range, end) = if is_op(&toks[mid], "%:") {
            match find_close(toks, mid + 1, &["%)", "%:"]) {
                Some(e) if is_op(&toks[e], "%)") => (Some((mid + 1, e)), e),
                Some(e) => {
                    self.error("incomplete conditional: expected '%)'", &toks[e]);
                    return toks.len();
                }
                None => {
                    self.error("incomplete conditional at end of file", &toks[at]);
                    return toks.len();
                }
            }
        } else {
            (None, mid)
        };
        let Some(cond) = self.eval_condition(&toks[at + 1..q], &toks[at]) else {
            // stap gives the conditional up and reads on from its `%?`, which is then
            // a stray one.
            return q;
        };
        if cond {
            self.run(&toks[q + 1..mid], out, depth);
        } else if let Some((s, e)) = else_range {
            self.run(&toks[s..e], out, depth);
        }
        end + 1
    }

    /// Handles `@define NAME[(PARAMS)] %( BODY %)`; returns the next index.
    fn define(&mut self, toks: &[Token], at: usize) -> usize {
        let mut i = at + 1;
        let name = match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(n)) if !n.starts_with('$') && !n.starts_with('@') => n.clone(),
            _ => {
                let t = toks.get(i).unwrap_or(&toks[at]).clone();
                self.error("expected macro name after '@define'", &t);
                return i.min(toks.len());
            }
        };
        i += 1;
        let mut params = Vec::new();
        if toks.get(i).is_some_and(|t| is_op(t, "(")) {
            i += 1;
            loop {
                match toks.get(i).map(|t| &t.tok) {
                    Some(Tok::Ident(p)) => {
                        params.push(p.clone());
                        i += 1;
                    }
                    Some(Tok::Op(")")) if params.is_empty() => {}
                    _ => {
                        let t = toks.get(i).unwrap_or(&toks[at]).clone();
                        self.error("expected macro parameter name", &t);
                        return i.min(toks.len());
                    }
                }
                match toks.get(i).map(|t| &t.tok) {
                    Some(Tok::Op(",")) => i += 1,
                    Some(Tok::Op(")")) => {
                        i += 1;
                        break;
                    }
                    _ => {
                        let t = toks.get(i).unwrap_or(&toks[at]).clone();
                        self.error("expected ',' or ')'", &t);
                        return i.min(toks.len());
                    }
                }
            }
        }
        if !toks.get(i).is_some_and(|t| is_op(t, "%(")) {
            let t = toks.get(i).unwrap_or(&toks[at]).clone();
            self.error("expected '%('", &t);
            return i.min(toks.len());
        }
        let Some(end) = find_close(toks, i + 1, &["%)"]) else {
            self.error("incomplete macro definition: missing '%)'", &toks[at]);
            return toks.len();
        };
        let body = toks[i + 1..end].to_vec();
        match self.macros.entry(name) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let msg = format!("attempt to redefine macro '@{}'", e.key());
                self.error(msg, &toks[at + 1]);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Macro { params, body });
            }
        }
        end + 1
    }

    /// Expands a macro invocation `@NAME[(ARGS)]` at `toks[at]`; returns the next index.
    fn expand(&mut self, toks: &[Token], at: usize, out: &mut Vec<Token>, depth: usize) -> usize {
        let Tok::Ident(word) = &toks[at].tok else {
            return at + 1;
        };
        let name = word[1..].to_string();
        let Some(mac) = self.macros.get(&name).cloned() else {
            return at + 1;
        };
        if depth >= MAX_EXPANSION_DEPTH {
            self.error(
                format!("macro '@{name}' expands too deeply (recursive?)"),
                &toks[at],
            );
            return at + 1;
        }
        let mut i = at + 1;
        let mut args: Vec<Vec<Token>> = Vec::new();
        if !mac.params.is_empty() || toks.get(i).is_some_and(|t| is_op(t, "(")) {
            if !toks.get(i).is_some_and(|t| is_op(t, "(")) {
                self.error(format!("expected '(' after macro '@{name}'"), &toks[at]);
                return i;
            }
            i += 1;
            let mut cur = Vec::new();
            let mut level = 0usize;
            loop {
                let Some(t) = toks.get(i) else {
                    self.error(format!("unterminated call of macro '@{name}'"), &toks[at]);
                    return toks.len();
                };
                i += 1;
                match t.tok {
                    Tok::Op("(" | "[" | "{") => level += 1,
                    Tok::Op(")") if level == 0 => {
                        if !cur.is_empty() || !args.is_empty() {
                            args.push(std::mem::take(&mut cur));
                        }
                        break;
                    }
                    Tok::Op(")" | "]" | "}") => level = level.saturating_sub(1),
                    Tok::Op(",") if level == 0 => {
                        args.push(std::mem::take(&mut cur));
                        continue;
                    }
                    _ => {}
                }
                cur.push(t.clone());
            }
        }
        if args.len() != mac.params.len() {
            self.error(
                format!(
                    "macro '@{name}' takes {} argument(s), {} given",
                    mac.params.len(),
                    args.len()
                ),
                &toks[at],
            );
            return i;
        }
        let size: usize = mac
            .body
            .iter()
            .map(|t| match &t.tok {
                Tok::Ident(w) => w
                    .strip_prefix('@')
                    .and_then(|p| mac.params.iter().position(|q| q == p))
                    .map_or(1, |k| args[k].len()),
                _ => 1,
            })
            .sum();
        if size > self.budget {
            // Report once; later invocations are dropped silently.
            if !self.exhausted {
                self.exhausted = true;
                self.error(
                    format!("macro '@{name}' expands to too much text"),
                    &toks[at],
                );
            }
            return i;
        }
        self.budget -= size;
        let mut expanded = Vec::with_capacity(size);
        for t in &mac.body {
            if let Tok::Ident(w) = &t.tok {
                if let Some(p) = w.strip_prefix('@') {
                    if let Some(k) = mac.params.iter().position(|q| q == p) {
                        expanded.extend(args[k].iter().cloned());
                        continue;
                    }
                }
            }
            expanded.push(t.clone());
        }
        self.run(&expanded, out, depth + 1);
        i
    }

    /// Evaluates a condition; reports problems and treats a bad condition as false.
    /// The condition's value, or None after reporting why it has none.
    fn eval_condition(&mut self, toks: &[Token], open: &Token) -> Option<bool> {
        let mut c = Cond {
            toks,
            pos: 0,
            cfg: self.cfg,
        };
        match c.or() {
            Ok(v) if c.pos == toks.len() => Some(v),
            Ok(_) => {
                let t = toks[c.pos].clone();
                self.error("expected '%?' after preprocessor condition", &t);
                None
            }
            Err((msg, at)) => {
                let t = at.map_or_else(|| open.clone(), |k| toks[k].clone());
                self.error(msg, &t);
                None
            }
        }
    }
}

type CondResult<T> = Result<T, (String, Option<usize>)>;

enum PpValue {
    Num(i64),
    Str(String),
    /// A version string compared with `strverscmp` semantics (`==` globs for kernels).
    Version(String, bool),
    /// A name compared only with `==`/`!=` globs; several accepted values.
    Names(Vec<String>),
    /// An unset kernel configuration symbol: unequal to everything.
    Unset,
}

struct Cond<'a> {
    toks: &'a [Token],
    pos: usize,
    cfg: &'a PpConfig,
}

impl Cond<'_> {
    fn peek_op(&self, op: &str) -> bool {
        self.toks.get(self.pos).is_some_and(|t| is_op(t, op))
    }

    fn fail<T>(&self, msg: &str) -> CondResult<T> {
        let at = if self.pos < self.toks.len() {
            Some(self.pos)
        } else {
            None
        };
        Err((msg.into(), at))
    }

    fn or(&mut self) -> CondResult<bool> {
        let mut v = self.and()?;
        while self.peek_op("||") {
            self.pos += 1;
            let r = self.and()?;
            v = v || r;
        }
        Ok(v)
    }

    fn and(&mut self) -> CondResult<bool> {
        let mut v = self.atom()?;
        while self.peek_op("&&") {
            self.pos += 1;
            let r = self.atom()?;
            v = v && r;
        }
        Ok(v)
    }

    fn atom(&mut self) -> CondResult<bool> {
        if self.peek_op("!") {
            self.pos += 1;
            return Ok(!self.atom()?);
        }
        if self.peek_op("(") {
            self.pos += 1;
            let v = self.or()?;
            if !self.peek_op(")") {
                return self.fail("expected ')'");
            }
            self.pos += 1;
            return Ok(v);
        }
        if let Some(Tok::Ident(w)) = self.toks.get(self.pos).map(|t| &t.tok) {
            if w == "@defined" {
                // We cannot know at this point what is defined: treat it as not defined,
                // skipping the parenthesised operand.
                self.pos += 1;
                if !self.peek_op("(") {
                    return self.fail("expected '('");
                }
                let mut level = 0usize;
                while let Some(t) = self.toks.get(self.pos) {
                    self.pos += 1;
                    if is_op(t, "(") {
                        level += 1;
                    } else if is_op(t, ")") {
                        level -= 1;
                        if level == 0 {
                            return Ok(false);
                        }
                    }
                }
                return self.fail("expected ')'");
            }
        }
        let lhs = self.value()?;
        let op = match self.toks.get(self.pos).map(|t| &t.tok) {
            Some(Tok::Op(o @ ("==" | "!=" | "<" | "<=" | ">" | ">="))) => *o,
            _ => return self.fail("expected comparison operator"),
        };
        self.pos += 1;
        let rhs = self.value()?;
        self.compare(lhs, op, rhs)
    }

    fn value(&mut self) -> CondResult<PpValue> {
        let Some(t) = self.toks.get(self.pos) else {
            return self.fail("expected preprocessor condition");
        };
        let v = match &t.tok {
            Tok::Number(n) => PpValue::Num(*n),
            Tok::Str(s) => PpValue::Str(s.clone()),
            Tok::Op("-") => {
                self.pos += 1;
                return match self.toks.get(self.pos).map(|t| &t.tok) {
                    Some(Tok::Number(n)) => {
                        self.pos += 1;
                        Ok(PpValue::Num(n.wrapping_neg()))
                    }
                    _ => self.fail("expected number"),
                };
            }
            Tok::Ident(w) => match w.as_str() {
                "$#" | "@#" => PpValue::Num(self.cfg.arg_count as i64),
                "arch" => PpValue::Names(vec![self.cfg.arch.clone()]),
                "runtime" => PpValue::Names(vec!["snaptap".into(), "dyninst".into()]),
                "systemtap_privilege" => PpValue::Names(vec![self.cfg.privilege.clone()]),
                "kernel_v" | "kernel_vr" => PpValue::Version(self.cfg.kernel_version.clone(), true),
                "systemtap_v" => PpValue::Version(self.cfg.systemtap_version.clone(), false),
                "guru_mode" => PpValue::Num(0),
                w if w.starts_with("CONFIG_") => PpValue::Unset,
                _ => {
                    // stap's words, line breaks and indentation included.
                    return self.fail(
                        "expected 'arch', 'kernel_v', 'kernel_vr', 'systemtap_v',\n             \
                         'runtime', 'systemtap_privilege', 'CONFIG_...', or\n             \
                         comparison between strings or integers",
                    );
                }
            },
            _ => return self.fail("expected preprocessor condition"),
        };
        self.pos += 1;
        Ok(v)
    }

    fn compare(&self, lhs: PpValue, op: &str, rhs: PpValue) -> CondResult<bool> {
        use std::cmp::Ordering;
        let ord_ok = |o: Ordering| match op {
            "==" => o == Ordering::Equal,
            "!=" => o != Ordering::Equal,
            "<" => o == Ordering::Less,
            "<=" => o != Ordering::Greater,
            ">" => o == Ordering::Greater,
            _ => o != Ordering::Less,
        };
        let at = Some(self.pos.saturating_sub(1));
        match (lhs, rhs) {
            (PpValue::Unset, PpValue::Num(_) | PpValue::Str(_)) => Ok(op == "!="),
            (PpValue::Num(a), PpValue::Num(b)) => Ok(ord_ok(a.cmp(&b))),
            (PpValue::Str(a), PpValue::Str(b)) => Ok(ord_ok(a.cmp(&b))),
            (PpValue::Version(v, glob_eq), PpValue::Str(pat)) => {
                if glob_eq && (op == "==" || op == "!=") {
                    Ok(glob_match(pat.as_bytes(), v.as_bytes()) == (op == "=="))
                } else {
                    Ok(ord_ok(version_cmp(&v, &pat)))
                }
            }
            (PpValue::Names(names), PpValue::Str(pat)) => {
                let m = names
                    .iter()
                    .any(|n| glob_match(pat.as_bytes(), n.as_bytes()));
                match op {
                    "==" => Ok(m),
                    "!=" => Ok(!m),
                    _ => Err(("only '==' and '!=' can compare this value".into(), at)),
                }
            }
            _ => Err(("mismatched types in preprocessor condition".into(), at)),
        }
    }
}

/// Shell-style glob match (`*`, `?`, `[...]`), as fnmatch without flags.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pat, p, s[i]) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at `pat[p]`; returns whether it matched
/// and the index after the expression, or None if the expression is not closed.
fn class_match(pat: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = matches!(pat.get(j), Some(b'!' | b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() && (first || pat[j] != b']') {
        first = false;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            if pat[j] <= c && c <= pat[j + 2] {
                matched = true;
            }
            j += 3;
        } else {
            if pat[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    if j >= pat.len() {
        return None;
    }
    Some((matched != negate, j + 1))
}

/// Compares version strings as glibc's `strverscmp` does for ordinary versions: runs of
/// digits compare numerically, everything else byte by byte.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i])
                .unwrap_or("0")
                .trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j])
                .unwrap_or("0")
                .trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}
