"""model=function: a written-down f(x, y, …) whose parameters are the point: its own objective."""

from __future__ import annotations

import math
import re

import sympy
import torch
from torch import Tensor, nn

from gradexp import formula
from gradexp.data import Data
from gradexp.errors import ConfigError

# The only names an expression may use besides its variables: a restricted namespace, so parsing
# never reaches Python's builtins (sympify on untrusted text would).
NAMES = "sin cos tan exp log sqrt tanh sinh cosh atan asin acos Abs Max Min pi E"
FUNCTIONS = {name: getattr(sympy, name) for name in NAMES.split()} | {"abs": sympy.Abs}
UNARY = "sin cos tan exp log tanh sinh cosh atan asin acos sign"  # sign: the derivative of Abs
TORCH = {getattr(sympy, n): getattr(torch, n) for n in UNARY.split()}
TORCH[sympy.Abs] = torch.abs
# Max and Min differentiate to Heaviside steps (sympy's H(0) = 1/2).
TORCH[sympy.Heaviside] = lambda x, *_: torch.heaviside(x, torch.full_like(x, 0.5))
ALLOWED = re.compile(r"^[A-Za-z0-9_+\-*/^()., ]+$")
RESERVED = {"training", "forward", "expression", "variables", "start"}
ALLOWED_TEXT = "use variables, numbers, + - * / ** ^ ( ) and " + ", ".join(sorted(FUNCTIONS))


def parse(text: str, constants: dict[str, float] | None = None) -> sympy.Expr:
    """A sympy expression from text, or a ConfigError naming `expression`."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = str(text)  # Hydra reads model.expression=3 as a number
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            "expression", repr(text), "must be a non-empty formula, e.g. 'x**2 + y**2'"
        )
    if not ALLOWED.match(text) or "__" in text or re.search(r"\.(?!\d)", text) or "lambda" in text:
        raise ConfigError("expression", repr(text), f"has characters not accepted; {ALLOWED_TEXT}")
    formula.check(text, FUNCTIONS)  # Python's parse first: no keyword, no giant constant
    from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

    names = {
        "__builtins__": {},
        "Integer": sympy.Integer,
        "Float": sympy.Float,
        "Rational": sympy.Rational,
        "Symbol": sympy.Symbol,
        **FUNCTIONS,
    }
    try:
        expr = parse_expr(
            text, global_dict=names, transformations=(*standard_transformations, convert_xor)
        )
    except Exception as e:  # sympy raises many kinds: SyntaxError, TypeError, TokenError …
        why = "an unknown function" if isinstance(e, NameError) else f"{type(e).__name__}: {e}"
        raise ConfigError(
            "expression", repr(text), f"is not a formula ({why}); {ALLOWED_TEXT}"
        ) from None
    if not isinstance(expr, sympy.Expr) or expr.has(sympy.zoo, sympy.nan, sympy.oo, sympy.I):
        raise ConfigError("expression", repr(text), "is not a real-valued formula")
    expr = expr.subs({sympy.Symbol(k): sympy.Float(v) for k, v in (constants or {}).items()})
    # Real variables: d|x|/dx is then sign(x), not an expression in re(x) and im(x).
    expr = expr.subs({s: sympy.Symbol(s.name, real=True) for s in expr.free_symbols})
    if not expr.free_symbols:
        raise ConfigError("expression", repr(text), "has no variables to optimise")
    for f in expr.atoms(sympy.Function):
        if f.func not in TORCH and f.func not in (sympy.Max, sympy.Min):
            raise ConfigError("expression", repr(text), f"uses {f.func}; {ALLOWED_TEXT}")
    return expr


def evaluate(expr: sympy.Expr, values: dict[sympy.Symbol, Tensor]) -> Tensor:
    """expr at torch values (differentiable), by walking the tree: no code generation, no eval."""
    if expr.is_Symbol:
        return values[expr]
    if expr.is_Number or expr.is_NumberSymbol:
        like = next(iter(values.values()))
        return torch.as_tensor(float(expr), dtype=like.dtype, device=like.device)
    args = [evaluate(a, values) for a in expr.args]
    if expr.is_Add:
        return sum(args[1:], args[0])
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if expr.is_Pow:
        power = expr.args[1]
        if power == sympy.Rational(1, 2):
            return torch.sqrt(args[0])
        return args[0] ** (int(power) if power.is_Integer else args[1])
    if expr.func in (sympy.Max, sympy.Min):
        pick = torch.maximum if expr.func is sympy.Max else torch.minimum
        out = args[0]
        for a in args[1:]:
            out = pick(out, a)
        return out
    return TORCH[expr.func](*args)


class FunctionModel(nn.Module):
    """f(θ) for a written-down f: one 0-d parameter per variable (named after it), started at
    `start`. The forward pass ignores its input and returns f(θ): the model is its own objective."""

    is_objective = True  # run.py: no data set, no loss; the output is the loss

    def __init__(
        self,
        in_features: int = 1,
        out_features: int = 1,
        expression: str = "x**2 + y**2",
        start: dict[str, float] | None = None,
        constants: dict[str, float] | None = None,
    ):
        super().__init__()
        self.expression = parse(expression, constants)
        self.symbols = sorted(self.expression.free_symbols, key=lambda s: s.name)
        self.variables = [s.name for s in self.symbols]
        start = dict(start or {})
        # Entries for other names are ignored: Hydra merges model.start={x: 1} into the preset's
        # start, so a preset's y stays there when an override's formula has only x.
        missing = [v for v in self.variables if v not in start]
        if missing:
            wanted = "{" + ", ".join(f"{v}: …" for v in self.variables) + "}"
            why = f"lacks {', '.join(missing)}; give a value for each variable: {wanted}"
            raise ConfigError("start", start, why)
        for name in self.variables:
            if name in RESERVED or name.startswith("_"):
                why = f"variable name {name!r} is reserved; rename it"
                raise ConfigError("expression", repr(expression), why)
            value = start[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConfigError(f"start.{name}", value, "must be a finite number")
            # float64 from the start: with dtype=float64 the start is exactly the configured point.
            self.register_parameter(
                name, nn.Parameter(torch.tensor(float(value), dtype=torch.float64))
            )
        with torch.no_grad():
            value = float(evaluate(self.expression, self.point()))
        if not math.isfinite(value):  # log(x) at x = −1: outside f's domain from the start
            shown = "{" + ", ".join(f"{v}: {start[v]}" for v in self.variables) + "}"
            raise ConfigError("start", shown, f"f is {value} there (outside its domain); "
                              "start where f is finite")  # fmt: skip

    def point(self) -> dict[sympy.Symbol, Tensor]:
        return {s: getattr(self, s.name) for s in self.symbols}

    def forward(self, x: Tensor) -> Tensor:
        return evaluate(self.expression, self.point()).expand(x.shape[0])

    def extra_repr(self) -> str:
        return f"f({', '.join(self.variables)}) = {self.expression}"


class ObjectiveLoss(nn.Module):
    """The 'loss' of a function model: its output itself (the mean over the dummy batch of one)."""

    tasks = ("objective",)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return output.mean()

    def targets(self, y: Tensor, num_classes: int | None, dtype: torch.dtype) -> Tensor:
        return y.to(dtype)


def objective_data(device: torch.device, dtype: torch.dtype) -> Data:
    """The data set of a function model: one dummy sample (the loop needs a batch), no eval."""
    one = torch.zeros(1, 1, device=device, dtype=dtype)
    return Data(one, one[:, 0], one[:0], one[:0, 0], "objective", None, {})
