//! Hand-written lexer for the SystemTap script language.
//!
//! The lexer is context free: it turns text into [`Token`]s (identifiers including the
//! `$`/`@` forms, numbers, strings with escapes processed, operators, embedded C) and
//! reports malformed input as diagnostics while carrying on, so that one bad character
//! never hides later errors. Preprocessor operators (`%(`, `%?`, `%:`, `%)`) are plain
//! operator tokens here; `preproc` interprets them.

use crate::ast::{FileId, Span};
use crate::diag::Diagnostic;

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An identifier or keyword, including `$x`, `$$parms`, `$1`, `$#`, `@count`, `@1`, `@#`.
    Ident(String),
    /// An integer literal (hex and octal already converted; values above `i64::MAX`
    /// wrap, as the 64-bit two's complement they denote).
    Number(i64),
    /// A string literal with escapes processed.
    Str(String),
    /// An operator or punctuation.
    Op(&'static str),
    /// `%{ ... %}` embedded C; the text is the token's span.
    Embedded,
    /// End of input.
    Eof,
}

/// One token and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Where it is.
    pub span: Span,
}

/// Words the parser treats as keywords (not usable as variable names).
pub const KEYWORDS: &[&str] = &[
    "probe", "global", "function", "if", "else", "for", "foreach", "in", "limit", "return",
    "delete", "while", "break", "continue", "next", "try", "catch", "private",
];

/// Is `word` a keyword?
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

/// Operators, longest first so that the first match is the longest one.
const OPERATORS: &[&str] = &[
    "<<<", "<<=", ">>=", ">>>", "==", "!=", "<=", ">=", "&&", "||", "++", "--", "+=", "-=", "*=",
    "/=", "%=", "&=", "|=", "^=", ".=", "<<", ">>", "->", "=~", "!~", "%(", "%?", "%:", "%)", "{",
    "}", "(", ")", "[", "]", ";", ",", ".", "=", "+", "-", "*", "/", "%", "<", ">", "!", "~", "&",
    "|", "^", "?", ":",
];

/// Lexes one file. The result always ends with an [`Tok::Eof`] token.
pub fn lex(file: FileId, text: &str, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
    let mut lx = Lexer {
        file,
        src: text.as_bytes(),
        text,
        pos: 0,
        diags,
    };
    let mut out = Vec::with_capacity(text.len() / 4 + 1);
    while let Some(t) = lx.next_token() {
        out.push(t);
    }
    let end = text.len() as u32;
    out.push(Token {
        tok: Tok::Eof,
        span: Span {
            file,
            start: end,
            end,
        },
    });
    out
}

/// Lexes the first token starting at byte `at` of `text` (no diagnostics); used by the
/// renderer to describe the token a diagnostic points at.
pub fn token_at(file: FileId, text: &str, at: usize) -> Option<Token> {
    if at > text.len() || !text.is_char_boundary(at) {
        return None;
    }
    let mut sink = Vec::new();
    let mut lx = Lexer {
        file,
        src: text.as_bytes(),
        text,
        pos: at,
        diags: &mut sink,
    };
    lx.next_token()
}

struct Lexer<'a, 'd> {
    file: FileId,
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    diags: &'d mut Vec<Diagnostic>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'@'
}

