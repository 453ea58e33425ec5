"""Xero's ``where`` and ``order`` query parameters, compiled once per request
into a predicate and a sort over the API's records.

Xero evaluated ``where`` with .NET Dynamic LINQ. This covers what clients
send: comparisons (``==`` ``!=`` ``<`` ``>`` ``<=`` ``>=``, also ``=`` and
``<>``) of a field — dotted for nested objects, e.g. ``Contact.ContactID`` —
with a literal (``"text"``, numbers, ``true``/``false``/``null``,
``Guid("…")``, ``DateTime(2026,1,31[,h,m,s])``), the string methods
``Contains``/``StartsWith``/``EndsWith``/``ToLower``/``ToUpper``, ``!``, ``&&``
and ``||`` (or ``and``/``or``) and parentheses. Field names are matched
case-insensitively and strings compared case-insensitively, as Xero's SQL
Server collation did; GUIDs compare without regard to dashes or case (pyxero
sends them both ways). Anything else is a :class:`QueryError` whose message
reads like Xero's ``QueryParseException`` — never a silent wrong answer.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, TypeVar

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]
Getter = Callable[[Record], Any]

#: Field types a schema may name, and how Xero's (.NET) errors call them.
TYPE_NAMES = {
    "string": "String", "guid": "Guid", "bool": "Boolean", "decimal": "Decimal", "int": "Int32",
    "date": "DateTime", "datetime": "DateTime", "object": "Object", "list": "List",
    # literal-only types
    "number": "Decimal", "null": "null",
}
_ORDERED = frozenset({"string", "decimal", "int", "number", "date", "datetime"})
_NUMERIC = frozenset({"decimal", "int", "number"})
_DATES = frozenset({"date", "datetime"})


class QueryError(ValueError):
    """A ``where`` or ``order`` the mock cannot (or Xero would not) evaluate."""

    def __init__(self, message: str) -> None:
        super().__init__(message if len(message) <= 400 else message[:400] + "…")


@dataclasses.dataclass(frozen=True, eq=False)
class Schema:
    """The fields of one Xero type: name → type; nested objects' schemas."""

    type_name: str
    fields: Mapping[str, str]
    children: Mapping[str, Schema] = dataclasses.field(default_factory=dict)
    _lower: dict[str, str] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._lower.update({name.lower(): name for name in self.fields})

    def resolve(self, name: str) -> str | None:
        """The field's canonical spelling, matched case-insensitively."""
        return self._lower.get(name.lower())


# -- tokens --------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<op>&&|\|\||==|!=|<>|>=|<=|=|>|<|!|\(|\)|,|\.|-)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


@dataclasses.dataclass
class _Tok:
    kind: str  # str | num | op | id | end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "\"'":
                quote = "a string literal" if text[pos] == '"' else "single quotes"
                raise QueryError(f"Unterminated string literal or {quote} not supported "
                                 f"(use double quotes) (at index {pos})")
            raise QueryError(f"Syntax error: unexpected character '{text[pos]}' (at index {pos})")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


# -- compiled expressions ------------------------------------------------------

@dataclasses.dataclass
class _Expr:
    get: Getter
    type: str
    #: Set for literals, so comparisons can fold them once.
    const: Any = None
    is_const: bool = False


def _norm_guid(value: Any) -> str:
    return str(value).strip().strip("{}").replace("-", "").lower()


def _as_datetime(value: Any) -> Any:
    if type(value) is date:
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return value


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    ">": lambda a, b: bool(a > b),
    "<=": lambda a, b: bool(a <= b),
    ">=": lambda a, b: bool(a >= b),
}
_OP_ALIASES = {"=": "==", "<>": "!="}
MAX_NESTING = 32
_DATETIME_FORM = "DateTime(year, month, day[, hour, minute, second])"


