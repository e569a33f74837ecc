"""Account-written payload templates, rendered in Jinja's immutable sandbox with bounds.

Why the bounds: a template is code written by an account holder and run on every
message its webhook receives, so besides the sandbox (no attribute tricks, no mutation
of the message data) it gets a source size limit, an output size limit, a size limit on
every value it builds, and a wall-time deadline. Constant folding is off (and filters
and tests are wrapped so Jinja cannot fold them) so compiling never evaluates anything.

Value sizes are checked in two ways:

* before the step, where one step can build a huge value from small operands:
  ``*``, ``**`` and ``%``, concatenation (``~``, which Jinja compiles to a join of its
  own, outside the sandbox's operator hooks: ``_BoundedCodeGenerator`` routes it through
  ``bounded_concat``), ``+``, padding widths (``ljust``, ``center``, ``indent``...), the
  size of a ``join``, ``replace``, ``translate`` or ``expandtabs`` result, ``batch`` and
  ``slice`` counts, and ``lipsum``;
* after the step, for everything else a template can call: the result of every filter,
  test, global and method call, and every buffered block (macros, ``{% set %}`` blocks,
  ``{% filter %}``) is measured (``_check_value``), so no chain of steps grows a value
  past ``MAX_VALUE_CHARS`` characters or ``MAX_ITEMS`` items.

What these checks cannot bound is the time and memory of one call in library code (a
quadratic filter, say) and the total of many values each under the limit: templates are
rendered in conduit.isolation's child processes, whose memory is capped and which are
killed when an item overruns its time budget. The trace-based deadline here is the
friendly part of that budget: it stops template code (loops, recursive macros) with a
clear error before the process has to be killed.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import string
import sys
import time
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any, TypeVar, cast

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.nodes import Concat
from jinja2.runtime import markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

_T = TypeVar("_T")
_Tracer = Callable[[FrameType, str, Any], Any]  # what sys.settrace takes

MAX_SOURCE_BYTES = 64 * 1024
MAX_OUTPUT_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = 2.0
MAX_POWER_BITS = 4096
MAX_FORMAT_WIDTH = 1000
MAX_VALUE_CHARS = 32 * 1024 * 1024  # characters of any one string (or bytes) a template builds
MAX_ITEMS = 1024 * 1024  # items of any one list, tuple, dict or set a template builds
MAX_PIECES = 100_000  # batch sizes and slice counts: the sandbox's own cap on range()
MAX_LIPSUM = (10, 200)  # paragraphs, words per paragraph
_TEMPLATE_FILENAME = "<template>"  # what Jinja names the code of templates made from strings
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?")


class TemplateRenderError(Exception):
    """A valid template failed while rendering (undefined variable, limit hit, sandbox refusal)."""


class _DeadlineExceeded(Exception):
    pass


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, except that ``a ~ b ~ c`` calls ``environment.bounded_concat``.

    Jinja compiles concatenation to a plain join in the template's own code, which the
    sandbox's operator hooks never see; ``code_generator_class`` is the environment's
    documented place to change what is generated.
    """

    def visit_Concat(self, node: Concat, frame: Frame) -> None:  # noqa: N802 - Jinja's visitor naming
        self.write("environment.bounded_concat(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} values cannot be written as JSON")


