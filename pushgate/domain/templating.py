"""Jinja2 templates of notifications, rendered in a sandbox (docs/templates.md). Pure: no I/O.

Templates are written by an app (its admin key) but rendered inside the gateway, once per
device, so the environment is locked down: Jinja2's immutable sandbox (no ``__class__`` and
friends, no mutating methods), no loader (no file access, no ``include``/``import``), strict
undefined variables (a typo is an error, not an empty string), no globals (no ``range``,
``namespace``, ``lipsum``), a short list of filters, no macros and no nested or recursive
loops, operators that could build huge values (``*``, ``**``, ``%``) checked, attributes limited
to a short allowlist (:data:`_ALLOWED_ATTRIBUTES`: a few ``str`` methods and ``loop``'s members;
nothing of ``bytes``, ``int`` or ``list``), every rendered field cut off past :data:`MAX_OUTPUT`
characters (an error, never a truncated notification), and every rendering cut off past its
deadline (:data:`RENDER_BUDGET`: CPU, not only memory, is bounded). Compiled templates are cached
by their source.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: The longest a rendered field may be (characters); past it the rendering fails.
MAX_OUTPUT = 8192
#: The largest exponent ``**`` accepts (``10 ** 10 ** 10`` would hold a worker for ever).
MAX_EXPONENT = 64
#: The largest integer ``**`` makes (``(9 ** 64) ** 64 ** …`` grows without bound otherwise).
MAX_BITS = 4096
#: Compiled templates kept (by source text).
CACHE_SIZE = 4096
#: Seconds one rendering (every field of one device's content, or one field rendered alone)
#: may take. Real templates take microseconds (docs/templates.md measures them); a template
#: that loops over sorting is cut here rather than holding a worker for minutes.
RENDER_BUDGET = 0.1
#: Seconds all of a publish's locale variants may take together when admission renders them
#: (up to 101 variants, each also within :data:`RENDER_BUDGET`), in a worker thread.
ADMISSION_BUDGET = 0.5
#: The deepest ``template.data`` accepted (objects and lists inside each other).
MAX_DATA_DEPTH = 32

#: Filters a template may use: text shaping whose output is bounded by its input.
ALLOWED_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "int", "last",
    "length", "list", "lower", "round", "string", "title", "trim", "truncate", "upper",
    "urlencode", "sort", "unique", "min", "max", "sum", "reverse", "striptags",
)  # fmt: skip
#: The only attributes a template reads besides its variables' members: ``str`` methods whose
#: result is no larger than the string (not ``ljust``/``zfill``/``replace``/``format``/``encode``,
#: which make a value as large as an argument says, nor anything giving ``bytes``), and the loop's
#: counters. Everything else (every method of ``bytes``, ``int``, ``list``, ``dict``) is refused
#: like the sandbox refuses ``__class__``: ``(1).to_bytes(2**40, 'big')`` is a terabyte.
_ALLOWED_ATTRIBUTES: dict[type, frozenset[str]] = {
    str: frozenset(
        "lower upper title capitalize casefold swapcase strip lstrip rstrip startswith endswith "
        "split rsplit splitlines partition rpartition count find rfind removeprefix removesuffix "
        "isalpha isalnum isdigit isdecimal isnumeric isspace islower isupper istitle".split()
    ),
    LoopContext: frozenset(
        "index index0 revindex revindex0 first last length depth depth0 previtem nextitem cycle".split()
    ),
}


class _Timeout(Exception):
    """A rendering past its deadline (raised inside Jinja2, reported as a TemplateError)."""


_clock = threading.local()


@contextlib.contextmanager
def deadline(seconds: float = RENDER_BUDGET) -> Iterator[None]:
    """Renderings inside share one deadline ``seconds`` from now (an enclosing one that ends
    sooner wins). Per thread: dispatch renders devices in a worker thread."""
    before: float | None = getattr(_clock, "deadline", None)
    ends = time.monotonic() + seconds
    _clock.deadline = ends if before is None else min(before, ends)
    try:
        yield
    finally:
        _clock.deadline = before


def _check_clock() -> None:
    ends: float | None = getattr(_clock, "deadline", None)
    if ends is not None and time.monotonic() > ends:
        raise _Timeout


def _timed(f: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks the deadline before and after it runs (``|sort|sort|sort``)."""

    @functools.wraps(f)  # keeps Jinja2's ``jinja_pass_arg`` marker
    def timed(*args: Any, **kwargs: Any) -> Any:
        _check_clock()
        out = f(*args, **kwargs)
        _check_clock()
        return out

    return timed