fn is_ident_cont(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

impl Lexer<'_, '_> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span {
            file: self.file,
            start: start as u32,
            end: end as u32,
        }
    }

    fn peek(&self, off: usize) -> u8 {
        self.src.get(self.pos + off).copied().unwrap_or(0)
    }

    fn error(&mut self, msg: impl Into<String>, start: usize, end: usize, what: String) {
        let mut d = Diagnostic::error("parse error", msg, self.span(start, end));
        d.labels[0].message = what;
        self.diags.push(d);
    }

    /// Skips whitespace and comments; returns false at end of input.
    fn skip_trivia(&mut self) -> bool {
        loop {
            let c = self.peek(0);
            if self.pos >= self.src.len() {
                return false;
            }
            if c.is_ascii_whitespace() {
                self.pos += 1;
            } else if c == b'#' || (c == b'/' && self.peek(1) == b'/') {
                while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if c == b'/' && self.peek(1) == b'*' {
                // stap's lexer ends the input at an unterminated comment, silently: the
                // parser then reports what it expected at the end of the file.
                match find(self.src, self.pos + 2, b"*/") {
                    Some(e) => self.pos = e + 2,
                    None => self.pos = self.src.len(),
                }
            } else {
                return true;
            }
        }
    }

    fn next_token(&mut self) -> Option<Token> {
        loop {
            if !self.skip_trivia() {
                return None;
            }
            if let Some(t) = self.scan() {
                return Some(t);
            }
        }
    }

    /// Scans one token at the current position; None after reporting junk.
    fn scan(&mut self) -> Option<Token> {
        let start = self.pos;
        let c = self.peek(0);
        if c.is_ascii_digit() {
            return Some(self.number());
        }
        if c == b'"' {
            return Some(self.string());
        }
        if (c == b'$' || c == b'@') && self.peek(1) == b'#' {
            self.pos += 2;
            return Some(self.tok(Tok::Ident(self.text[start..self.pos].into()), start));
        }
        if (c == b'$' || c == b'@') && self.peek(1).is_ascii_digit() {
            self.pos += 1;
            while self.peek(0).is_ascii_digit() {
                self.pos += 1;
            }
            return Some(self.tok(Tok::Ident(self.text[start..self.pos].into()), start));
        }
        if is_ident_start(c) {
            self.pos += 1;
            while is_ident_cont(self.peek(0)) {
                self.pos += 1;
            }
            let word = &self.text[start..self.pos];
            if word == "@" {
                self.error("unexpected '@'", start, self.pos, "junk '@'".into());
                return None;
            }
            return Some(self.tok(Tok::Ident(word.into()), start));
        }
        if c == b'%' && self.peek(1) == b'{' {
            return match find(self.src, self.pos + 2, b"%}") {
                Some(e) => {
                    self.pos = e + 2;
                    Some(self.tok(Tok::Embedded, start))
                }
                None => {
                    self.pos = self.src.len();
                    self.error(
                        "could not find matching '%}' to close embedded function block",
                        start,
                        start + 2,
                        "embedded-code".into(),
                    );
                    None
                }
            };
        }
        for op in OPERATORS {
            if self.src[self.pos..].starts_with(op.as_bytes()) {
                self.pos += op.len();
                return Some(self.tok(Tok::Op(op), start));
            }
        }
        // stap's lexer makes any other ASCII punctuation an operator of its own, which
        // its parser then rejects where it stands.
        for op in ["`", "\\"] {
            if self.text[self.pos..].starts_with(op) {
                self.pos += 1;
                return Some(self.tok(Tok::Op(op), start));
            }
        }
        // Not a token at all: skip one whole character and say which.
        let ch = self.text[self.pos..].chars().next().unwrap_or('?');
        self.pos += ch.len_utf8().max(1);
        let shown = if ch.is_control() { '?' } else { ch };
        self.error(
            format!("unexpected character '{shown}'"),
            start,
            self.pos,
            format!("junk '{shown}'"),
        );
        None
    }

    fn tok(&self, tok: Tok, start: usize) -> Token {
        Token {
            tok,
            span: self.span(start, self.pos),
        }
    }

    fn number(&mut self) -> Token {
        let start = self.pos;
        while is_ident_cont(self.peek(0)) && self.peek(0) != b'$' {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        let parsed = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))
        {
            u64::from_str_radix(hex, 16).ok()
        } else if text.len() > 1 && text.starts_with('0') {
            u64::from_str_radix(&text[1..], 8).ok()
        } else {
            text.parse::<u64>().ok()
        };
        let value = match parsed {
            Some(v) => v as i64,
            None => {
                let what = format!("number '{text}'");
                self.error("number invalid or out of range", start, self.pos, what);
                0
            }
        };
        self.tok(Tok::Number(value), start)
    }

    fn string(&mut self) -> Token {
        let start = self.pos;
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            if self.pos >= self.src.len() {
                // stap's string runs to the end of the input: its words, and its
                // lexer's empty junk token (rendered with `at:`). Nothing follows.
                self.error(
                    "Could not find matching closing quote",
                    start,
                    start + 1,
                    "junk ''".into(),
                );
                break;
            }
            let c = self.src[self.pos];
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => self.escape(&mut bytes),
                _ => bytes.push(c),
            }
        }
        // The value becomes a C string literal in stap: an embedded NUL ends it.
        if let Some(nul) = bytes.iter().position(|&b| b == 0) {
            bytes.truncate(nul);
        }
        let s = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        self.tok(Tok::Str(s), start)
    }

    /// Processes one escape; the backslash has been consumed.
    fn escape(&mut self, out: &mut Vec<u8>) {
        let c = self.peek(0);
        if self.pos >= self.src.len() || c == b'\n' {
            out.push(b'\\');
            return;
        }
        self.pos += 1;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'\\' => out.push(b'\\'),
            b'0'..=b'7' => {
                let mut v: u32 = (c - b'0') as u32;
                for _ in 0..2 {
                    let d = self.peek(0);
                    if (b'0'..=b'7').contains(&d) {
                        v = v * 8 + (d - b'0') as u32;
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                out.push((v & 0xff) as u8);
            }
            // `\xHH`: stap keeps it for the C compiler, which reads the hex digits.
            b'x' if self.peek(0).is_ascii_hexdigit() => {
                let mut v: u32 = 0;
                for _ in 0..2 {
                    let d = self.peek(0);
                    match (d as char).to_digit(16) {
                        Some(h) => {
                            v = v * 16 + h;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            _ => {
                // stap's lexer passes only the C escapes above through to the C literal;
                // for any other character (`\"`, `\.`, `\e`...) it drops the backslash
                // and keeps the character, so "\e" is `e` and a regex needs "\\.".
                self.pos -= 1;
                let ch = self.text[self.pos..].chars().next().unwrap_or('?');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                self.pos += ch.len_utf8();
            }
        }
    }
}

/// Replaces non-printable characters by `?`, as stap does when it shows a token.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}