def _tojson(value: Any) -> str:
    """Compact JSON, not HTML-escaped: payloads are JSON bodies, not HTML attributes."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # noqa: SLF001 - part of Jinja's documented Undefined API
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Intercepts the operators that can build huge values from a short expression."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+":
            if _sized(left) and _sized(right) and len(left) + len(right) > _limit_of(left):
                raise OverflowError("the result of + is too large")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if abs(left) > 1 and right * max(abs(left).bit_length(), 1) > MAX_POWER_BITS:
                    raise OverflowError("the result of ** is too large")
        elif operator == "*":
            for sized, count in ((left, right), (right, left)):
                if isinstance(sized, (str, bytes, list, tuple)) and isinstance(count, int):
                    if len(sized) * count > MAX_OUTPUT_BYTES:
                        raise OverflowError("the result of * is too large")
        elif operator == "%" and isinstance(left, str):
            _check_printf_widths(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        """``"{:>9999999}".format(x)`` in a template: check the widths before formatting."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            for _text, _field, spec, _conversion in string.Formatter().parse(fmt):
                if spec and ("{" in spec or any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec))):
                    raise OverflowError(
                        f"format widths above {MAX_FORMAT_WIDTH} or taken from arguments are not allowed"
                    )
            return wrapped(*args, **kwargs)

        return checked

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes (globals, methods): string methods that can build huge
        values are checked before they run, every result after."""
        owner = getattr(obj, "__self__", None)
        name = getattr(obj, "__name__", None)
        if isinstance(owner, (str, bytes)) and isinstance(name, str):
            args = _check_string_method(owner, name, args, kwargs)
        return _check_value(super().call(context, obj, *args, **kwargs), f"{name or 'a call'}()")

    def bounded_concat(self, eval_ctx: Any, values: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``: the sizes are added up before anything is joined."""
        pieces = [value if isinstance(value, str) else str(value) for value in values]
        if sum(map(len, pieces)) > MAX_VALUE_CHARS:
            raise OverflowError("the result of ~ is too large")
        if eval_ctx.autoescape:  # {% autoescape true %}: escaping can lengthen the pieces
            return _check_value(markup_join(values), "~")
        return "".join(pieces)

    @staticmethod
    def concat(pieces: Any) -> str:
        """What Jinja joins a buffered block's output with (macros, set and filter blocks)."""
        return _check_value("".join(pieces), "a block")


def _sized(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray, list, tuple))


def _limit_of(value: Any) -> int:
    return MAX_VALUE_CHARS if isinstance(value, (str, bytes, bytearray)) else MAX_ITEMS


def _check_value(value: _T, what: str) -> _T:
    """``value``, if it is within the size limits; OverflowError naming ``what`` made it."""
    if isinstance(value, (str, bytes, bytearray)):
        if len(value) > MAX_VALUE_CHARS:
            raise OverflowError(f"the result of {what} is larger than {MAX_VALUE_CHARS} characters")
    elif isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > MAX_ITEMS:
        raise OverflowError(f"the result of {what} has more than {MAX_ITEMS} items")
    return value


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _check_width(width: Any, what: str) -> None:
    size = len(width) if isinstance(width, (str, bytes)) else width
    if isinstance(size, int) and size > MAX_FORMAT_WIDTH:
        raise OverflowError(f"{what} above {MAX_FORMAT_WIDTH} is not allowed")


def _check_size(size: int, what: str) -> None:
    if size > MAX_VALUE_CHARS:
        raise OverflowError(f"the result of {what} is too large")


def _check_join(separator: Any, items: list[Any]) -> None:
    sizes = [len(i) for i in items if isinstance(i, (str, bytes))]
    _check_size(sum(sizes) + len(separator) * max(len(items) - 1, 0), "join")


def _check_replace(value: Any, old: Any, new: Any, count: Any) -> None:
    if not all(isinstance(v, (str, bytes)) for v in (value, old, new)) or len(new) <= len(old):
        return
    times = value.count(old) if old else len(value) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    _check_size(len(value) + times * (len(new) - len(old)), "replace")