def data_depth(value: Any) -> int:
    """How deeply objects and lists nest in ``value`` (a scalar: 0, ``{}``: 1); iterative, so
    a value nested thousands deep is measured, not a RecursionError."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; ``field`` is where (``template.title``,
    ``template.locales.de.body``, ``template.data.order``), the message says which variable or
    construct and why."""

    def __init__(self, field: str, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        #: The rendering was cut by its deadline (:data:`RENDER_BUDGET`).
        self.timed_out = timed_out


class Vars(dict[str, Any]):
    """A variable namespace that knows its own path (``device.meta``), so an undefined member is
    reported as ``device.meta.name is undefined`` rather than Jinja2's ``'dict object' has no
    attribute 'name'``."""

    def __init__(self, path: str, items: Mapping[str, Any]) -> None:
        super().__init__(items)
        self.path = path


class Anything(Vars):
    """Stands for what only the device knows (its ``meta`` and ``tags``) when a template is
    checked at admission: every member is defined, with a short sample value."""

    def __missing__(self, key: str) -> str:
        return "sample"


def wrap(path: str, value: Any) -> Any:
    """JSON data as template variables: objects become :class:`Vars` (their paths named)."""
    if isinstance(value, Mapping):
        return Vars(path, {str(k): wrap(f"{path}.{k}", v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(f"{path}[{i}]", v) for i, v in enumerate(value)]
    return value


def _join(value: Any, d: str = "", attribute: Any = None) -> str:
    """The ``join`` filter, refusing a result over :data:`MAX_OUTPUT` before building it
    (``data.long | join(data.long)`` would otherwise square the input)."""
    del attribute
    items = [str(x) for x in value]
    size = sum(len(x) for x in items) + len(str(d)) * max(len(items) - 1, 0)
    if size > MAX_OUTPUT:
        raise SecurityError(f"'join' would make a value over {MAX_OUTPUT} characters")
    return str(d).join(items)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        _check_clock()
        if op == "*":
            numbers = (int, float)
            if not (isinstance(left, numbers) and isinstance(right, numbers)):
                text, times = (left, right) if isinstance(left, str) else (right, left)
                if not (isinstance(text, str) and isinstance(times, int)):
                    raise SecurityError("'*' repeats only text (and multiplies numbers)")
                if len(text) * times > MAX_OUTPUT:
                    raise SecurityError(f"'*' would make a value over {MAX_OUTPUT} characters")
            return operator.mul(left, right)
        if op == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"'**' takes exponents up to {MAX_EXPONENT}")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > MAX_BITS:
                raise SecurityError(f"'**' would make a number over {MAX_BITS} bits")
            return operator.pow(left, right)
        if isinstance(left, str | bytes):
            raise SecurityError("'%' formatting of strings is not allowed; use '~' to join text")
        if not (isinstance(left, int | float) and isinstance(right, int | float)):
            raise SecurityError("'%' takes numbers only")
        return operator.mod(left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_clock()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_clock()
        # Members of a variable namespace before any dict method: ``data.items`` is the data's
        # ``items`` field, and a missing one is reported by its full path.
        if isinstance(obj, Vars):
            if attribute in obj or isinstance(obj, Anything):
                return obj[attribute]
            return self.undefined(hint=f"{obj.path}.{attribute} is undefined", obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Vars) and isinstance(argument, str):
            return self.getattr(obj, argument)
        return super().getitem(obj, argument)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        allowed = _ALLOWED_ATTRIBUTES.get(type(obj), frozenset())
        return attr in allowed and bool(super().is_safe_attribute(obj, attr, value))

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is refused (is_safe_attribute), not sandboxed


def _environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, loader=None)
    env.globals.clear()
    env.filters = {name: _timed(env.filters[name]) for name in ALLOWED_FILTERS}
    env.filters["join"] = _timed(_join)
    env.tests = {name: env.tests[name] for name in ("defined", "undefined", "none", "number", "string")}
    return env


ENV = _environment()


#: Statements a notification template may not use, by the keyword that writes them.
_REFUSED: dict[type[nodes.Node], str] = {
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.Import: "import",
    nodes.FromImport: "from import",
    nodes.Include: "include",
    nodes.Assign: "set",
    nodes.AssignBlock: "set",
    nodes.With: "with",
}


def _check_tree(tree: nodes.Template) -> None:
    """Constructs the sandbox does not bound: macros (recursion), imports, nested loops, and
    assignments (``{% set a = a ~ a %}`` forty times over is a terabyte)."""
    for node in tree.find_all(tuple(_REFUSED)):
        raise SecurityError(f"'{_REFUSED[type(node)]}' is not allowed in a notification template")
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            raise SecurityError("recursive loops are not allowed")
        if any(True for _ in loop.find_all(nodes.For)):
            raise SecurityError("loops inside loops are not allowed")
    if any(True for _ in tree.find_all(nodes.Extends)):
        raise SecurityError("'extends' is not allowed (templates have no files)")


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled(source: str) -> Any:
    tree = ENV.parse(source)
    _check_tree(tree)
    return ENV.from_string(tree)


def compile_source(field: str, source: str) -> None:
    """Compile ``source`` (cached) or raise :class:`TemplateError` naming ``field``."""
    try:
        _compiled(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(field, f"syntax error on line {exc.lineno}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(field, f"not allowed: {exc}") from None


@functools.lru_cache(maxsize=CACHE_SIZE)
def names_read(source: str) -> frozenset[str]:
    """The top-level variables ``source`` reads (``data``, ``device``, …); empty for plain text
    or a template that does not compile (its rendering reports that)."""
    if "{" not in source:
        return frozenset()
    try:
        return frozenset(meta.find_undeclared_variables(ENV.parse(source)))
    except TemplateSyntaxError:
        return frozenset()


def render_field(field: str, source: str, variables: Mapping[str, Any]) -> str:
    """``source`` rendered with ``variables``; raises :class:`TemplateError` for a syntax error,
    an undefined variable, a sandbox refusal, an operation that fails (out of memory included),
    an output past :data:`MAX_OUTPUT` characters (stopped as it streams, never built whole), or
    a rendering past its deadline (the enclosing :func:`deadline`, else :data:`RENDER_BUDGET`)."""
    if "{" not in source:
        return source  # plain text: nothing to render (most fields of most templates)
    compile_source(field, source)
    with deadline():
        return _render(field, source, variables)


def _render(field: str, source: str, variables: Mapping[str, Any]) -> str:
    out: list[str] = []
    size = 0
    try:
        for piece in _compiled(source).generate(variables):
            _check_clock()
            size += len(piece)
            if size > MAX_OUTPUT:
                raise TemplateError(field, f"renders to more than {MAX_OUTPUT} characters")
            out.append(piece)
    except UndefinedError as exc:
        message = str(exc)
        if "unsafe" in message:
            raise TemplateError(field, f"not allowed by the sandbox: {message}") from None
        raise TemplateError(field, f"{message} (give it, or use '| default(...)')") from None
    except SecurityError as exc:
        raise TemplateError(field, f"not allowed by the sandbox: {exc}") from None
    except _Timeout:
        reason = (
            f"rendering took longer than its time budget and was stopped ({RENDER_BUDGET * 1000:.0f} ms "
            f"per device, {ADMISSION_BUDGET * 1000:.0f} ms for all locale variants at admission); "
            "a notification template must not loop over heavy work (sort, list, long text)"
        )
        raise TemplateError(field, reason, timed_out=True) from None
    except TemplateError:
        raise
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError, MemoryError) as exc:
        raise TemplateError(field, f"{type(exc).__name__}: {exc}") from None
    return "".join(out)


def render_tree(field: str, value: Any, variables: Mapping[str, Any]) -> Any:
    """Every string leaf of a JSON value rendered (object keys are not templates)."""
    if isinstance(value, str):
        return render_field(field, value, variables)
    if isinstance(value, Mapping):
        return {k: render_tree(f"{field}.{k}", v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(f"{field}[{i}]", v, variables) for i, v in enumerate(value)]
    return value


def sources(field: str, value: Any) -> Iterator[tuple[str, str]]:
    """``(field, source)`` of every string leaf, to compile a template when it is stored."""
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from sources(f"{field}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from sources(f"{field}[{i}]", v)
