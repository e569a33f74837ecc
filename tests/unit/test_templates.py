import datetime
import json
import sys
import time

import pytest
from jinja2 import Template

from conduit.mail.templates import (
    MAX_OUTPUT_BYTES,
    MAX_SOURCE_BYTES,
    TemplateRenderError,
    compile_template,
    render_template,
)

MESSAGE = {
    "message": {
        "from": "Ann <ann@example.com>",
        "subject": 'Quote "this" <b>&</b> é',
        "to": ["a@example.com", "b@example.com"],
        "headers": {"x-id": "42"},
        "received_at": datetime.datetime(2026, 4, 2, 12, 0, tzinfo=datetime.UTC),
    }
}


# -- compiling ------------------------------------------------------------------------


def test_compile_returns_a_template():
    assert isinstance(compile_template("{{ 1 }}"), Template)


def test_compile_is_cached_by_source():
    assert compile_template("{{ message.subject }}") is compile_template("{{ message.subject }}")


def test_syntax_error_names_the_line():
    with pytest.raises(ValueError, match=r"^payload_template line 3: .*'endfor'"):
        compile_template('{\n  "a": 1,\n  {% for x in y %}\n}')


def test_unknown_filter_is_a_compile_error():
    with pytest.raises(ValueError, match="payload_template line 1: No filter named 'nope'"):
        compile_template("{{ x|nope }}")


def test_source_size_limit():
    compile_template("x" * MAX_SOURCE_BYTES)
    with pytest.raises(ValueError, match="larger than 64 KiB"):
        compile_template("x" * (MAX_SOURCE_BYTES + 1))
    with pytest.raises(ValueError, match="larger than 64 KiB"):
        compile_template("é" * (MAX_SOURCE_BYTES // 2 + 1))  # counted in UTF-8 bytes


def test_compile_refuses_non_strings():
    with pytest.raises(ValueError, match="must be a string"):
        compile_template(["{{ 1 }}"])  # type: ignore[arg-type]


def test_compiling_never_evaluates_expressions():
    # Jinja folds constant expressions while compiling; these would take seconds and gigabytes.
    started = time.monotonic()
    compile_template('{{ "a"|center(500000000)|length }}')
    compile_template("{{ 2 ** 10000000 }}")
    compile_template('{{ "a" * 500000000 }}')
    assert time.monotonic() - started < 1


# -- rendering ----------------------------------------------------------------------------


def test_render_json_payload():
    source = (
        '{"subject": {{ message.subject|tojson }}, "to": {{ message.to|tojson }}, '
        '"at": {{ message.received_at|tojson }}}'
    )
    output = render_template(source, MESSAGE)
    assert json.loads(output) == {
        "subject": 'Quote "this" <b>&</b> é',
        "to": ["a@example.com", "b@example.com"],
        "at": "2026-04-02T12:00:00+00:00",
    }
    assert '"to": ["a@example.com","b@example.com"]' in output  # compact, not HTML-escaped
    assert "<b>&</b> é" in output


def test_no_autoescape():
    assert render_template("{{ message.subject }}", MESSAGE) == 'Quote "this" <b>&</b> é'


def test_render_accepts_compiled_template():
    assert render_template(compile_template("{{ message.headers['x-id'] }}"), MESSAGE) == "42"


def test_loops_and_filters_work():
    source = "{% for r in message.to %}{{ loop.index }}={{ r|upper }};{% endfor %}{{ [3,1,2]|sort|join(',') }}"
    assert render_template(source, MESSAGE) == "1=A@EXAMPLE.COM;2=B@EXAMPLE.COM;1,2,3"


def test_small_operations_still_work():
    assert render_template(
        '{{ 2 ** 10 }} {{ "ab" * 3 }} {{ "%05d"|format(7) }} {{ "%-3s|" % "x" }} {{ "{:>4}".format(1) }}', {}
    ) == ("1024 ababab 00007 x  |    1")


def test_undefined_variable_is_an_error_with_line():
    with pytest.raises(TemplateRenderError, match=r"^payload_template line 2: 'dict object' has no attribute 'nope'"):
        render_template("ok\n{{ message.nope }}", MESSAGE)


def test_undefined_in_tojson_is_an_error():
    with pytest.raises(TemplateRenderError, match="'missing' is undefined"):
        render_template("{{ missing|tojson }}", {})


def test_default_filter_handles_missing_values():
    assert render_template('{{ message.cc|default("none") }}', MESSAGE) == "none"


def test_non_json_values_are_an_error():
    with pytest.raises(TemplateRenderError, match="object values cannot be written as JSON"):
        render_template("{{ x|tojson }}", {"x": object()})


def test_runtime_error_names_type_and_line():
    with pytest.raises(TemplateRenderError, match="payload_template line 1: ZeroDivisionError: division by zero"):
        render_template("{{ 1 / 0 }}", {})


def test_render_of_invalid_source_raises_render_error():
    with pytest.raises(TemplateRenderError, match="payload_template line 1"):
        render_template("{% if %}", {})


# -- sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ message.__class__ }}",
        "{{ message.to.append('x') }}",
        "{{ message.headers.update({'a': 1}) }}",
        "{{ '{0.__class__}'.format(1) }}",
        '{{ message|attr("__class__") }}',
    ],
)
def test_sandbox_refuses_unsafe_access(source):
    with pytest.raises(TemplateRenderError, match=r"unsafe|not safely callable"):
        render_template(source, MESSAGE)
    assert MESSAGE["message"]["to"] == ["a@example.com", "b@example.com"]


# -- bounds -------------------------------------------------------------------------------