class _Parser:
    def __init__(self, text: str, schema: Schema) -> None:
        self.schema = schema
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    # token helpers
    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def _next(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is_op(self, *texts: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in texts

    def _is_word(self, *words: str) -> bool:
        return self.tok.kind == "id" and self.tok.text.lower() in words

    def _expect(self, text: str) -> None:
        if not self._is_op(text):
            self._fail(f"'{text}' expected")
        self.i += 1

    def _fail(self, message: str, pos: int | None = None) -> Any:
        if len(message) > 300:  # keep "(at index N)" after a long quoted name
            message = message[:300] + "…"
        where = self.tok.pos if pos is None else pos
        raise QueryError(f"{message} (at index {where})")

    # grammar
    def parse(self) -> Predicate:
        if self.tok.kind == "end":
            return lambda record: True
        expr = self._or()
        if self.tok.kind != "end":
            self._fail(f"Syntax error: unexpected '{self.tok.text}'")
        return self._as_bool(expr, 0)

    def _as_bool(self, expr: _Expr, pos: int) -> Predicate:
        if expr.type != "bool":
            self._fail(f"Expression of type 'Boolean' expected, got '{TYPE_NAMES.get(expr.type, expr.type)}'",
                       pos)
        get = expr.get
        return lambda record: get(record) is True

    def _or(self) -> _Expr:
        pos = self.tok.pos
        first = self._and()
        if not (self._is_op("||") or self._is_word("or")):
            return first
        terms = [self._as_bool(first, pos)]
        while self._is_op("||") or self._is_word("or"):
            self.i += 1
            pos = self.tok.pos
            terms.append(self._as_bool(self._and(), pos))
        # A flat list, not nested lambdas: a long chain must not recurse.
        return _Expr(lambda r: any(term(r) for term in terms), "bool")

    def _and(self) -> _Expr:
        pos = self.tok.pos
        first = self._unary()
        if not (self._is_op("&&") or self._is_word("and")):
            return first
        terms = [self._as_bool(first, pos)]
        while self._is_op("&&") or self._is_word("and"):
            self.i += 1
            pos = self.tok.pos
            terms.append(self._as_bool(self._unary(), pos))
        return _Expr(lambda r: all(term(r) for term in terms), "bool")

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self._fail(f"Expression nested more than {MAX_NESTING} deep")

    def _unary(self) -> _Expr:
        if self._is_op("!") or self._is_word("not"):
            self.i += 1
            self._nest()
            pos = self.tok.pos
            inner = self._as_bool(self._unary(), pos)
            self.depth -= 1
            return _Expr(lambda r: not inner(r), "bool")
        return self._comparison()

    def _comparison(self) -> _Expr:
        left = self._operand()
        if self.tok.kind == "op" and self.tok.text in ("==", "!=", "<", ">", "<=", ">=", "=", "<>"):
            op_tok = self._next()
            op = _OP_ALIASES.get(op_tok.text, op_tok.text)
            right = self._operand()
            return self._compare(left, op, right, op_tok.pos)
        if left.type != "bool" and not self._is_op(")") and self.tok.kind != "end" \
                and not (self._is_op("&&", "||") or self._is_word("and", "or")):
            self._fail(f"Syntax error: operator expected, got '{self.tok.text}'")
        return left

    def _operand(self) -> _Expr:
        tok = self.tok
        if self._is_op("("):
            self.i += 1
            self._nest()
            inner = self._or()
            self._expect(")")
            self.depth -= 1
            return inner
        if tok.kind == "str":
            self.i += 1
            value = _unescape(tok.text[1:-1])
            return self._methods(_const(value, "string"))
        if tok.kind == "num" or self._is_op("-"):
            return _const(self._number(), "number")
        if tok.kind == "id":
            word = tok.text.lower()
            if word in ("true", "false"):
                self.i += 1
                return _const(word == "true", "bool")
            if word == "null":
                self.i += 1
                return _const(None, "null")
            if word == "guid" and self.tokens[self.i + 1].text == "(":
                return self._guid()
            if word == "datetime" and self.tokens[self.i + 1].text == "(":
                return self._datetime()
            return self._field()
        if tok.kind == "end":
            return self._fail("Expression expected")  # type: ignore[no-any-return]
        return self._fail(f"Syntax error: unexpected '{tok.text}'")  # type: ignore[no-any-return]

    def _number(self) -> Decimal:
        negative = False
        if self._is_op("-"):
            negative = True
            self.i += 1
        if self.tok.kind != "num":
            self._fail("Number expected")
        value = Decimal(self._next().text)
        return -value if negative else value

    def _guid(self) -> _Expr:
        pos = self.tok.pos
        self.i += 1
        self._expect("(")
        if self.tok.kind != "str":
            self._fail("Guid(...) takes one string literal")
        raw = _unescape(self._next().text[1:-1])
        self._expect(")")
        norm = _norm_guid(raw)
        if not re.fullmatch(r"[0-9a-f]{32}", norm):
            self._fail(f"Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx): "
                       f"'{raw}'", pos)
        return _const(norm, "guid")

    def _datetime(self) -> _Expr:
        pos = self.tok.pos
        self.i += 1
        self._expect("(")
        parts: list[str] = []
        while True:
            if self.tok.kind != "num" or "." in self.tok.text:
                self._fail(f"DateTime(...) takes whole numbers: {_DATETIME_FORM}")
            parts.append(self._next().text)
            if self._is_op(","):
                self.i += 1
                continue
            break
        self._expect(")")
        if len(parts) not in (3, 6):
            self._fail(f"DateTime(...) takes 3 or 6 numbers: {_DATETIME_FORM}", pos)
        try:
            # int() refuses over 4300 digits (ValueError); datetime() a year
            # beyond a C long (OverflowError).
            year, month, day, hour, minute, second = [*map(int, parts), 0, 0, 0][:6]
            value = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
        except (ValueError, OverflowError) as exc:
            return self._fail(f"Invalid DateTime({', '.join(parts)}): {exc}", pos)  # type: ignore[no-any-return]
        return _const(value, "datetime")

    def _field(self) -> _Expr:
        schema: Schema | None = self.schema
        path: list[str] = []
        ftype = "object"
        while True:
            tok = self._next()
            if tok.kind != "id":
                self._fail("Field name expected", tok.pos)
            assert schema is not None
            name = schema.resolve(tok.text)
            if name is None:
                self._fail(f"No property or field '{tok.text}' exists in type '{schema.type_name}'", tok.pos)
            assert name is not None
            path.append(name)
            ftype = schema.fields[name]
            child = schema.children.get(name)
            # Descend into a nested object (Contact.Name); anything else after
            # a dot is a method call, handled by _methods.
            if (ftype == "object" and child is not None and self._is_op(".")
                    and self.tokens[self.i + 1].kind == "id" and self.tokens[self.i + 2].text != "("):
                self.i += 1
                schema = child
                continue
            break
        return self._methods(_Expr(_getter(path), ftype))

    def _methods(self, expr: _Expr) -> _Expr:
        # Each call wraps the getter before it: a chain counts towards
        # MAX_NESTING, or a long one would recurse past Python's limit when
        # the predicate runs.
        calls = 0
        while self._is_op("."):
            self.i += 1
            calls += 1
            self._nest()
            tok = self._next()
            if tok.kind != "id":
                self._fail("Method name expected", tok.pos)
            method = tok.text.lower()
            self._expect("(")
            if expr.type != "string":
                self._fail(f"No applicable method '{tok.text}' exists in type "
                           f"'{TYPE_NAMES.get(expr.type, expr.type)}'", tok.pos)
            get = expr.get
            if method in ("tolower", "toupper", "trim"):
                self._expect(")")
                fn = {"tolower": str.lower, "toupper": str.upper, "trim": str.strip}[method]
                expr = _Expr(lambda r, get=get, fn=fn: None if (v := get(r)) is None else fn(v),  # type: ignore[misc]
                             "string")
                continue
            if method in ("contains", "startswith", "endswith"):
                if self.tok.kind != "str":
                    self._fail(f"{tok.text}(...) takes one string literal")
                arg = _unescape(self._next().text[1:-1]).casefold()
                self._expect(")")
                test: Callable[[str, str], bool] = {
                    "contains": lambda v, a: a in v,
                    "startswith": str.startswith,
                    "endswith": str.endswith,
                }[method]
                expr = _Expr(lambda r, get=get, test=test, arg=arg:  # type: ignore[misc]
                             isinstance(v := get(r), str) and test(v.casefold(), arg), "bool")
                continue
            self._fail(f"No applicable method '{tok.text}' exists in type 'String'", tok.pos)
        self.depth -= calls
        return expr

    def _compare(self, left: _Expr, op: str, right: _Expr, pos: int) -> _Expr:
        if left.is_const and not right.is_const:
            left, right = right, left
            op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
        ltype, rtype = left.type, right.type
        incompatible = (f"Operator '{op}' incompatible with operand types "
                        f"'{TYPE_NAMES.get(ltype, ltype)}' and '{TYPE_NAMES.get(rtype, rtype)}'")
        get = left.get
        compare = _COMPARE[op]
        if rtype == "null" or ltype == "null":
            if op not in ("==", "!="):
                self._fail(incompatible, pos)
            other = right if ltype == "null" else left
            oget = other.get
            if op == "==":
                return _Expr(lambda r: oget(r) is None, "bool")
            return _Expr(lambda r: oget(r) is not None, "bool")
        if op not in ("==", "!=") and (ltype not in _ORDERED or rtype not in _ORDERED):
            self._fail(incompatible, pos)
        if ltype == "guid" and rtype in ("guid", "string"):
            norm = _norm_guid
        elif ltype == "string" and rtype in ("string", "guid"):
            norm = _fold
        elif (ltype in _NUMERIC and rtype in _NUMERIC) or ltype == "bool" == rtype:
            norm = _identity
        elif ltype in _DATES and rtype in _DATES:
            norm = _as_datetime
        else:
            return self._fail(incompatible, pos)  # type: ignore[no-any-return]
        if right.is_const:
            const = norm(right.const)
            if op == "!=":  # a missing value differs from any literal
                return _Expr(lambda r: (v := get(r)) is None or compare(norm(v), const), "bool")
            return _Expr(lambda r: (v := get(r)) is not None and compare(norm(v), const), "bool")
        rget = right.get

        def both(r: Record) -> bool:
            a, b = get(r), rget(r)
            if a is None or b is None:
                return compare(a, b) if op in ("==", "!=") else False
            return compare(norm(a), norm(b))

        return _Expr(both, "bool")


def _identity(value: Any) -> Any:
    return value


def _const(value: Any, kind: str) -> _Expr:
    return _Expr(lambda r: value, kind, value, True)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _getter(path: list[str]) -> Getter:
    if len(path) == 1:
        name = path[0]
        return lambda r: r.get(name)
    if len(path) == 2:
        outer, inner = path

        def nested(r: Record) -> Any:
            obj = r.get(outer)
            return obj.get(inner) if isinstance(obj, dict) else None

        return nested

    def deep(r: Record) -> Any:
        obj: Any = r
        for name in path:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(name)
        return obj

    return deep


#: Texts up to this long keep their compiled form (the last 256 of each kind);
#: a longer one (the request line has no limit) is compiled each time rather
#: than held: 256 megabyte-long ``where`` texts held their text twice over.
CACHED_TEXT = 2048
_T = TypeVar("_T")


def _cached_if_short(compile_text: Callable[[str, Schema], _T]) -> Callable[[str, Schema], _T]:
    cached = functools.lru_cache(maxsize=256)(compile_text)

    @functools.wraps(compile_text)
    def compile_maybe_cached(text: str, schema: Schema) -> _T:
        return cached(text, schema) if len(text) <= CACHED_TEXT else compile_text(text, schema)

    return compile_maybe_cached


@_cached_if_short
def compile_where(text: str, schema: Schema) -> Predicate:
    """A predicate for Xero's ``where`` parameter; QueryError if unsupported."""
    return _Parser(text, schema).parse()


# -- order -----------------------------------------------------------------------

_ORDER_ITEM = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)(?:\s+(ASC|DESC|ASCENDING|DESCENDING))?\s*", re.I)


@_cached_if_short
def compile_order(text: str, schema: Schema) -> Callable[[list[Any]], list[Any]]:
    """A sort for Xero's ``order`` parameter (``Name``, ``Name DESC``,
    ``Contact.Name ASC, Date DESC``). Missing values sort first."""
    keys: list[tuple[Getter, bool]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        m = _ORDER_ITEM.fullmatch(item)
        if m is None:
            raise QueryError(f"Syntax error in order: '{item.strip()}' (expected: Field [ASC|DESC])")
        path: list[str] = []
        current: Schema | None = schema
        ftype = "object"
        for part in m.group(1).split("."):
            if current is None:
                raise QueryError(f"No property or field '{part}' exists in type '{ftype}'")
            name = current.resolve(part)
            if name is None:
                raise QueryError(f"No property or field '{part}' exists in type '{current.type_name}'")
            path.append(name)
            ftype = current.fields[name]
            current = current.children.get(name)
        if ftype in ("object", "list"):
            raise QueryError(f"Cannot order by '{m.group(1)}': it is not a single value")
        keys.append((_getter(path), (m.group(2) or "ASC").upper().startswith("DESC")))
    if not keys:
        return lambda records: records

    def sort(records: list[Any]) -> list[Any]:
        result = list(records)
        for get, descending in reversed(keys):
            result.sort(key=lambda r, get=get: _sort_key(get(r)), reverse=descending)  # type: ignore[misc]
        return result

    return sort


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (1, value.casefold())
    return (1, _as_datetime(value))

