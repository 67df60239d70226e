"""Ready tools: a safe calculator and unit conversion (`lmfast agent run --tools ...`)."""

from __future__ import annotations

import ast
import math
import operator
from typing import Annotated, Any, Literal

from lmfast.agents.tools import Tool, tool
from pydantic import Field

_BINARY: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Any] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Any] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


class ExpressionError(ValueError):
    """Not an expression the calculator reads (arithmetic failures are ArithmeticError)."""


# Results past this many bits are refused: '((9**64)**64)**64' would take seconds and memory
# to build and cannot be printed anyway.
_MAX_BITS = 4096


def evaluate_expression(expression: str) -> float | int:
    """Arithmetic only: numbers, + - * / // % **, parentheses and a few math functions.
    Parsed with `ast` and walked by hand, never `eval`: no names, attributes or calls
    beyond the listed functions. ExpressionError for what it cannot read; ArithmeticError
    (division by zero, a math domain error, a result too large) for what it cannot
    compute."""
    # Small models often write the equation with their own guess of the result: 'a * b = c'.
    expression = expression.split("=")[0]
    try:
        tree = ast.parse(expression.replace("^", "**").replace("\u00d7", "*"), mode="eval")
    except SyntaxError:
        raise ExpressionError(f"{expression!r} is not an arithmetic expression") from None
    return _walk(tree.body)


def _checked(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > _MAX_BITS:
        raise ArithmeticError("the result is too large")
    if isinstance(value, complex):  # (-8) ** 0.5
        raise ArithmeticError("the result is not a real number")
    return value


def _walk(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ArithmeticError("exponents above 64 are refused (the result would be enormous)")
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_walk(a) for a in node.args]
        try:
            return _checked(_FUNCTIONS[node.func.id](*args))
        except (ValueError, TypeError) as e:  # math domain errors, wrong argument counts
            raise ArithmeticError(f"{node.func.id}: {e}") from None
    raise ExpressionError(f"unsupported in an arithmetic expression: {ast.unparse(node)!r}")


def _expression_pattern(depth: int) -> str:
    """The calculator's call pattern, derived from what `_walk` reads: numbers as Python
    writes them (no leading zeros, no thousands commas), the constants, unary signs, the
    operators, parentheses and the functions with the arguments they take, nested up to
    `depth` levels (a regular expression cannot count brackets; small models rarely nest
    deeper). Held to it by the call grammar, a model cannot write what the evaluator
    rejects; no '=' either (given one, small models loop on 'a * b = a * b = ...')."""
    # '[.]', not an escaped dot: llama-cpp-python's schema converter writes "\." into the
    # grammar, which llama.cpp's parser rejects.
    number = r"(0|[1-9][0-9]*)([.][0-9]+)?"
    constant = "(" + "|".join(_CONSTANTS) + ")"
    op = r" *(\*\*|//|[-+*/%^]) *"
    one = "(" + "|".join(f for f in _FUNCTIONS if f not in ("min", "max")) + ")"
    two = "(" + "|".join(_TWO_ARGUMENTS) + ")"

    def chain(atom: str) -> str:
        return f"[-+]?{atom}({op}[-+]?{atom})*"

    expr = chain(f"({number}|{constant})")
    for _ in range(depth):
        atom = (
            rf"({number}|{constant}|\( *{expr} *\)|{one}\( *{expr} *\)"
            rf"|{two}\( *{expr} *, *{expr} *\))"
        )
        expr = chain(atom)
    return f"^{expr} *$"  # a trailing space must not force another operator


# Functions called with two arguments (min and max need at least two; round takes one or
# two, and is listed with the one-argument ones too).
_TWO_ARGUMENTS = ("min", "max", "round")
EXPRESSION = _expression_pattern(depth=2)


@tool
def calculator(expression: Annotated[str, Field(pattern=EXPRESSION)]) -> str:
    """Evaluate an arithmetic expression exactly, e.g. '(12 + 7) * 3' or 'sqrt(2) / 4'.

    Args:
        expression: The expression, with numbers, + - * / // % ** and parentheses.
    """
    value = evaluate_expression(expression)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(round(value, 10) if isinstance(value, float) else value)


# Factors to one base unit per dimension; temperatures are converted by formula. Units are
# named in words: small models copy "inches" from the task far more reliably than "in".
_UNITS: dict[str, tuple[str, float]] = {
    "metre": ("length", 1.0), "kilometre": ("length", 1000.0), "centimetre": ("length", 0.01),
    "millimetre": ("length", 0.001), "mile": ("length", 1609.344), "foot": ("length", 0.3048),
    "inch": ("length", 0.0254), "yard": ("length", 0.9144),
    "kilogram": ("mass", 1.0), "gram": ("mass", 0.001), "pound": ("mass", 0.45359237),
    "ounce": ("mass", 0.028349523125),
    "litre": ("volume", 1.0), "millilitre": ("volume", 0.001), "gallon": ("volume", 3.785411784),
    "second": ("time", 1.0), "minute": ("time", 60.0), "hour": ("time", 3600.0),
    "day": ("time", 86400.0),
}  # fmt: skip
_TEMPERATURES = {"celsius", "fahrenheit", "kelvin"}
Unit = Literal[
    "metre", "kilometre", "centimetre", "millimetre", "mile", "foot", "inch", "yard",
    "kilogram", "gram", "pound", "ounce", "litre", "millilitre", "gallon",
    "second", "minute", "hour", "day", "celsius", "fahrenheit", "kelvin",
]  # fmt: skip
_SYMBOL = {"metre": "m", "kilometre": "km", "centimetre": "cm", "millimetre": "mm",
           "mile": "mi", "foot": "ft", "inch": "in", "yard": "yd", "kilogram": "kg", "gram": "g",
           "pound": "lb", "ounce": "oz", "litre": "l", "millilitre": "ml", "gallon": "gal",
           "second": "s", "minute": "min", "hour": "h", "day": "day", "celsius": "°C",
           "fahrenheit": "°F", "kelvin": "K"}  # fmt: skip


def _to_kelvin(v: float, unit: str) -> float:
    return {"celsius": v + 273.15, "fahrenheit": (v - 32) * 5 / 9 + 273.15, "kelvin": v}[unit]


def _from_kelvin(k: float, unit: str) -> float:
    return {"celsius": k - 273.15, "fahrenheit": (k - 273.15) * 9 / 5 + 32, "kelvin": k}[unit]


@tool
def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> str:
    """Convert a quantity between units of length, mass, volume, time or temperature.

    Args:
        value: The number to convert.
        from_unit: The unit it is in, as a word in the singular (metre, kilometre, mile,
            inch, pound, litre, hour, celsius, ...).
        to_unit: The unit to convert to (same list, same dimension).
    """
    if from_unit in _TEMPERATURES or to_unit in _TEMPERATURES:
        if not (from_unit in _TEMPERATURES and to_unit in _TEMPERATURES):
            raise ValueError(f"cannot convert {from_unit} to {to_unit}: different dimensions")
        result = _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    else:
        (dim_a, fa), (dim_b, fb) = _UNITS[from_unit], _UNITS[to_unit]
        if dim_a != dim_b:
            raise ValueError(f"cannot convert {from_unit} ({dim_a}) to {to_unit} ({dim_b})")
        result = value * fa / fb
    return f"{round(result, 4):g} {_SYMBOL[to_unit]}"


BUILTIN: dict[str, Tool] = {"calculator": calculator, "convert_units": convert_units}