def _check_string_method(value: str | bytes, name: str, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Raise OverflowError if the call would build a huge value; returns the (materialised) args."""
    if name in ("ljust", "rjust", "center", "zfill"):
        _check_width(_arg(args, kwargs, 0, "width"), f"{name} width")
    elif name == "expandtabs":
        tabsize = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(tabsize, int):
            tabs = value.count("\t") if isinstance(value, str) else value.count(b"\t")
            _check_size(len(value) + tabs * tabsize, name)
    elif name == "replace":
        old, new, count = (_arg(args, kwargs, i, n) for i, n in enumerate(("old", "new", "count")))
        _check_replace(value, old, new, count)
    elif name == "translate" and isinstance(value, str) and isinstance(table := _arg(args, kwargs, 0, "table"), dict):
        widest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        _check_size(len(value) * widest, name)
    elif name == "join" and args:
        items = list(args[0])  # an iterator can be read once: the call gets the list
        _check_join(value, items)
        args = (items, *args[1:])
    return args


def _filter_join(value: Any, *args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    items = [str(v) for v in value] if _arg(args, kwargs, 1, "attribute") is None else list(value)
    _check_join(_arg(args, kwargs, 0, "d", ""), items)
    return (items, *args), kwargs


def _filter_check(check: Any) -> Any:
    def run(value: Any, *args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        check(value, *args, **kwargs)
        return (value, *args), kwargs
    return run


# Filters that build large values from small arguments: a check run before the filter.
_FILTER_CHECKS = {
    "center": _filter_check(lambda v, *a, **k: _check_width(_arg(a, k, 0, "width", 80), "center width")),
    "indent": _filter_check(lambda v, *a, **k: _check_width(_arg(a, k, 0, "width", 4), "indent width")),
    "batch": _filter_check(lambda v, *a, **k: _check_count(_arg(a, k, 0, "linecount"), "batch size")),
    "slice": _filter_check(lambda v, *a, **k: _check_count(_arg(a, k, 0, "slices"), "number of slices")),
    "replace": _filter_check(lambda v, *a, **k: _check_replace(
        str(v), _arg(a, k, 0, "old"), _arg(a, k, 1, "new"), _arg(a, k, 2, "count"))),
    "join": _filter_join,
}


def _check_count(count: Any, what: str) -> None:
    if isinstance(count, int) and count > MAX_PIECES:
        raise OverflowError(f"a {what} above {MAX_PIECES} is not allowed")


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    """Jinja's ``lipsum``, with its loops (library code the deadline cannot stop) capped."""
    if n > MAX_LIPSUM[0] or max > MAX_LIPSUM[1]:
        raise OverflowError(f"lipsum is limited to {MAX_LIPSUM[0]} paragraphs of {MAX_LIPSUM[1]} words")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _check_printf_widths(fmt: str) -> None:
    for width, precision in _PRINTF_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                raise OverflowError(f"format widths above {MAX_FORMAT_WIDTH} are not allowed")


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """The ``format`` filter is printf-style ``%`` too, so it gets the same width check."""
    _check_printf_widths(str(value))
    formatted: str = DEFAULT_FILTERS["format"](value, *args, **kwargs)
    return formatted


def _at_render_time(func: Any, what: str, check: Any = None) -> Any:
    """Wrap a filter or test so Jinja cannot run it while compiling, and check its result.

    Jinja folds filters on constant arguments at compile time, even with
    ``optimized=False`` (``{{ "a"|center(10**9) }}`` would run inside the API request
    that saves the template); it never folds ``pass_context`` filters.
    """
    kind = getattr(getattr(func, "jinja_pass_arg", None), "name", None)  # set by jinja2's pass_* decorators

    @pass_context
    def wrapper(context: Any, *args: Any, **kwargs: Any) -> Any:
        if check is not None and args:
            args, kwargs = check(*args, **kwargs)
        if kind == "context":
            return _check_value(func(context, *args, **kwargs), what)
        if kind == "eval_context":
            return _check_value(func(context.eval_ctx, *args, **kwargs), what)
        if kind == "environment":
            return _check_value(func(context.environment, *args, **kwargs), what)
        return _check_value(func(*args, **kwargs), what)

    return wrapper


def _make_environment() -> _BoundedEnvironment:
    env = _BoundedEnvironment(autoescape=False, undefined=StrictUndefined, optimized=False)
    env.filters["tojson"] = _tojson
    env.filters["format"] = _format_filter
    env.filters = {name: _at_render_time(func, f"|{name}", _FILTER_CHECKS.get(name))
                   for name, func in env.filters.items()}
    env.tests = {name: _at_render_time(func, f"is {name}") for name, func in env.tests.items()}
    env.globals["lipsum"] = _lipsum
    return env


_ENV = _make_environment()


def compile_template(source: str) -> Template:
    """Compile a payload template, raising ValueError ``payload_template ...`` naming the problem
    (the line of a syntax error; nesting too deep for the parser or for Python's compiler).

    Cached by source: the worker renders the same few templates over and over.
    """
    if not isinstance(source, str):
        raise ValueError("payload_template must be a string")
    return _compile(source)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    if len(source.encode("utf-8", errors="surrogatepass")) > MAX_SOURCE_BYTES:
        raise ValueError(f"payload_template is larger than {MAX_SOURCE_BYTES // 1024} KiB")
    try:
        return _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"payload_template line {exc.lineno}: {exc.message}") from None
    except (RecursionError, SyntaxError) as exc:  # the parser's recursion; Python's limits on nested blocks
        reason = "" if isinstance(exc, RecursionError) else f" ({exc.msg})"
        raise ValueError(f"payload_template is nested too deeply to compile{reason}") from None
    except MemoryError:
        raise ValueError("payload_template needs too much memory to compile") from None