def test_output_size_limit():
    with pytest.raises(TemplateRenderError, match=f"output is larger than {MAX_OUTPUT_BYTES} bytes"):
        render_template("{% for i in range(20000) %}{{ big }}{% endfor %}", {"big": "x" * 100})
    assert len(render_template("{{ big }}", {"big": "x" * MAX_OUTPUT_BYTES})) == MAX_OUTPUT_BYTES


def test_output_size_limit_is_in_utf8_bytes_and_configurable():
    assert render_template("{{ s }}", {"s": "é" * 5}, max_output_bytes=10) == "é" * 5
    with pytest.raises(TemplateRenderError, match="larger than 9 bytes"):
        render_template("{{ s }}", {"s": "é" * 5}, max_output_bytes=9)


def test_range_is_capped():
    with pytest.raises(TemplateRenderError, match="Range too big"):
        render_template("{% for i in range(10000000) %}{% endfor %}", {})


def test_deadline_stops_loops_that_print_nothing():
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateRenderError, match=r"exceeded its time budget of 0\.3 s"):
        render_template(source, {}, timeout=0.3)
    assert time.monotonic() - started < 2


def test_deadline_stops_recursive_macros_that_print():
    source = (
        "{% macro m(n) %}x{% for i in range(100) %}{{ m(n + 1) if n < 50 else '' }}{% endfor %}{% endmacro %}{{ m(0) }}"
    )
    with pytest.raises(TemplateRenderError, match=r"exceeded its time budget of 0\.3 s|output is larger"):
        render_template(source, {}, timeout=0.3)


def test_previous_trace_function_is_restored():
    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        render_template("{{ 1 }}", {})
        with pytest.raises(TemplateRenderError):
            render_template(
                "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", {}, timeout=0.1
            )
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 2 ** 100000 }}", "result of \\*\\* is too large"),
        ("{{ n ** n }}", "result of \\*\\* is too large"),
        ('{{ "a" * 100000000 }}', "result of \\* is too large"),
        ("{{ 100000000 * [1] }}", "result of \\* is too large"),
        ('{{ "%0999999999d" % 1 }}', "format widths above 1000"),
        ('{{ "%(a)999999999s" % {"a": 1} }}', "format widths above 1000"),
        ('{{ "%*d" % (5, 1) }}', "format widths above 1000"),
        ('{{ "%09999999d"|format(1) }}', "format widths above 1000"),
        ('{{ "{:>99999999}".format(1) }}', "format widths above 1000"),
        ('{{ "{:>{w}}".format(1, w=5) }}', "taken from arguments"),
    ],
)
def test_operators_that_build_huge_values_are_capped(source, message):
    with pytest.raises(TemplateRenderError, match=message):
        render_template(source, {"n": 100000})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # ~ compiles to a join of its own; the sizes are added up before anything is joined.
        ("{% set s = 'x' * 1000000 %}{{ (" + " ~ ".join(["s"] * 1500) + ")|length }}", "the result of ~ is too large"),
        (("{% set s = 'x' * 1000000 %}{% set ns = namespace(v='') %}"
          "{% for i in range(100) %}{% set ns.v = ns.v ~ s %}{% endfor %}"), "the result of ~ is too large"),
        ("{% set s = 'x' * 1000000 %}{{ (" + " + ".join(["s"] * 40) + ")|length }}", "the result of \\+ is too large"),
        # A buffered block: a macro's output is joined into one value.
        (("{% set s = 'x' * 1000000 %}{% macro m() %}{% for i in range(40) %}{{ s }}{% endfor %}{% endmacro %}"
          "{{ m()|length }}"), "the result of a block is larger than"),
        # Results of any filter and any method call are measured, whichever they are.
        ("{% set s = 'x' * 1000000 %}{{ ([s] * 40)|tojson|length }}", "the result of \\|tojson is larger than"),
        ("{{ ((',' * 1000000) ~ (',' * 100000)).split(',')|length }}", "the result of split\\(\\) has more than"),
    ],
)
def test_every_value_a_template_builds_is_bounded(source, message):
    with pytest.raises(TemplateRenderError, match=message):
        render_template(source, {})


def test_concatenation_still_concatenates():
    assert render_template("{{ 'a' ~ 1 ~ none ~ [2] }}", {}) == "a1None[2]"
    assert render_template("{% autoescape true %}{{ '<' ~ x }}{% endautoescape %}", {"x": "&"}) == "&lt;&amp;"
    assert render_template("{% macro m() %}ab{% endmacro %}{{ m() ~ 'c' }}{{ 1 is odd }}", {}) == "abcTrue"


@pytest.mark.parametrize(
    "source",
    [
        "{{ a" + "|lower" * 1000 + " }}",
        "{% if a %}" * 300 + "x" + "{% endif %}" * 300,
        "{{ " + "[" * 500 + "]" * 500 + " }}",
        "{% for a in b %}" * 100 + "{% endfor %}" * 100,  # Python's own limit on nested blocks
    ],
)
def test_nesting_too_deep_to_compile_is_a_value_error(source):
    with pytest.raises(ValueError, match=r"^payload_template is nested too deeply to compile"):
        compile_template(source)


def test_memory_errors_are_left_to_the_caller():
    """A renderer process near its memory limit must see MemoryError, not a template error."""
    def exhausted(*args, **kwargs):
        raise MemoryError

    env_template = compile_template("{{ f() }}")
    with pytest.raises(MemoryError):
        render_template(env_template, {"f": exhausted})


def test_an_explicit_deadline_is_the_one_enforced():
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateRenderError, match="exceeded its time budget of 5 s"):
        render_template(source, {}, timeout=5, deadline=time.monotonic() + 0.1)
