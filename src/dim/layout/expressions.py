"""Templates with integer expressions, as used for addresses and host names in cluster.xml.

A template is literal text with ``{…}`` fields. A field holds an integer expression over the
numbers in a node's name (``n1``, ``n2``…, left to right), its index in its group (``i``, from
0), with ``+ - * // %``, unary minus and parentheses, and an optional zero-padded width::

    >>> t = compile_template("10.0.{n1}.{(n2-1)*14+n3}")
    >>> t.render((3, 2, 5), 0, "s03c2b05")
    '10.0.3.19'
    >>> compile_template("{name}-ib").render((1,), 0, "n01")
    'n01-ib'
    >>> compile_template("node{i+1:03}").render((), 6, "x")
    'node007'

Expressions are parsed with :mod:`ast` and checked node by node against a short allow-list.
A template is then compiled once into one Python function, an f-string built from a fresh
syntax tree that holds only what the allow-list let through (integers, ``nums[k]``, ``i``,
``name``, ``+ - * // %``): nothing of the user's text is ever passed to ``eval`` or
``compile``. The same check also builds small closures, which evaluate a single expression
and give a failing template its error message. They are bounded
before and while parsing, so that no input ends in a RecursionError or MemoryError: at most
:data:`MAX_LENGTH` characters of ASCII, :data:`MAX_DEPTH` levels of nesting and integers of
:data:`MAX_DIGITS` digits::

    >>> compile_expression("-" * 100_000 + "1")
    Traceback (most recent call last):
    ExpressionError: expression of 100001 characters: at most 256
"""

from __future__ import annotations

import ast
import operator
import re
import types
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from itertools import chain, repeat
from operator import itemgetter

from dim.structs import struct

MAX_LENGTH = 256  # characters in one expression: an address needs a few dozen
MAX_DEPTH = 64  # nested operations and parentheses (a chain of 64 additions is 64 deep)
MAX_DIGITS = 18  # digits of an integer in an expression (below 2**63)
Numbers = tuple[int, ...]
Evaluator = Callable[[Numbers, int], int]


class ExpressionError(ValueError):
    """An expression that cannot be compiled or evaluated; the caller adds file and line."""


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_NUMBER_NAME = re.compile(r"n([1-9][0-9]*)")
_WIDTH = re.compile(r"0?([0-9]{1,2})d?")
_FIELD = re.compile(r"\{([^{}]*)\}")


def compile_expression(text: str) -> Evaluator:
    """Compile an integer expression into a function of (numbers, index)."""
    return _build(_parse(text), text)