def render_template(
    template: str | Template,
    context: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    deadline: float | None = None,
) -> str:
    """Render with the output streamed and capped, under a wall-time deadline.

    The deadline (``time.monotonic()`` + ``timeout``, or ``deadline`` when given: the end
    of the budget of the item being rendered) is enforced by a trace function on the
    template's own code in this thread (checked on every template line, so loops that
    print nothing still stop); the previous trace function (debugger, coverage) is
    restored afterwards. MemoryError is not turned into TemplateRenderError: the caller
    (a renderer process near its memory limit) has to know.
    """
    if isinstance(template, str):
        try:
            template = compile_template(template)
        except ValueError as exc:
            raise TemplateRenderError(str(exc)) from None
    if deadline is None:
        deadline = time.monotonic() + timeout
    chunks: list[str] = []
    size = 0
    stream = cast(Generator[str, None, None], template.generate(context))  # Jinja's generate is a generator
    previous_trace = sys.gettrace()
    sys.settrace(_deadline_tracer(deadline))
    try:
        for chunk in stream:
            size += len(chunk.encode("utf-8", errors="surrogatepass"))
            if size > max_output_bytes:
                raise TemplateRenderError(f"payload_template output is larger than {max_output_bytes} bytes")
            if time.monotonic() > deadline:
                raise _DeadlineExceeded
            chunks.append(chunk)
    except (TemplateRenderError, MemoryError):
        raise
    except _DeadlineExceeded:
        raise TemplateRenderError(time_budget_exceeded(timeout)) from None
    except Exception as exc:  # noqa: BLE001 - any error of a user's template becomes its render error
        raise TemplateRenderError(_describe(exc)) from None
    finally:
        sys.settrace(previous_trace)
        stream.close()
    return "".join(chunks)


def time_budget_exceeded(timeout: float) -> str:
    """The error of a template stopped by its deadline, or killed at the end of its budget."""
    return f"payload_template exceeded its time budget of {timeout:g} s"


def memory_budget_exceeded(memory_mb: int) -> str:
    """The error of a template whose renderer process ran out of its memory."""
    return f"payload_template exceeded its memory budget of {memory_mb} MiB"


def _deadline_tracer(deadline: float) -> _Tracer:
    def line_tracer(frame: FrameType, event: str, arg: Any) -> _Tracer:  # noqa: ARG001 - sys.settrace's signature
        if time.monotonic() > deadline:
            raise _DeadlineExceeded
        return line_tracer

    def call_tracer(frame: FrameType, event: str, arg: Any) -> _Tracer | None:
        if frame.f_code.co_filename != _TEMPLATE_FILENAME:
            return None  # only template code is traced: cheap for everything else
        return line_tracer(frame, event, arg)

    return call_tracer


def _describe(exc: Exception) -> str:
    """``payload_template line N: message``, the line taken from Jinja's rewritten traceback."""
    lineno = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    message = str(exc) or type(exc).__name__
    if not isinstance(exc, (OverflowError, ValueError)) and type(exc).__module__ != "jinja2.exceptions":
        message = f"{type(exc).__name__}: {message}"
    return f"payload_template line {lineno}: {message}" if lineno else f"payload_template: {message}"
