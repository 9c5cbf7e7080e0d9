//! The SystemTap abstract syntax tree: items, statements, expressions, probe points.
//!
//! Every node carries a [`Span`]; every expression carries an [`ExprId`] unique within
//! one parse session, which the planner uses to say "this expression is captured in
//! field N of the record" and the runtime uses to find that field again.

/// Index of a source file in a `SourceMap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The smallest span covering both `self` and `other` (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Identity of one expression node, unique across all files of a parse session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExprId(pub u32);

/// A whole script (one or more files merged in order).
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Clone, Debug)]
pub enum Item {
    /// `probe POINTS { BODY }`
    Probe(ProbeDecl),
    /// `probe NAME = POINTS { BODY }` or `probe NAME += POINTS { BODY }`
    Alias(AliasDecl),
    /// `global a, b[100], c = 5`
    Global(GlobalDecl),
    /// `function name(a, b:string) : long { BODY }`
    Function(FunctionDecl),
    /// A top-level embedded-C block `%{ ... %}`; rejected at elaboration.
    Embedded(Span),
}

/// `probe POINTS { BODY }`
#[derive(Clone, Debug)]
pub struct ProbeDecl {
    /// The comma-separated probe points.
    pub points: Vec<ProbePoint>,
    /// The handler.
    pub body: Block,
    /// Whole declaration.
    pub span: Span,
}

/// One probe point such as `process("./a.out").function("f*").return ?`.
#[derive(Clone, Debug)]
pub struct ProbePoint {
    /// Dot-separated components.
    pub components: Vec<Component>,
    /// Trailing `?`: no error if it resolves to nothing.
    pub optional: bool,
    /// Trailing `!`: stop resolving the list once this one resolves.
    pub sufficient: bool,
    /// `if (EXPR)` condition.
    pub condition: Option<Expr>,
    /// Whole probe point.
    pub span: Span,
}

/// One component of a probe point: `function("f*")`, `return`, `ms(100)`.
#[derive(Clone, Debug)]
pub struct Component {
    /// The identifier, possibly with `*` wildcards (`sys*`, `**`).
    pub name: String,
    /// The parenthesised literal argument, if any.
    pub arg: Option<Literal>,
    /// Component span (name and argument).
    pub span: Span,
}

/// A literal in a probe point component or a global initialiser.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A number.
    Number(i64),
    /// A string (escapes already processed).
    String(String),
}

/// `probe NAME = POINTS { BODY }` (prologue) or `+=` (epilogue).
#[derive(Clone, Debug)]
pub struct AliasDecl {
    /// The alias names being defined (`probe a, b = ...`).
    pub names: Vec<ProbePoint>,
    /// `+=`: the alias body runs after the user's handler.
    pub epilogue: bool,
    /// What the alias expands to.
    pub points: Vec<ProbePoint>,
    /// The alias body.
    pub body: Block,
    /// Whole declaration.
    pub span: Span,
}

/// `global NAME [SIZE] [= INIT]`
#[derive(Clone, Debug)]
pub struct GlobalDecl {
    /// Variable name.
    pub name: String,
    /// Maximum entries for an array (`global a[100]`).
    pub size: Option<i64>,
    /// Initial value.
    pub init: Option<Literal>,
    /// Declaration span.
    pub span: Span,
}

/// A script-level type annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeName {
    /// `long`
    Long,
    /// `string`
    String,
}

/// A function parameter.
#[derive(Clone, Debug)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Declared type, if any.
    pub ty: Option<TypeName>,
    /// Span of the parameter.
    pub span: Span,
}

/// `function NAME(PARAMS) [: TYPE] BODY`
#[derive(Clone, Debug)]
pub struct FunctionDecl {
    /// Function name.
    pub name: String,
    /// Parameters.
    pub params: Vec<Param>,
    /// Declared return type.
    pub ret: Option<TypeName>,
    /// The body.
    pub body: FunctionBody,
    /// Whole declaration.
    pub span: Span,
}

/// A function's body.
#[derive(Clone, Debug)]
pub enum FunctionBody {
    /// Script statements.
    Script(Block),
    /// `%{ ... %}` embedded C; rejected at elaboration.
    EmbeddedC(Span),
}

/// `{ STMTS }`
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// Statements in order.
    pub stmts: Vec<Stmt>,
    /// Braces included.
    pub span: Span,
}