def _parse(text: str) -> ast.AST:
    """The syntax tree of ``text``, after checking its length, characters and depth."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression of {len(text)} characters: at most {MAX_LENGTH}")
    if not text.isascii() or not text.isprintable():
        raise ExpressionError(f"only printable ASCII is allowed in expressions: {text!r}")
    depth = deepest = 0
    for char in text:  # parentheses first: ast.parse itself recurses on them
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise ExpressionError(f"parentheses nested {deepest} deep in {text!r}: at most {MAX_DEPTH}")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"invalid expression {text!r}") from exc


def _build(node: ast.AST, text: str, depth: int = 0) -> Evaluator:
    if depth > MAX_DEPTH:
        raise ExpressionError(f"expression nested more than {MAX_DEPTH} deep: {text!r}")
    depth += 1
    if isinstance(node, ast.Constant) and type(node.value) is int:
        value = node.value
        if abs(value) >= 10**MAX_DIGITS:
            raise ExpressionError(f"integer of more than {MAX_DIGITS} digits in {text!r}")
        return lambda nums, i: value
    if isinstance(node, ast.Name):
        return _variable(node.id, text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _build(node.operand, text, depth)
        if isinstance(node.op, ast.UAdd):
            return operand
        return lambda nums, i: -operand(nums, i)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _build(node.left, text, depth), _build(node.right, text, depth)
        return _binary(_BINARY[type(node.op)], left, right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        raise ExpressionError(f"use // for integer division in {text!r}")
    raise ExpressionError(
        f"only integers, n1, n2…, i, + - * // % and parentheses are allowed in {text!r}"
    )


def _variable(name: str, text: str) -> Evaluator:
    if name == "i":
        return lambda nums, i: i
    match = _NUMBER_NAME.fullmatch(name)
    if match is None:
        raise ExpressionError(f"unknown name {name!r} in {text!r} (use n1, n2… or i)")
    position = int(match.group(1)) - 1

    def number(nums: Numbers, i: int) -> int:
        try:
            return nums[position]
        except IndexError:
            raise ExpressionError(
                f"{name} used in {text!r} but the node name has only {len(nums)} number(s)"
            ) from None

    return number


def _binary(op: Callable[[int, int], int], left: Evaluator, right: Evaluator) -> Evaluator:
    def apply(nums: Numbers, i: int) -> int:
        try:
            return op(left(nums, i), right(nums, i))
        except ZeroDivisionError:
            raise ExpressionError("division by zero") from None

    return apply


Field = Callable[[Numbers, int, str], str]
Renderer = Callable[[Numbers, int, str], str]


@struct(frozen=True, slots=True)
class Template:
    """A compiled template: :meth:`render` gives a node's text.

    ``function`` is the fast path, one compiled f-string, for callers that run it once per
    node: it raises IndexError (a number the node's name lacks) or ZeroDivisionError, and
    the caller then calls :meth:`render`, which evaluates field by field (``pattern`` and
    ``fields``) and raises the :class:`ExpressionError` that says why.
    """

    text: str
    pattern: str
    fields: tuple[Field, ...]
    function: Renderer
    uses_numbers: bool = False  # whether a field reads n1, n2…: the caller may pass () if not
    # The text between the fields, and each field's key (:func:`render_column`): "name" for
    # {name}, else its compiled form's dump, the same for the same expression and width.
    literals: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def render(self, nums: Numbers, index: int, name: str) -> str:
        try:
            return self.function(nums, index, name)
        except (IndexError, ZeroDivisionError):
            return self.render_fields(nums, index, name)  # raises the ExpressionError

    def render_fields(self, nums: Numbers, index: int, name: str) -> str:
        """The slow path: each field's closure in turn."""
        if not self.fields:
            return self.pattern
        return self.pattern.format(*[field(nums, index, name) for field in self.fields])

    @property
    def is_constant(self) -> bool:
        return not self.fields


def compile_template(text: str) -> Template:
    """Compile ``text`` with ``{expr}``, ``{expr:WIDTH}`` and ``{name}`` fields."""
    pattern: list[str] = []
    fields: list[Field] = []
    parts: list[ast.expr] = []
    literals: list[str] = []
    keys: list[str] = []
    uses_numbers = False
    position = 0
    for match in _FIELD.finditer(text):
        literal = _literal(text[position : match.start()], text)
        pattern += [literal, "{}"]
        fields.append(_field(match.group(1), text))
        part = _formatted(match.group(1))
        uses_numbers = uses_numbers or any(isinstance(n, ast.Subscript) for n in ast.walk(part))
        parts += [ast.Constant(literal), part]
        literals.append(literal)
        key = _NAME if _is_name(part) else ast.dump(part)
        _PARTS.setdefault(key, part)
        keys.append(key)
        position = match.end()
    literal = _literal(text[position:], text)
    pattern.append(literal)
    parts.append(ast.Constant(literal))
    literals.append(literal)
    return Template(
        text,
        "".join(pattern),
        tuple(fields),
        _function(parts),
        uses_numbers,
        tuple(literals),
        tuple(keys),
    )


# -- every node's text at once ---------------------------------------------------------------
#
# A group's templates often share fields (the last octets of each interface's address, and the
# BMC's): each distinct field is computed once per group, as a column, by one compiled list
# comprehension (no Python call per node), and each template's texts are the columns joined
# with its literals in C. At 100,000 nodes (bench/layout.py's layout: three addresses sharing
# two fields, a host name) the expansion took 260 M fewer instructions of 3,020 M.

_NAME = "name"
_PARTS: dict[str, ast.FormattedValue] = {}  # each field's tree (from _formatted), by its key
Column = Callable[[Sequence[Numbers], int, Sequence[str]], list[str]]


def _is_name(part: ast.FormattedValue) -> bool:
    return isinstance(part.value, ast.Name) and part.value.id == "name"


def render_column(
    template: Template,
    nums: Sequence[Numbers],
    names: Sequence[str],
    shared: dict[str, Sequence[str]],
) -> list[str]:
    """``template``'s text for every node (node ``k``: ``nums[k]``, index ``k``,
    ``names[k]``), as ``[template.function(nums[k], k, names[k]) for k …]`` gives them.

    ``shared`` holds the columns of fields computed already (key: the field's); pass the same
    dictionary for the templates of one group. It raises what the template's function would
    (IndexError, ZeroDivisionError): the caller then evaluates node by node to say why.
    """
    count = len(names)
    columns: list[Sequence[str]] = []
    for key in template.keys:
        column = shared.get(key)
        if column is None:
            column = names if key == _NAME else _column(key)(nums, count, names)
            shared[key] = column
        columns.append(column)
    literals = template.literals
    if not columns:
        return [template.pattern] * count
    if len(columns) == 1 and literals == ("", ""):
        return list(columns[0])
    pieces: list[Iterable[str]] = []
    for literal, column in zip(literals, columns, strict=False):
        if literal:
            pieces.append(repeat(literal))
        pieces.append(column)
    pieces.append(repeat(literals[-1] + "\n"))
    texts = "".join(chain.from_iterable(zip(*pieces, strict=False))).split("\n")
    texts.pop()  # after the last newline
    if len(texts) != count:  # a newline in a literal or a name: one by one
        return list(map(template.function, nums, range(count), names))
    return texts


@cache
def _column(key: str) -> Column:
    """The list comprehension of one field, by its key: around the tree that
    :func:`compile_template` compiled for it (made by :func:`_python` alone)."""
    part = _PARTS[key]
    variables = {n.id for n in ast.walk(part) if isinstance(n, ast.Name)}
    if "nums" in variables:
        target: ast.expr = ast.Tuple(
            [ast.Name("nums", ast.Store()), ast.Name("i", ast.Store())], ast.Store()
        )
        source: ast.expr = ast.Call(
            ast.Name("zip", ast.Load()),
            [ast.Name("nums_column", ast.Load()), _range()],
            [],
        )
    else:
        target, source = ast.Name("i", ast.Store()), _range()
    body = ast.ListComp(ast.JoinedStr([part]), [ast.comprehension(target, source, [], is_async=0)])
    arguments = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(a) for a in ("nums_column", "count", "names")],
        kwonlyargs=[],
        kw_defaults=[],
        defaults=[],
    )
    tree = ast.Expression(ast.Lambda(arguments, body))
    code = compile(ast.fix_missing_locations(tree), "<template column>", "eval")
    (function,) = (c for c in code.co_consts if isinstance(c, types.CodeType))
    return types.FunctionType(function, {"__builtins__": {}, "zip": zip, "range": range})


