"""What a written-down formula may be, checked on Python's own parse of it before SymPy sees it:
arithmetic, named functions, variables and numbers of a sane size, nothing else."""

from __future__ import annotations

import ast
import functools
import math

import numpy as np

from gradexp.errors import ConfigError

LARGEST = 1e300  # a constant beyond this would overflow float64 on its first use
MATH = {"sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "log": math.log,
        "sqrt": math.sqrt, "tanh": math.tanh, "sinh": math.sinh, "cosh": math.cosh,
        "atan": math.atan, "asin": math.asin, "acos": math.acos, "abs": abs, "Abs": abs,
        "Max": max, "Min": min}  # fmt: skip
CONSTANTS = {"pi": math.pi, "E": math.e}
OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
             ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
             ast.Pow: math.pow}  # fmt: skip
PYTHON = {ast.IfExp: "`if … else` is Python, not a formula", ast.Compare: "a comparison is "
          "not a formula", ast.BoolOp: "`and`/`or` are Python, not a formula",
          ast.Lambda: "a lambda is Python, not a formula"}  # fmt: skip


def check(text: str, functions) -> None:
    """Raise a ConfigError naming `expression` unless the text is arithmetic (+ - * / ** ^),
    calls of `functions`, variables and numbers; and unless every constant part of it (9**9**9,
    exp(1000), x/0, sqrt(-1)) is a finite real number SymPy can hold without hanging."""
    shown = repr(text)
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as e:
        raise ConfigError("expression", shown, f"is not a formula ({e.msg})") from None
    for node in ast.walk(tree):
        why = _refused(node, functions)
        if why:
            raise ConfigError("expression", shown, why)
    _fold(tree.body, shown)


def _refused(node: ast.AST, functions) -> str | None:
    if type(node) in PYTHON:
        return PYTHON[type(node)]
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in functions or node.keywords:
            known = ", ".join(sorted(f for f in functions if f in MATH))
            return f"calls {ast.unparse(node.func)}(…), an unknown function; use one of {known}"
        return None
    if isinstance(node, ast.BinOp) and type(node.op) not in OPERATORS:
        return f"uses the operator {type(node.op).__name__}; use + - * / ** ^"
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.USub | ast.UAdd):
        return f"uses the operator {type(node.op).__name__}; use + - * / ** ^"
    if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or
                                           not isinstance(node.value, int | float)):  # fmt: skip
        return f"holds {node.value!r}, which is not a real number"
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant,
               ast.Load, ast.operator, ast.unaryop)  # fmt: skip
    return None if isinstance(node, allowed) else f"holds {type(node).__name__}, not arithmetic"


def _fold(node: ast.AST, shown: str) -> float | None:
    """The value of a constant part, in floats (never SymPy's exact integers: 9**9**9 has 370
    million digits); None where it depends on a variable."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int) and len(str(abs(node.value))) > 300:
            raise ConfigError("expression", shown, f"holds a number of {len(str(node.value))} "
                              f"digits; the largest allowed is {LARGEST:g}")  # fmt: skip
        return _sane(float(node.value), ast.unparse(node), shown)
    if isinstance(node, ast.Name):
        return CONSTANTS.get(node.id)
    if isinstance(node, ast.UnaryOp):
        value = _fold(node.operand, shown)
        return None if value is None else -value if isinstance(node.op, ast.USub) else value
    parts = [node.left, node.right] if isinstance(node, ast.BinOp) else node.args
    values = [_fold(p, shown) for p in parts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and values[1] == 0:
        raise ConfigError("expression", shown, f"divides by zero in {ast.unparse(node)}")
    if any(v is None for v in values):
        return None
    try:
        if isinstance(node, ast.BinOp):
            value = OPERATORS[type(node.op)](*values)
        else:
            value = MATH[node.func.id](*values)
    except OverflowError:
        value = math.inf
    except (ValueError, ZeroDivisionError, TypeError):
        raise ConfigError("expression", shown, f"{ast.unparse(node)} is not a real number "
                          "(outside its function's domain)") from None  # fmt: skip
    return _sane(value, ast.unparse(node), shown)


def _sane(value, part: str, shown: str) -> float:
    if isinstance(value, complex) or not math.isfinite(value) or abs(value) > LARGEST:
        raise ConfigError("expression", shown, f"{part} is too large or not a real number "
                          f"(constants must be finite and within ±{LARGEST:g})")  # fmt: skip
    return value


NUMPY = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
         "sqrt": np.sqrt, "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh, "atan": np.arctan,
         "asin": np.arcsin, "acos": np.arccos, "abs": np.abs, "Abs": np.abs,
         "Max": lambda *a: functools.reduce(np.maximum, a),
         "Min": lambda *a: functools.reduce(np.minimum, a)}  # fmt: skip
NP_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
                ast.Div: np.divide, ast.Pow: np.power}  # fmt: skip


def names(text: str) -> set[str]:
    """The names a formula uses besides its functions and pi, E: its variables and constants."""
    tree = ast.parse(text.replace("^", "**"), mode="eval")
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name)}  # fmt: skip
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called - set(CONSTANTS)


def numeric(text: str, values: dict[str, np.ndarray | float]) -> np.ndarray:
    """The formula on numpy arrays (a grid, for a contour where torch is not loaded): the parse
    check() accepts, walked node by node, never eval'd. NaN where a point is outside a
    function's domain (log of a negative, a fractional power of one), inf where it overflows."""
    check(text, NUMPY)
    names = CONSTANTS | values

    def walk(node: ast.AST):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ConfigError("expression", repr(text), f"names {node.id}, which has no value")
            return np.asarray(names[node.id], float)
        if isinstance(node, ast.UnaryOp):
            return -walk(node.operand) if isinstance(node.op, ast.USub) else walk(node.operand)
        if isinstance(node, ast.BinOp):
            return NP_OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        name, args = node.func.id, [walk(a) for a in node.args]
        if name == "log" and len(args) == 2:  # SymPy's log(a, b): the logarithm to base b
            return np.log(args[0]) / np.log(args[1])
        if len(args) != 1 and not (name in ("Max", "Min") and args):
            raise ConfigError("expression", repr(text), f"calls {name} with {len(args)} "
                              "arguments; it takes one")  # fmt: skip
        return NUMPY[name](*args)  # one argument: never numpy's `out`

    with np.errstate(all="ignore"):
        return np.asarray(walk(ast.parse(text.replace("^", "**"), mode="eval").body), float)