/// A statement with its span.
#[derive(Clone, Debug)]
pub struct Stmt {
    /// What statement.
    pub kind: StmtKind,
    /// Where.
    pub span: Span,
}

/// How `foreach` orders its iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortSpec {
    /// `None`: sort by value; `Some(i)`: by the i-th key (0-based).
    pub key: Option<usize>,
    /// `-` (true) or `+` (false).
    pub descending: bool,
    /// For a value sort of an aggregate array, the extractor named before the mark
    /// (`in a @sum-`); `None` sorts aggregates by `@count`, as stap does.
    pub aggregate: Option<StatOp>,
}

/// Statement kinds.
#[derive(Clone, Debug)]
pub enum StmtKind {
    /// `{ ... }`
    Block(Block),
    /// `EXPR;` (the semicolon is optional in SystemTap)
    Expr(Expr),
    /// `if (COND) THEN [else ELSE]`
    If {
        /// Condition.
        cond: Expr,
        /// Then branch.
        then: Box<Stmt>,
        /// Else branch.
        els: Option<Box<Stmt>>,
    },
    /// `while (COND) BODY`
    While {
        /// Condition.
        cond: Expr,
        /// Body.
        body: Box<Stmt>,
    },
    /// `for (INIT; COND; STEP) BODY`
    For {
        /// Initialiser.
        init: Option<Expr>,
        /// Condition (absent means true).
        cond: Option<Expr>,
        /// Step.
        step: Option<Expr>,
        /// Body.
        body: Box<Stmt>,
    },
    /// `foreach (VAL = [K1, K2] in ARRAY SORT limit N) BODY`, also `foreach (K in A)`.
    Foreach {
        /// Key variables (one per array dimension).
        keys: Vec<String>,
        /// `VAL =` binding, if any.
        value: Option<String>,
        /// The array being iterated (a global name).
        array: String,
        /// `in ARRAY[E, *, ...]`: only the elements whose keys equal the given
        /// expressions (`None` is `*`). Empty: the whole array.
        slice: Vec<Option<Expr>>,
        /// `foreach ([b] in @hist_log(x))`: the buckets of a histogram (an
        /// [`ExprKind::Stat`]); `array` is empty then.
        histogram: Option<Box<Expr>>,
        /// `+`/`-` on a key or the value.
        sort: Option<SortSpec>,
        /// `limit N`.
        limit: Option<Expr>,
        /// Body.
        body: Box<Stmt>,
    },
    /// `break`
    Break,
    /// `continue`
    Continue,
    /// `next`: leave the probe handler.
    Next,
    /// `return [EXPR]`
    Return(Option<Expr>),
    /// `delete EXPR` (array element, whole array, or scalar)
    Delete(Expr),
    /// `try { } catch [(VAR)] { }`
    Try {
        /// Protected block.
        body: Block,
        /// Variable receiving the error message.
        var: Option<String>,
        /// Handler block.
        catch: Block,
    },
    /// `;`
    Empty,
    /// Parse error placeholder.
    Error,
}

/// An expression node.
#[derive(Clone, Debug)]
pub struct Expr {
    /// Unique identity.
    pub id: ExprId,
    /// What expression.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-`
    Neg,
    /// `+`
    Plus,
    /// `!`
    Not,
    /// `~`
    BitNot,
    /// `&`: the address of a target expression (`&$x`, `&$p->f`, `&$a[3]`,
    /// `&@var("g")`, `&@cast(p, "t")->f`), a long. Other operands are errors at
    /// elaboration, as in stap.
    AddressOf,
}

/// Binary operators (the result of `.` is a string, `=~` a long).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `>>>` (logical)
    UShr,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `.` string concatenation
    Concat,
    /// `=~`
    Match,
    /// `!~`
    NotMatch,
}

/// Assignment operators; `Assign(None)` is plain `=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    /// `=`
    Set,
    /// `+= -= *= /= %= <<= >>= &= |= ^= .=`
    Compound(BinaryOp),
    /// `<<<` (statistics aggregate)
    Aggregate,
}

/// Statistics extractors `@count(x)` etc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatOp {
    /// `@count`
    Count,
    /// `@sum`
    Sum,
    /// `@min`
    Min,
    /// `@max`
    Max,
    /// `@avg`
    Avg,
    /// `@variance`
    Variance,
    /// `@hist_log`
    HistLog,
    /// `@hist_linear(x, lo, hi, step)`
    HistLinear,
}