def _range() -> ast.expr:
    return ast.Call(ast.Name("range", ast.Load()), [ast.Name("count", ast.Load())], [])


# -- compiling a template into one function ------------------------------------------------------
#
# The tree compiled below is built here, node by node, from the parsed expression once
# _field has accepted it: only the node types of _python's allow-list ever reach compile(),
# and the function runs with no builtins.

_PYTHON_OPERATORS = {
    ast.Add: ast.Add,
    ast.Sub: ast.Sub,
    ast.Mult: ast.Mult,
    ast.FloorDiv: ast.FloorDiv,
    ast.Mod: ast.Mod,
}
_ARGUMENTS = ("nums", "i", "name")


def _formatted(body: str) -> ast.expr:
    """The f-string part of one field (already accepted by :func:`_field`)."""
    expr, _, spec = body.partition(":")
    if expr.strip() == "name":
        return ast.FormattedValue(ast.Name("name", ast.Load()), -1, None)
    fmt = None
    if spec:
        width = _WIDTH.fullmatch(spec)
        assert width is not None  # _field refused it otherwise
        fmt = ast.JoinedStr([ast.Constant(f"0{int(width.group(1))}d")])
    return ast.FormattedValue(_python(_parse(expr)), -1, fmt)


def _python(node: ast.AST) -> ast.expr:
    """A fresh copy of an accepted expression, ``n<k>`` read as ``nums[k-1]``."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return ast.Constant(node.value)
    if isinstance(node, ast.Name) and node.id == "i":
        return ast.Name("i", ast.Load())
    if isinstance(node, ast.Name) and _NUMBER_NAME.fullmatch(node.id):
        position = ast.Constant(int(node.id[1:]) - 1)
        return ast.Subscript(ast.Name("nums", ast.Load()), position, ast.Load())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return ast.UnaryOp(type(node.op)(), _python(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _PYTHON_OPERATORS:
        operator_ = _PYTHON_OPERATORS[type(node.op)]()
        return ast.BinOp(_python(node.left), operator_, _python(node.right))
    raise AssertionError(f"not accepted by _build: {ast.dump(node)}")


def _function(parts: list[ast.expr]) -> Renderer:
    """``lambda nums, i, name: f"…"`` compiled from ``parts``, without builtins."""
    arguments = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(a) for a in _ARGUMENTS],
        kwonlyargs=[],
        kw_defaults=[],
        defaults=[],
    )
    tree = ast.Expression(ast.Lambda(arguments, ast.JoinedStr(parts)))
    code = compile(ast.fix_missing_locations(tree), "<template>", "eval")
    (body,) = (c for c in code.co_consts if isinstance(c, types.CodeType))
    return types.FunctionType(body, {"__builtins__": {}})


def _literal(chunk: str, text: str) -> str:
    if "{" in chunk or "}" in chunk:
        raise ExpressionError(f"unbalanced braces in {text!r}")
    return chunk


def _field(body: str, text: str) -> Field:
    expr, _, spec = body.partition(":")
    if expr.strip() == "name":
        if spec:
            raise ExpressionError(f"{{name}} takes no width in {text!r}")
        return lambda nums, i, name: name
    evaluate = compile_expression(expr)
    fmt = ""
    if spec:
        width = _WIDTH.fullmatch(spec)
        if width is None:
            raise ExpressionError(f"invalid width {spec!r} in {text!r} (use e.g. {{n1:03}})")
        fmt = f"0{int(width.group(1))}d"
    return _memoized(evaluate, fmt, *_variables(expr), text)


def _variables(expr: str) -> tuple[tuple[int, ...], bool]:
    """Positions of the n-numbers an expression reads, and whether it reads i."""
    names = {n.id for n in ast.walk(_parse(expr)) if isinstance(n, ast.Name)}
    positions = sorted(int(n[1:]) - 1 for n in names if _NUMBER_NAME.fullmatch(n))
    return tuple(positions), "i" in names


def _memoized(
    evaluate: Evaluator, fmt: str, positions: tuple[int, ...], uses_index: bool, text: str
) -> Field:
    """A field remembers its text per value of the numbers it reads.

    Nodes of a group share most of them (``n1`` is the rack in ``r[01-46]n[001-056]``), so a
    dictionary look-up replaces the evaluation for nearly every node.
    """
    if uses_index or not positions:
        return lambda nums, i, name: format(evaluate(nums, i), fmt)
    key_of = itemgetter(*positions)
    cache: dict[object, str] = {}

    def field(nums: Numbers, i: int, name: str) -> str:
        try:
            key = key_of(nums)
        except IndexError:
            raise ExpressionError(
                f"n{positions[-1] + 1} used in {text!r} but the node name has only "
                f"{len(nums)} number(s)"
            ) from None
        try:
            return cache[key]
        except KeyError:
            value = cache[key] = format(evaluate(nums, i), fmt)
            return value

    return field
