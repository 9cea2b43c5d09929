"""A small, safe expression language for the ``math`` node.

``expr: "tanh(3 * a) * (1 - b) + 0.2 * sin(2 * pi * 3 * t)"``

Never ``eval``: the text goes through a tokenizer and a recursive-descent
parser into a tree of numbers, names, operators and function calls, which
compiles into a register program that a numba kernel runs over each block
(:func:`nodes.dsp._control.expr_run`). A mistake is a
:class:`~patchlib.errors.PatchError` that names the position and what was
expected there.

Grammar (lowest precedence first)::

    expr       := comparison
    comparison := additive (('<' | '<=' | '>' | '>=' | '==' | '!=') additive)*
    additive   := term (('+' | '-') term)*
    term       := unary (('*' | '/' | '%') unary)*
    unary      := ('-' | '+') unary | power
    power      := atom (('**' | '^') unary)?          # right-associative
    atom       := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

So ``-2 ** 2`` is -4 and ``2 ** 3 ** 2`` is 512, as in Python. Names:
inputs ``a``, ``b``, ``c``, ``d`` (0 when unconnected), ``t`` (time in
seconds), ``sr`` (sample rate), constants ``pi``, ``tau``, ``e``.
Comparisons give 1 or 0; ``if(c, x, y)`` is ``x`` where ``c`` is not 0.

Safe arithmetic: a division (or ``%``) by 0 gives 0, ``log`` and friends
floor their input at 1e-30, ``sqrt`` at 0, ``exp`` stops at e**700, and
every intermediate result is clamped to +-1e30 with NaN made 0, so an
expression can never produce NaN or inf, whatever its inputs.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from patchlib.errors import PatchError, Where, suggest

from . import _control as K

#: longest expression accepted (characters) and deepest nesting
MAX_LENGTH = 2000
MAX_DEPTH = 60
MAX_NODES = 400  # also bounds the recursion of folding and compiling a left-deep chain

NAMES = {"a": K.R_A, "b": K.R_B, "c": K.R_C, "d": K.R_D, "t": K.R_T}
CONSTANTS = {"pi": math.pi, "tau": 2.0 * math.pi, "e": math.e}

#: name -> (opcode, arity); min/max take 2 or more (folded pairwise)
FUNCTIONS = {
    "sin": (K.E_SIN, 1), "cos": (K.E_COS, 1), "tan": (K.E_TAN, 1), "tanh": (K.E_TANH, 1),
    "sinh": (K.E_SINH, 1), "cosh": (K.E_COSH, 1), "asin": (K.E_ASIN, 1), "acos": (K.E_ACOS, 1),
    "atan": (K.E_ATAN, 1), "atan2": (K.E_ATAN2, 2), "hypot": (K.E_HYPOT, 2),
    "exp": (K.E_EXP, 1), "log": (K.E_LOG, 1), "log2": (K.E_LOG2, 1), "log10": (K.E_LOG10, 1),
    "sqrt": (K.E_SQRT, 1), "abs": (K.E_ABS, 1), "floor": (K.E_FLOOR, 1), "ceil": (K.E_CEIL, 1),
    "round": (K.E_ROUND, 1), "sign": (K.E_SIGN, 1), "frac": (K.E_FRAC, 1),
    "min": (K.E_MIN, -2), "max": (K.E_MAX, -2), "pow": (K.E_POW, 2),
    "clip": (K.E_CLIP, 3), "mix": (K.E_MIX, 3), "lerp": (K.E_MIX, 3), "if": (K.E_IF, 3),
    "mtof": (K.E_MTOF, 1), "ftom": (K.E_FTOM, 1), "db2amp": (K.E_DBAMP, 1), "amp2db": (K.E_AMPDB, 1),
}
BINARY = {"+": K.E_ADD, "-": K.E_SUB, "*": K.E_MUL, "/": K.E_DIV, "%": K.E_MOD, "**": K.E_POW, "^": K.E_POW,
          "<": K.E_LT, "<=": K.E_LE, ">": K.E_GT, ">=": K.E_GE, "==": K.E_EQ, "!=": K.E_NE}
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|<=|>=|==|!=|[-+*/%^<>(),])
""", re.VERBOSE | re.ASCII)

OPERAND = "a number, an input (a, b, c, d, t, sr), a function call or '('"


@dataclass(frozen=True)
class Token:
    kind: str  # num | name | op | end
    text: str
    pos: int  # 0-based character offset


@dataclass(frozen=True)
class Term:
    """A node of the syntax tree: ``num`` (value), ``var`` (register), ``op`` (opcode, args)."""

    kind: str
    pos: int
    value: float = 0.0
    reg: int = 0
    op: int = 0
    args: tuple = ()