/// One step of a target-variable path: `->name`, `.name` or `[EXPR]`.
#[derive(Clone, Debug)]
pub enum TargetStep {
    /// `->name` or `.name` (SystemTap does not distinguish).
    Member(String, Span),
    /// `[EXPR]`
    Index(Box<Expr>),
}

/// A DWARF-described value: `$x`, `$p->a->b[3]`, `$$parms`, `$var$`, `$$return`.
#[derive(Clone, Debug)]
pub struct TargetExpr {
    /// The name without its leading `$`: `x`, `return`, or for `$$parms` the name
    /// `$parms` (that is, `$$parms` keeps one `$`).
    pub name: String,
    /// Member and index steps.
    pub path: Vec<TargetStep>,
    /// Pretty printing suffix: 0 none, 1 for `$`, 2 for `$$`.
    pub pretty: u8,
}

/// Expression kinds.
#[derive(Clone, Debug)]
pub enum ExprKind {
    /// Integer literal.
    Number(i64),
    /// String literal (escapes processed).
    String(String),
    /// A local or global variable.
    Var(String),
    /// `$1` (`as_string` false) or `@1` (true).
    ScriptArg {
        /// 1-based index.
        index: u32,
        /// `@N` form.
        as_string: bool,
    },
    /// `$#` / `@#`: number of script arguments.
    ArgCount,
    /// `ARRAY[K1, K2]`
    Index {
        /// Array name.
        array: String,
        /// Keys.
        keys: Vec<Expr>,
    },
    /// `name(ARGS)`
    Call {
        /// Function name.
        name: String,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// `$x->a[3]` and friends.
    Target(TargetExpr),
    /// `@cast(EXPR, "type" [, "module"])->path`
    Cast {
        /// The address expression.
        expr: Box<Expr>,
        /// The type name, e.g. `struct task`.
        type_name: String,
        /// Module to look the type up in.
        module: Option<String>,
        /// Steps after the cast.
        path: Vec<TargetStep>,
        /// Pretty suffix as in [`TargetExpr::pretty`].
        pretty: u8,
    },
    /// `@var("name" [, "module"])->path`
    GlobalVar {
        /// The variable name (may be `name@file.c`).
        name: String,
        /// Module.
        module: Option<String>,
        /// Steps.
        path: Vec<TargetStep>,
    },
    /// `@entry(EXPR)` in a return probe.
    Entry(Box<Expr>),
    /// `@defined(EXPR)`
    Defined(Box<Expr>),
    /// `@probewrite(VAR)`
    ProbeWrite(String),
    /// `@count(x)` ... `@hist_linear(x, lo, hi, step)`
    Stat {
        /// Which extractor.
        op: StatOp,
        /// The aggregate (a `Var` or `Index`).
        expr: Box<Expr>,
        /// Extra arguments (`@hist_linear`'s lo, hi, step).
        args: Vec<Expr>,
    },
    /// Unary operator.
    Unary {
        /// Operator.
        op: UnaryOp,
        /// Operand.
        expr: Box<Expr>,
    },
    /// Binary operator.
    Binary {
        /// Operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `COND ? A : B`
    Ternary {
        /// Condition.
        cond: Box<Expr>,
        /// Value if true.
        then: Box<Expr>,
        /// Value if false.
        els: Box<Expr>,
    },
    /// Assignment; `target` is a `Var` or `Index`.
    Assign {
        /// Operator.
        op: AssignOp,
        /// Left side.
        target: Box<Expr>,
        /// Right side.
        value: Box<Expr>,
    },
    /// `++x`, `x--`, ...
    IncDec {
        /// Prefix form.
        prefix: bool,
        /// `++` (true) or `--`.
        increment: bool,
        /// The variable or element.
        target: Box<Expr>,
    },
    /// `[K1, K2] in ARRAY` or `K in ARRAY`
    In {
        /// Keys.
        keys: Vec<Expr>,
        /// Array name.
        array: String,
    },
    /// `@hist_log(x)[N]` / `@hist_linear(x, lo, hi, step)[N]`: the count in bucket N,
    /// numbered as stap's runtime numbers them.
    HistBucket {
        /// The `@hist_*` expression (an [`ExprKind::Stat`]).
        hist: Box<Expr>,
        /// The bucket number.
        index: Box<Expr>,
    },
    /// `*` as an array index in `delete a[*, k]` and `[*, k] in a`: any value matches.
    /// Anywhere else it is an elaboration error.
    Wildcard,
    /// Parse error placeholder.
    Error,
}
