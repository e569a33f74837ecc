"""Plain text of an HTML body, for mail that has no text/plain part (inscriptis renders it).

inscriptis lays HTML out as a browser's text mode would (blocks, paragraphs, lists with bullets,
``<pre>``, hidden elements left out); it fetches nothing, and lxml's parser is told not to use the
network either. What it is given is bounded, because the HTML comes from anyone:

- only the first ``MAX_HTML_CHARS`` characters are converted;
- lxml stops at 255 levels of nesting (the rest of the document is then missing, with a warning),
  which also keeps inscriptis's recursion, one call per level, within Python's limit;
- the output cannot grow faster than the input: inline styles are read only for ``display`` and
  ``white-space`` (a ``padding-left`` or ``margin-top`` of 100,000 em would otherwise be written
  out for every line), lists deeper than ``MAX_LIST_INDENT`` levels are not indented further,
  and table rows are written one per line with their cells side by side rather than aligned in
  columns (alignment pads every row to the widest cell: quadratic output for a hostile table,
  and mostly trailing spaces for the layout tables of HTML mail).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lxml.etree
import lxml.html
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_engine import Inscriptis
from inscriptis.html_properties import Display, WhiteSpace
from inscriptis.model.config import ParserConfig
from inscriptis.model.css import CssParse
from inscriptis.model.html_document_state import HtmlDocumentState
from inscriptis.model.html_element import HtmlElement
from inscriptis.model.tag import CustomHtmlTagHandlerMapping
from inscriptis.model.tag.list_tag import ol_start_handler, ul_start_handler

MAX_HTML_CHARS = 1024 * 1024
MAX_LIST_INDENT = 8  # list levels that are indented
CELL_SEPARATOR = "  "

# The browser defaults (inscriptis's "strict" profile), with tables as rows of cells.
_CSS = {
    **CSS_PROFILES["strict"],
    "table": HtmlElement(display=Display.block),
    "caption": HtmlElement(display=Display.block),
    "tr": HtmlElement(display=Display.block),
}


@dataclass
class HtmlText:
    """The text of an HTML body (None when it could not be made) and what went wrong."""

    text: str | None
    warnings: list[str] = field(default_factory=list)


def html_to_text(html: str) -> HtmlText:
    """The text an HTML body shows; never raises."""
    result = HtmlText(None)
    if len(html) > MAX_HTML_CHARS:
        html = html[:MAX_HTML_CHARS]
        result.warnings.append(f"the HTML part is longer than {MAX_HTML_CHARS} characters; "
                               "text was derived from its beginning")
    try:
        tree, too_deep = _parse(html)
        if too_deep:
            result.warnings.append("the HTML part is nested too deeply; text after that point is missing")
        result.text = _lines(Inscriptis(tree, _config()).get_text()) if tree is not None else ""
    except Exception:  # noqa: BLE001 - hostile HTML must not fail a delivery: no text, with a warning
        result.warnings.append("text could not be derived from the HTML part")
    return result


def _parse(html: str) -> tuple[lxml.html.HtmlElement | None, bool]:
    """The document tree (None for a document without elements), and whether lxml stopped at
    its nesting limit."""
    html = html.strip()
    if html.startswith("<?xml"):  # lxml refuses an XML declaration in a str
        html = html[html.find("?>") + 2 :] if "?>" in html else ""
    parser = lxml.html.HTMLParser(no_network=True, remove_comments=True, remove_pis=True)  # one per call: not shareable
    try:
        tree = lxml.html.document_fromstring(html, parser=parser)
    except lxml.etree.ParserError:  # "Document is empty": nothing but whitespace or comments
        return None, False
    too_deep = any(entry.type_name == "ERR_RESOURCE_LIMIT" for entry in parser.error_log)
    return tree, too_deep


def _lines(text: str) -> str:
    """Without the spaces that end lines and the blank lines that begin and end the text."""
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _config() -> ParserConfig:
    """A configuration per conversion: the table handlers keep state for the document."""
    tables = _Tables()
    config = ParserConfig(
        css=_CSS,
        custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping(
            start_tag_mapping={
                "table": tables.table_start, "tr": tables.row_start, "td": tables.cell_start, "th": tables.cell_start,
                "ul": _list_start(ul_start_handler), "ol": _list_start(ol_start_handler),
            },
            end_tag_mapping={"table": tables.table_end, "td": _nothing, "th": _nothing},
        ),
    )
    config.attribute_handler.attribute_mapping = {"style": _visibility}
    return config


def _visibility(style: str, element: HtmlElement) -> None:
    """Of an inline style, only what decides whether and how text shows: ``display`` and
    ``white-space`` (lengths such as padding are not rendered: they could be huge)."""
    for directive in style.lower().split(";"):
        name, _, value = directive.partition(":")
        name = name.strip()
        if name == "display":
            CssParse.attr_display(value.strip(), element)
        elif name == "white-space":
            CssParse.attr_white_space(value.strip(), element)


_StartHandler = Callable[[HtmlDocumentState, dict[str, str]], None]


def _list_start(handler: _StartHandler) -> _StartHandler:
    """inscriptis's list handler, then no further indentation past ``MAX_LIST_INDENT`` levels."""
    def start(state: HtmlDocumentState, attributes: dict[str, str]) -> None:
        handler(state, attributes)
        if len(state.li_counter) > MAX_LIST_INDENT:
            state.tags[-1].padding_inline = 0
    return start


def _nothing(state: HtmlDocumentState) -> None:
    """Table cells need no end handling: they are inline text."""


class _Tables:
    """Rows on lines of their own, cells separated by ``CELL_SEPARATOR`` (per nested table)."""

    def __init__(self) -> None:
        self.cells_in_row: list[int] = []

    def table_start(self, state: HtmlDocumentState, attributes: dict[str, str]) -> None:
        self.cells_in_row.append(0)

    def table_end(self, state: HtmlDocumentState) -> None:
        if self.cells_in_row:
            self.cells_in_row.pop()

    def row_start(self, state: HtmlDocumentState, attributes: dict[str, str]) -> None:
        if self.cells_in_row:
            self.cells_in_row[-1] = 0

    def cell_start(self, state: HtmlDocumentState, attributes: dict[str, str]) -> None:
        if not self.cells_in_row:
            return
        if self.cells_in_row[-1]:
            cell = state.tags[-1]
            cell.canvas.write(cell, CELL_SEPARATOR, WhiteSpace.pre)
        self.cells_in_row[-1] += 1
