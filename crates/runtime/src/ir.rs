//! The compiled form of a script: names resolved to slots, types fixed, formats and
//! regexes parsed. Built once by `compile`, walked by `exec` for every record.

use crate::format::Piece;
use crate::stats::HistSpec;

/// Index into the table of token descriptions used in error messages
/// (`identifier 'x' at f.stp:3:5`).
pub(crate) type Tok = u32;

/// A script value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// 64-bit integer.
    Long,
    /// String.
    Str,
    /// Statistics aggregate (globals and array values only).
    Stats,
}

impl Ty {
    /// stap's name for the type.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Long => "long",
            Ty::Str => "string",
            Ty::Stats => "stats",
        }
    }
}

/// A scalar variable: a local slot of the current frame or a global slot. The slot
/// indexes the storage of the variable's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarRef {
    /// Local slot.
    Local(u32),
    /// Global slot.
    Global(u32),
}

/// Something that can be assigned.
#[derive(Debug)]
pub(crate) enum LVal {
    /// A scalar.
    Var(VarRef),
    /// An array element.
    Elem {
        /// Array slot.
        arr: u32,
        /// Key expressions.
        keys: Vec<(Ex, Ty)>,
    },
}

/// An aggregate reference (`x` or `a[k]` of a stats global).
#[derive(Debug)]
pub(crate) enum AggRef {
    /// Scalar stats global slot.
    Scalar(u32),
    /// Element of a stats array.
    Elem {
        /// Array slot.
        arr: u32,
        /// Keys.
        keys: Vec<(Ex, Ty)>,
    },
}

/// Long binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Shl,
    Shr,
    UShr,
    And,
    Or,
    Xor,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `@count` etc. (histograms are printed, not evaluated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Variance(u32),
}

/// Built-in functions evaluated by the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    /// `usymname(addr)`, `print_ustack(stk)`, `sprint_ufolded(stk)`...
    Ustack(crate::ustack::UFn),
    Pid,
    Tid,
    Ppid,
    Execname,
    Uaddr,
    Cpu,
    Probefunc,
    Pp,
    /// `gettimeofday_*`: the divisor of nanoseconds.
    Time(u64),
    Target,
    Exit,
    Error,
    Warn,
    Log,
    Strlen,
    Substr,
    Isinstr,
    Strtol,
    StrReplace,
    Tokenize,
    TextStr,
    TextStrn,
    StringQuoted,
    Stringat,
    Isdigit,
    Toupper,
    Tolower,
    Abs,
    Randint,
    Matched,
    /// `string(n)` / `sprint(n)` of a long.
    LongToString,
    Ascii,
    /// `ctime(secs)`: `Wed Jun 30 21:49:08 1993` (UTC).
    Ctime,
    /// `tz_gmtoff()`: seconds west of UTC, found at startup.
    TzGmtoff,
    /// `tz_name()`: the local zone's abbreviation, found at startup.
    TzName,
    /// `tz_ctime(secs)`: `ctime` in the local zone, followed by the zone's name.
    TzCtime,
    /// `system(cmd)`: run `sh -c cmd` once the current handler has completed.
    System,
    /// `strpos(s1, s2)`: byte offset of `s2` in `s1`, or -1.
    Strpos,
    /// `assert(cond)` / `assert(cond, msg)`: error() unless `cond`.
    Assert,
    /// `matched_str()`: `matched(0)`.
    MatchedStr,
    /// `msecs_to_string`, `usecs_to_string`, `nsecs_to_string`: `%dm%d.%.Nds` with this
    /// many units per second.
    DurationString(i64),
    /// `is_return()`: the site is a `.return` probe.
    IsReturn,
    /// `abort()`: stop at once, skipping end probes.
    Abort,
    /// `thread_indent(delta)`.
    ThreadIndent,
    /// `indent(delta)`.
    Indent,
    /// `errno_str(err)`: `EPERM` for 1 or -1, empty when unknown.
    ErrnoStr,
    /// `errno_p(err)`: `|err|` when it names an errno, else 0.
    ErrnoP,
    /// `return_str(format, ret)`: `-2 (ENOENT)`, else decimal, `0x..` (2) or octal (3).
    ReturnStr,
    /// The `ansi_*` functions of stap's `ansi.stp`, by [`AnsiFn`].
    Ansi(AnsiFn),
    /// `user_mode()`: 1 in a handler of a user-space site, 0 in begin/end/timer.
    UserMode,
    /// `is_myproc()`: the record's process is the target.
    IsMyproc,
    /// `stp_pid()`: the pid of the tracer (stap's stapio; here snaptap).
    StpPid,
    /// `remote_id()`: -1 (no `--remote` session).
    RemoteId,
    /// `remote_uri()`: empty (no `--remote` session).
    RemoteUri,
    /// `pn()`: the probe point as the script wrote it.
    Pn,
    /// `thread_indent_depth(delta)` (true) / `indent_depth(delta)`: the depth the
    /// matching `*indent` call would indent by, sharing its counters.
    IndentDepth(bool),
    /// `print_char(c)`: one byte of output.
    PrintChar,
    /// Process context read from `/proc` when the handler runs, and stap's pure
    /// tapset helpers (`bytes_to_string`, `signal_str`...): see [`crate::tapfns`].
    Ctx(crate::tapfns::CtxFn),
}