def _error(text, pos, message, key="expr"):
    """A PatchError naming the 1-based position, with the text and a caret under it."""
    shown = text if len(text) <= 120 else text[:120] + "..."
    caret = " " * min(pos, 121) + "^"
    return PatchError(f"expr: {message} at position {pos + 1}", Where(key=key),
                      hint=f"\n    {shown}\n    {caret}")


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; an unknown character is a PatchError."""
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            ch = text[pos]
            raise _error(text, pos, f"unexpected character {ch!r}")
        kind = m.lastgroup
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0
        self.count = 0

    # ---- helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def found(self, t: Token) -> str:
        return "the end of the expression" if t.kind == "end" else repr(t.text)

    def fail(self, t: Token, expected: str):
        raise _error(self.text, t.pos, f"expected {expected}, found {self.found(t)}")

    def node(self, **kw) -> Term:
        self.count += 1
        if self.count > MAX_NODES:
            raise _error(self.text, kw.get("pos", 0), f"expression too long (more than {MAX_NODES} terms)")
        return Term(**kw)

    def enter(self, t: Token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(self.text, t.pos, f"expression nested too deeply (more than {MAX_DEPTH} levels)")

    # ---- grammar
    def parse(self) -> Term:
        if not self.text.strip():
            raise _error(self.text, 0, f"expected {OPERAND}, found an empty expression")
        tree = self.expr()
        if self.tok.kind != "end":
            t = self.tok
            if t.text == ")":
                raise _error(self.text, t.pos, "unbalanced ')': no '(' before it")
            self.fail(t, "an operator (+ - * / % ** < > == ...) or the end of the expression")
        return tree

    def expr(self) -> Term:
        return self.binary(0)

    LEVELS = (COMPARISONS, ("+", "-"), ("*", "/", "%"))

    def binary(self, level) -> Term:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.tok.kind == "op" and self.tok.text in self.LEVELS[level]:
            t = self.take()
            right = self.binary(level + 1)
            left = self.node(kind="op", pos=t.pos, op=BINARY[t.text], args=(left, right))
        return left

    def unary(self) -> Term:
        t = self.tok
        if t.kind == "op" and t.text in ("-", "+"):
            self.take()
            self.enter(t)
            inner = self.unary()
            self.depth -= 1
            return inner if t.text == "+" else self.node(kind="op", pos=t.pos, op=K.E_NEG, args=(inner,))
        return self.power()

    def power(self) -> Term:
        base = self.atom()
        if self.tok.kind == "op" and self.tok.text in ("**", "^"):
            t = self.take()
            self.enter(t)
            expo = self.unary()
            self.depth -= 1
            return self.node(kind="op", pos=t.pos, op=K.E_POW, args=(base, expo))
        return base

    def atom(self) -> Term:
        t = self.tok
        if t.kind == "num":
            self.take()
            v = float(t.text)
            if not math.isfinite(v) or abs(v) > K.BIG:
                raise _error(self.text, t.pos, f"number {t.text} is too large (the limit is 1e30)")
            return self.node(kind="num", pos=t.pos, value=v)
        if t.kind == "name":
            self.take()
            name = t.text
            if self.tok.kind == "op" and self.tok.text == "(":
                return self.call(t)
            if name in FUNCTIONS:
                self.fail(self.tok, f"'(' after the function name '{name}'")
            if name in NAMES:
                return self.node(kind="var", pos=t.pos, reg=NAMES[name])
            if name == "sr":
                return self.node(kind="var", pos=t.pos, reg=-1)
            if name in CONSTANTS:
                return self.node(kind="num", pos=t.pos, value=CONSTANTS[name])
            hint = suggest(name, list(NAMES) + ["sr"] + list(CONSTANTS) + list(FUNCTIONS))
            raise _error(self.text, t.pos, f"unknown name '{name}' (inputs are a, b, c, d, t, sr; "
                         f"constants pi, tau, e{'; ' + hint if hint else ''})")
        if t.kind == "op" and t.text == "(":
            self.take()
            self.enter(t)
            inner = self.expr()
            self.depth -= 1
            if not (self.tok.kind == "op" and self.tok.text == ")"):
                self.fail(self.tok, f"')' to close the '(' at position {t.pos + 1}")
            self.take()
            return inner
        self.fail(t, OPERAND)

    def call(self, name_tok: Token) -> Term:
        name = name_tok.text
        if name not in FUNCTIONS:
            hint = suggest(name, FUNCTIONS)
            raise _error(self.text, name_tok.pos, f"unknown function '{name}'"
                         + (f" ({hint})" if hint else f" (functions: {', '.join(sorted(FUNCTIONS))})"))
        op, arity = FUNCTIONS[name]
        open_tok = self.take()  # '('
        self.enter(open_tok)
        args = []
        if self.tok.kind == "op" and self.tok.text == ")":
            pass
        else:
            while True:
                args.append(self.expr())
                if self.tok.kind == "op" and self.tok.text == ",":
                    self.take()
                    continue
                break
        if not (self.tok.kind == "op" and self.tok.text == ")"):
            self.fail(self.tok, f"',' or ')' in the call of {name}() at position {name_tok.pos + 1}")
        self.take()
        self.depth -= 1
        if arity < 0:
            if len(args) < -arity:
                raise _error(self.text, name_tok.pos, f"{name}() takes at least {-arity} arguments, got {len(args)}")
            tree = args[0]
            for a in args[1:]:
                tree = self.node(kind="op", pos=name_tok.pos, op=op, args=(tree, a))
            return tree
        if len(args) != arity:
            plural = "s" if arity != 1 else ""
            raise _error(self.text, name_tok.pos, f"{name}() takes {arity} argument{plural}, got {len(args)}")
        return self.node(kind="op", pos=name_tok.pos, op=op, args=tuple(args))


def parse(text) -> Term:
    """Parse an expression into its syntax tree; any mistake is a PatchError."""
    if not isinstance(text, str):
        raise PatchError(f"expr: an expression is text, got {type(text).__name__} {text!r}", Where(key="expr"))
    if len(text) > MAX_LENGTH:
        raise PatchError(f"expr: expression too long ({len(text)} characters; the limit is {MAX_LENGTH})",
                         Where(key="expr"))
    return _Parser(text).parse()


# ---------------------------------------------------------------- compiling
class Program:
    """A compiled expression: a register program and its register pool.

    Attributes:
        prog: int64 ``(K, 5)`` instructions ``[opcode, dst, x, y, z]``.
        consts: float64 ``(K,)`` values of the CONST instructions.
        regs: int, registers needed (inputs included).
        uses: the input names the expression reads.
    """

    def __init__(self, text: str, sample_rate: float = 48000.0):
        self.text = text
        self.sample_rate = float(sample_rate)
        tree = parse(text)
        self._code: list[tuple] = []
        self._consts: list[float] = []
        self._next = K.N_INPUT_REGS
        self.uses: set[str] = set()
        res = self._emit(self._fold(tree))
        if res < K.N_INPUT_REGS or not self._code:  # the result must be a register of its own
            self._code.append((K.E_COPY, self._new(), res, 0, 0))
            self._consts.append(0.0)
        self.prog = np.array(self._code, dtype=np.int64).reshape(-1, 5)
        self.consts = np.array(self._consts, dtype=np.float64)
        self.regs = self._next

    def _new(self) -> int:
        r = self._next
        self._next += 1
        return r

    def _fold(self, node: Term) -> Term:
        """Constant folding: a subtree without inputs becomes its value (same kernel, same result)."""
        if node.kind == "var" and node.reg == -1:
            return Term("num", node.pos, value=self.sample_rate)
        if node.kind != "op":
            return node
        args = tuple(self._fold(a) for a in node.args)
        node = Term("op", node.pos, op=node.op, args=args)
        if all(a.kind == "num" for a in args):
            return Term("num", node.pos, value=evaluate_scalar(node))
        return node

    def _emit(self, node: Term) -> int:
        if node.kind == "var":
            self.uses.add("abcdt"[node.reg])
            return node.reg
        if node.kind == "num":
            r = self._new()
            self._code.append((K.E_CONST, r, 0, 0, 0))
            self._consts.append(node.value)
            return r
        srcs = [self._emit(a) for a in node.args] + [0, 0]
        r = self._new()
        self._code.append((node.op, r, srcs[0], srcs[1], srcs[2]))
        self._consts.append(0.0)
        return r

    def pool(self, block_size: int) -> np.ndarray:
        """The register pool for blocks of ``block_size`` samples."""
        return np.zeros((self.regs, block_size), dtype=np.float64)

    def __call__(self, a=0.0, b=0.0, c=0.0, d=0.0, t=0.0) -> np.ndarray:
        """Evaluate on arrays (or numbers) for tests and tools: returns float64 of the broadcast shape."""
        arrs = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c, d, t)))
        shape = arrs[0].shape
        flat = [x.reshape(-1) for x in arrs]
        n = flat[0].size
        regs = self.pool(max(n, 1))
        for k, x in enumerate(flat):
            regs[k, :n] = x
        K.expr_run(self.prog, self.consts, regs, n)
        return regs[self.prog[-1, 1], :n].reshape(shape).copy()


def evaluate_scalar(node: Term) -> float:
    """Value of a constant subtree (children already numbers), through the kernel itself."""
    regs = np.zeros((4, 1), dtype=np.float64)
    for k, a in enumerate(node.args):
        regs[k, 0] = a.value
    prog = np.array([[node.op, 3, 0, 1, 2]], dtype=np.int64)
    K.expr_run(prog, np.zeros(1), regs, 1)
    return float(regs[3, 0])


def compile_expr(text: str, sample_rate: float = 48000.0) -> Program:
    """Parse and compile an expression (a PatchError if it is not valid)."""
    return Program(text, sample_rate)
