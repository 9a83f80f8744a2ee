"""Arithmetic formulas over canonical bands (DESIGN.md §3.2), parsed without ever evaluating code.

Grammar: canonical band names, numbers, `+ - * /`, parentheses and unary minus (and plus). The
text is parsed by Python's `ast` (which only builds a tree, it runs nothing) and the tree is
walked against a whitelist of node types: anything else (a call, an attribute, a subscript, a
lambda, a comparison, `**`, a string, a name that is not a band) is refused before a single
operation is carried out. The accepted tree is converted into plain tuples, so what is stored,
pickled to `distributed` workers and evaluated is data, not code.

Evaluation is vectorised xarray arithmetic in float32 (dask inputs stay lazy), with the same
division as the built-in indices: NaN where a denominator is 0 or an input is NaN (nodata).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from pipeline.core.indices import _prepare, _ratio

MAX_LENGTH = 500  # characters; a formula is one line an agronomist writes, not a program
MAX_DEPTH = 50  # nesting of the parsed tree

# ("band", name) | ("num", value) | ("neg", node) | (op, left, right), op in add/sub/mul/div
Node = tuple
_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


class FormulaError(ValueError):
    """A formula outside the grammar; the message says what is wrong and what is allowed."""


def _convert(node: ast.AST, *, bands: frozenset[str], depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise FormulaError(f"is nested more than {MAX_DEPTH} levels deep; simplify it")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return (_BINARY[type(node.op)], _convert(node.left, bands=bands, depth=depth + 1),
                _convert(node.right, bands=bands, depth=depth + 1))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _convert(node.operand, bands=bands, depth=depth + 1)
        return ("neg", inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            value = float(node.value)  # an int literal beyond 1.8e308 overflows
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            shown = repr(node.value)
            shown = shown if len(shown) <= 40 else f"{shown[:20]}…({len(shown)} digits)"
            raise FormulaError(f"holds the number {shown}, which is not finite as a float; "
                               "write a number below 1.8e308")
        return ("num", value)
    if isinstance(node, ast.Name):
        if node.id not in bands:
            raise FormulaError(f"names {node.id!r}, which is not a band; use only the bands "
                               f"{', '.join(sorted(bands))}")
        return ("band", node.id)
    if isinstance(node, ast.BinOp):
        what = f"the operator {type(node.op).__name__}"
    elif isinstance(node, ast.Call):
        what = "a function call"
    elif isinstance(node, ast.Attribute):
        what = f"an attribute access (.{node.attr})"
    elif isinstance(node, ast.Constant):
        what = f"the literal {node.value!r}"
    else:
        what = f"a {type(node).__name__} expression"
    raise FormulaError(f"uses {what}, which is not allowed: a formula holds only band names, "
                       "numbers, + - * /, parentheses and unary minus")


def _bands_of(node: Node) -> list[str]:
    if node[0] == "band":
        return [node[1]]
    if node[0] == "num":
        return []
    return [b for child in node[1:] for b in _bands_of(child)]


def _render(node: Node) -> str:
    kind = node[0]
    if kind == "band":
        return node[1]
    if kind == "num":
        return repr(node[1])
    if kind == "neg":
        return f"(-{_render(node[1])})"
    return f"({_render(node[1])} {_SYMBOL[kind]} {_render(node[2])})"


@dataclass(frozen=True)
class Formula:
    """A parsed formula: its source text, its tree (plain tuples) and the bands it reads.

    Call it with keyword DataArrays (`formula(nir=..., swir1=...)`) to get the float32 result.
    """

    text: str
    tree: Node
    bands: tuple[str, ...]  # in order of first appearance

    @property
    def canonical(self) -> str:
        """The tree written out fully parenthesised: equal trees, equal text (for hashing)."""
        return _render(self.tree)

    def __call__(self, **bands: xr.DataArray) -> xr.DataArray:
        missing = [b for b in self.bands if b not in bands]
        if missing:
            raise KeyError(f"formula {self.text!r} needs bands {missing}")
        prepared = dict(zip(self.bands, _prepare(*(bands[b] for b in self.bands)), strict=True))
        result = _evaluate(self.tree, prepared).astype(np.float32, copy=False)
        # float32 overflow (a product beyond 3.4e38, a division by a subnormal difference) gives
        # ±inf: nodata, like 0/0, never a value at the end of the palette or in the sums.
        return result.where(np.isfinite(result))


def _evaluate(node: Node, bands: Mapping[str, xr.DataArray]):
    kind = node[0]
    if kind == "band":
        return bands[node[1]]
    if kind == "num":
        return node[1]  # a Python float: a "weak" scalar, float32 arrays stay float32
    if kind == "neg":
        return -_evaluate(node[1], bands)
    left, right = _evaluate(node[1], bands), _evaluate(node[2], bands)
    if kind == "add":
        return left + right
    if kind == "sub":
        return left - right
    if kind == "mul":
        return left * right
    if not isinstance(right, xr.DataArray):  # division by a number (or a number expression)
        return left * np.nan if right == 0 else left / right
    if not isinstance(left, xr.DataArray):
        left = xr.full_like(right, left)
    return _ratio(left, right)


def parse_formula(text: str, *, bands: tuple[str, ...] | frozenset[str]) -> Formula:
    """Parse `text` over the band names `bands`, or raise `FormulaError` saying why not.

    Nothing in `text` is ever executed: `ast.parse` only builds a syntax tree, which is checked
    node by node against the grammar above.
    """
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("is empty; write an expression such as (nir - red) / (nir + red)")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    if any(ord(c) < 32 for c in text):
        raise FormulaError("contains control characters or line breaks; write it on one line")
    try:
        expression = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise FormulaError(f"is not a valid expression ({exc.msg}{where}); check the parentheses "
                           "and operators (+ - * / only)") from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError("cannot be parsed (too deeply nested or malformed); simplify it"
                           ) from None
    tree = _convert(expression.body, bands=frozenset(bands), depth=0)
    used = list(dict.fromkeys(_bands_of(tree)))
    if not used:
        raise FormulaError("names no band; an index is computed from at least one band")
    return Formula(text=text.strip(), tree=tree, bands=tuple(used))


__all__ = ["Formula", "FormulaError", "parse_formula"]