/// The escape sequences written by stap's `ansi.stp` functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnsiFn {
    ClearScreen,
    SetColor,
    SetColor2,
    SetColor3,
    ResetColor,
    NewLine,
    CursorMove,
    CursorHide,
    CursorSave,
    CursorRestore,
    CursorShow,
}

/// How `print` family calls lay out their arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrintKind {
    /// `print`
    Print,
    /// `println`
    Println,
    /// `printd(delim, ...)`
    Printd,
    /// `printdln(delim, ...)`
    Printdln,
}

/// A typed expression. Which evaluator runs it (long or string) is decided by its type.
#[derive(Debug)]
pub(crate) enum Ex {
    Num(i64),
    Str(String),
    Var(VarRef),
    /// Array element read; a missing element reads as 0 / "".
    Index {
        arr: u32,
        keys: Vec<(Ex, Ty)>,
    },
    /// `[k] in a`.
    In {
        arr: u32,
        keys: Vec<(Ex, Ty)>,
    },
    /// `[*, k] in a`: some element matches the given keys (None: any).
    InSlice {
        arr: u32,
        keys: Vec<Option<(Ex, Ty)>>,
    },
    /// A value captured in the record (`$x`, `user_string($p)`, ...): dense capture slot.
    Capture {
        cap: u32,
        tok: Tok,
        /// For faults: stap's wording depends on the function (user_string vs deref).
        fault: FaultKind,
        /// `user_string2(p, "alt")` and the `_warn` variants return this on a fault
        /// instead of failing.
        fallback: Option<Box<Ex>>,
    },
    /// `@defined(e)` on a target expression: whether this site captured it.
    Defined(u32),
    /// `ubacktrace()`, `print_ubacktrace()`, `ucallers(n)`...: the site's stack capture
    /// (dense slot, `None` where the probe has none), unwound by the driver's stacks.
    UStack {
        f: crate::ustack::UFn,
        cap: Option<u32>,
        arg: Option<Box<Ex>>,
        tok: Tok,
    },
    /// User function call.
    Call {
        func: u32,
        args: Vec<(Ex, Ty)>,
        tok: Tok,
    },
    Builtin {
        f: Builtin,
        args: Vec<(Ex, Ty)>,
        tok: Tok,
    },
    /// printf (to output) or sprintf (value).
    Printf {
        fmt: Vec<Piece>,
        args: Vec<(Ex, Ty)>,
    },
    Print {
        kind: PrintKind,
        args: Vec<(Ex, Ty)>,
    },
    /// `print(@hist_log(x))` and friends.
    PrintHist {
        agg: AggRef,
        spec: HistSpec,
        tok: Tok,
    },
    /// `@hist_log(x)[N]`: the count in bucket N.
    HistBucket {
        agg: AggRef,
        spec: HistSpec,
        idx: Box<Ex>,
        tok: Tok,
    },
    Stat {
        f: StatFn,
        agg: AggRef,
        tok: Tok,
    },
    Neg(Box<Ex>),
    Not(Box<Ex>),
    BitNot(Box<Ex>),
    Bin {
        op: LOp,
        l: Box<Ex>,
        r: Box<Ex>,
        tok: Tok,
    },
    LAnd(Box<Ex>, Box<Ex>),
    LOr(Box<Ex>, Box<Ex>),
    CmpL(Cmp, Box<Ex>, Box<Ex>),
    CmpS(Cmp, Box<Ex>, Box<Ex>),
    Concat(Box<Ex>, Box<Ex>),
    Match {
        re: u32,
        s: Box<Ex>,
        negate: bool,
    },
    Cond(Box<Ex>, Box<Ex>, Box<Ex>),
    /// Plain or compound assignment; `op` None is `=`; `Some` of a long op, or string
    /// concatenation for `.=` (flagged by `concat`).
    Assign {
        lv: LVal,
        ty: Ty,
        op: Option<LOp>,
        concat: bool,
        val: Box<Ex>,
        tok: Tok,
    },
    IncDec {
        lv: LVal,
        delta: i64,
        prefix: bool,
        tok: Tok,
    },
    /// `agg <<< val`.
    AggAdd {
        agg: AggRef,
        val: Box<Ex>,
        tok: Tok,
    },
    /// An expression that fails at run time with a fixed message (e.g. a target
    /// expression with no capture anywhere).
    Fail {
        msg: String,
        tok: Tok,
    },
}

