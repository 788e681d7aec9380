"""`--where` expressions of `vidtool filter`: a small, safe language over a record's numeric columns.

An expression is parsed with Python's `ast` and only these forms are accepted: numbers, `True`/`False`,
column names, `+ - * / // %`, unary `- +`, comparisons (`< <= > >= == !=`, chained as in Python),
`and`, `or`, `not` and parentheses. Anything else (calls, attributes, subscripts, strings, `**`,
lambdas, comprehensions) is refused with the offending piece named; nothing is ever passed to `eval`.

A `Where` also says *why* a record fails: for `a and b and c` it names each clause that is false
(with the column values it read), so the rejected manifest tells `motion > 0.5` apart from
`text_area < 0.02`.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from typing import Callable

from vidtool.errors import UserError

# Conditions are a line on a command line; the limits keep evaluation (one Python call per node) far
# from the interpreter's recursion limit.
MAX_LENGTH = 2000
MAX_DEPTH = 100
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


class Missing(Exception):
    """A record has no (or a null) value for a column the expression reads."""

    def __init__(self, column: str):
        super().__init__(column)
        self.column = column


Evaluator = Callable[[dict], object]


@dataclass(frozen=True)
class Clause:
    text: str
    columns: tuple[str, ...]
    evaluate: Evaluator


class Where:
    """A compiled `--where` expression: `Where("motion > 0.5 and text_area < 0.02").failures(record)`."""

    def __init__(self, text: str):
        self.text = text.strip()
        if not self.text:
            raise UserError("--where is empty; give a condition such as 'motion > 0.5'")
        if len(self.text) > MAX_LENGTH:
            raise UserError(f"--where is {len(self.text)} characters long; keep a condition under {MAX_LENGTH}")
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as e:
            raise UserError(f"--where {text!r} is not a valid expression ({e.msg})") from None
        except (RecursionError, MemoryError, ValueError) as e:  # nesting past the parser's limits; NUL bytes
            raise UserError(f"--where {text!r} cannot be parsed ({type(e).__name__}); write a plainer condition") from None
        if _depth(tree.body) > MAX_DEPTH:
            raise UserError(f"--where {text!r} nests more than {MAX_DEPTH} levels deep; write a plainer condition")
        body = tree.body
        parts = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
        self.clauses = [Clause(ast.get_source_segment(self.text, part) or ast.unparse(part),
                               tuple(sorted(_names(part))), _compile(part, self.text)) for part in parts]
        self.columns = sorted({name for clause in self.clauses for name in clause.columns})

    def check_columns(self, known: set[str]) -> None:
        """Refuse an expression naming a column no record has (a typo would otherwise drop everything)."""
        unknown = [name for name in self.columns if name not in known]
        if unknown:
            shown = ", ".join(sorted(known)) or "none"
            raise UserError(f"--where names unknown column(s) {', '.join(unknown)}; the manifest has: {shown}")

    def failures(self, record: dict) -> list[tuple[str, str]]:
        """(key, message) for each clause `record` fails, the message with the values it read; empty
        when the record passes. The key is the clause's text, or "no COLUMN value" for a missing value."""
        failed = []
        for clause in self.clauses:
            try:
                ok = clause.evaluate(record)
            except Missing as e:
                failed.append((f"no {e.column} value", f"no {e.column} value"))
                continue
            except (ZeroDivisionError, OverflowError) as e:
                failed.append((clause.text, f"{clause.text}: {e}"))
                continue
            if not ok:
                values = ", ".join(f"{name}={_show(record[name])}" for name in clause.columns)
                failed.append((clause.text, f"{clause.text} is false" + (f" ({values})" if values else "")))
        return failed


def _show(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _depth(node: ast.AST) -> int:
    """How deep the tree under `node` goes (iteratively: the tree may be deeper than the stack allows)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _compile(node: ast.AST, text: str) -> Evaluator:
    """A closure computing `node` on a record; every node type not listed here is refused."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float)):
        value = node.value
        return lambda record: value
    if isinstance(node, ast.Name):
        name = node.id

        def column(record: dict):
            value = record.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise Missing(name)
            if not isinstance(value, (bool, int, float)):
                raise UserError(f"--where reads column {name!r}, which holds {type(value).__name__} values "
                                f"({value!r}), not numbers")
            return value

        return column
    if isinstance(node, ast.BoolOp):
        parts = [_compile(value, text) for value in node.values]
        if isinstance(node.op, ast.And):
            return lambda record: all(part(record) for part in parts)
        return lambda record: any(part(record) for part in parts)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op, operand = _UNARY[type(node.op)], _compile(node.operand, text)
        return lambda record: op(operand(record))
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        op, left, right = _ARITHMETIC[type(node.op)], _compile(node.left, text), _compile(node.right, text)
        return lambda record: op(left(record), right(record))
    if isinstance(node, ast.Compare) and all(type(o) in _COMPARE for o in node.ops):
        operands = [_compile(node.left, text)] + [_compile(c, text) for c in node.comparators]
        ops = [_COMPARE[type(o)] for o in node.ops]

        def compare(record: dict) -> bool:
            values = [operand(record) for operand in operands]
            return all(op(a, b) for op, a, b in zip(ops, values, values[1:]))

        return compare
    piece = ast.get_source_segment(text, node) or type(node).__name__
    raise UserError(f"--where {text!r}: {piece!r} is not allowed; use numbers, column names, + - * / // %, "
                    "comparisons, and/or/not and parentheses")