/// Which stap message a faulted capture produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// A target variable dereference.
    Deref,
    /// `user_string*`.
    UserString,
    /// `kernel_string*`.
    KernelString,
    /// `user_long` and friends: a read of a fixed size.
    UserRead,
    /// `user_string_warn` and friends: warn, then use the fallback.
    Warn,
    /// `user_string_utf16` (2) / `_utf32` (4), `kernel_*` when true: raw code units
    /// the runtime decodes.
    Wide(u8, bool),
    /// `user_long_warn` and friends: warn `user WHAT %p [man error::fault]`, give 0.
    WarnRead(&'static str),
}

/// How `foreach` orders.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sort {
    /// None: by value; Some(i): by key i.
    pub(crate) key: Option<usize>,
    /// Descending.
    pub(crate) desc: bool,
    /// For a value sort of an aggregate array: the extractor compared.
    pub(crate) agg: StatFn,
}

/// A compiled statement.
#[derive(Debug)]
pub(crate) enum St {
    Expr(Ex, Ty, Tok),
    Block(Vec<St>),
    If(Ex, Box<St>, Option<Box<St>>, Tok),
    While(Ex, Box<St>, Tok),
    For {
        init: Option<(Ex, Ty)>,
        cond: Option<Ex>,
        step: Option<(Ex, Ty)>,
        body: Box<St>,
        tok: Tok,
    },
    Foreach {
        arr: u32,
        keys: Vec<(VarRef, Ty)>,
        val: Option<(VarRef, Ty)>,
        /// `in a[E, *]`: the key values required (None: any). Empty: no slice.
        slice: Vec<Option<(Ex, Ty)>>,
        sort: Option<Sort>,
        limit: Option<Ex>,
        body: Box<St>,
        tok: Tok,
    },
    /// `foreach ([b] in @hist_log(x))`: every bucket number (and count) in order.
    ForeachHist {
        agg: AggRef,
        spec: HistSpec,
        key: VarRef,
        val: Option<VarRef>,
        sort: Option<Sort>,
        limit: Option<Ex>,
        body: Box<St>,
        tok: Tok,
    },
    Break(Tok),
    Continue(Tok),
    Next(Tok),
    Return(Option<(Ex, Ty)>, Tok),
    /// Delete a scalar (reset), an element, or a whole array.
    DelVar(VarRef, Ty, Tok),
    DelElem(u32, Vec<(Ex, Ty)>, Tok),
    /// `delete a[*, k]`: every element matching the given keys (None: any).
    DelSlice(u32, Vec<Option<(Ex, Ty)>>, Tok),
    DelArray(u32, Tok),
    Try {
        body: Box<St>,
        var: Option<VarRef>,
        catch: Box<St>,
    },
    Nop,
}

/// Sizes of a frame's local storage.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FrameSize {
    pub(crate) longs: u32,
    pub(crate) strs: u32,
}

/// A compiled user function.
#[derive(Debug)]
pub(crate) struct Func {
    /// Parameter slots (locals of the callee) with their types.
    pub(crate) params: Vec<(u32, Ty)>,
    pub(crate) frame: FrameSize,
    pub(crate) body: St,
}

/// What kind of probe a handler belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Begin,
    End,
    Error,
    Timer,
    /// A probe on target sites (runs on records).
    Site,
}

/// A compiled probe handler.
#[derive(Debug)]
pub(crate) struct Handler {
    /// Kind of the first probe point (decides MAXACTION_INTERRUPTIBLE).
    pub(crate) kind: ProbeKind,
    /// Kinds of all its probe points (`probe begin, end` is both).
    pub(crate) kinds: Vec<ProbeKind>,
    pub(crate) frame: FrameSize,
    pub(crate) cond: Option<Ex>,
    pub(crate) body: St,
}

/// Storage kind of a global.
#[derive(Clone, Debug)]
pub(crate) enum GlobalKind {
    /// Scalar of this type at this slot of the type's storage.
    Scalar(Ty, u32),
    /// Array at this slot.
    Array(u32),
}

/// A global as needed at run time (for auto-printing).
#[derive(Clone, Debug)]
pub(crate) struct GlobalMeta {
    pub(crate) name: String,
    pub(crate) kind: GlobalKind,
    /// Written somewhere and never read: printed at the end, as stap does.
    pub(crate) autoprint: bool,
}

/// A global array's static description.
#[derive(Clone, Debug)]
pub(crate) struct ArrayMeta {
    pub(crate) keys: Vec<Ty>,
    pub(crate) val: Ty,
    /// Maximum entries (declared size or MAXMAPENTRIES).
    pub(crate) max: usize,
    /// Whether the size was declared (changes the overflow message).
    pub(crate) declared: bool,
    pub(crate) hist: HistSpec,
    pub(crate) shift: u32,
}

/// A scalar stats global's static description.
#[derive(Clone, Debug)]
pub(crate) struct StatMeta {
    pub(crate) hist: HistSpec,
    pub(crate) shift: u32,
}

/// Initial value of a scalar global.
#[derive(Clone, Debug)]
pub(crate) enum Init {
    L(u32, i64),
    S(u32, String),
}

/// The whole compiled program.
#[derive(Debug)]
pub(crate) struct Program {
    pub(crate) handlers: Vec<Handler>,
    pub(crate) funcs: Vec<Func>,
    pub(crate) globals: Vec<GlobalMeta>,
    pub(crate) arrays: Vec<ArrayMeta>,
    pub(crate) stats: Vec<StatMeta>,
    pub(crate) n_glong: u32,
    pub(crate) n_gstr: u32,
    pub(crate) inits: Vec<Init>,
    pub(crate) regexes: Vec<regex::Regex>,
    pub(crate) toks: Vec<String>,
    /// Dense capture slot -> expression id.
    pub(crate) capture_ids: Vec<u32>,
    /// The declarations `stap -p2` lists.
    pub(crate) elab: crate::Elaboration,
}
