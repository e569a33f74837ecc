"""Print the README's table of the webhook payload, made from conduit/mail/payload_schema.py.

    .venv/bin/python tools/payload_table.py            # print the table
    .venv/bin/python tools/payload_table.py --write    # replace it in README.md

The table sits in README.md between the BEGIN and END markers below; a test
(tests/unit/test_payload_schema.py) fails when it differs from what this script prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from conduit.mail.payload_schema import EmailReceived

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- payload table: made by tools/payload_table.py from conduit/mail/payload_schema.py -->"
END = "<!-- end of payload table -->"


def _resolve(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return definitions[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _type(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """A short type for people: string, string or null, list of objects, one of `a`, `b`."""
    if "anyOf" in schema:
        return " or ".join(_type(s, definitions) for s in schema["anyOf"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    schema = _resolve(schema, definitions)
    kind = schema.get("type")
    if kind == "array":
        item = _type(schema.get("items", {}), definitions)
        return f"list of {item}s" if " " not in item else f"list of ({item})"
    return {"object": "object", "string": "string", "boolean": "boolean", "integer": "integer",
            "number": "number", "null": "null"}.get(kind or "", "any")


def _rows(schema: dict[str, Any], definitions: dict[str, Any], prefix: str, expanded: dict[str, str]) -> list[str]:
    rows = []
    for name, prop in schema["properties"].items():
        path = f"{prefix}{name}"
        description = prop.get("description", "").replace("|", "\\|")
        target = prop.get("items", prop) if prop.get("type") == "array" else prop
        # An object that may be null: its fields are listed as those of the object.
        target = next((s for s in target.get("anyOf", ()) if "$ref" in s), target)
        ref = target.get("$ref", "").rsplit("/", 1)[-1]
        nested = path + ("[]." if prop.get("type") == "array" else ".")
        if ref and ref in expanded:
            description += f" Each as in `{expanded[ref]}`."
        rows.append(f"| `{path}` | {_type(prop, definitions)} | {description} |")
        if ref and ref not in expanded:
            expanded[ref] = nested.rstrip(".")
            rows += _rows(definitions[ref], definitions, nested, expanded)
    return rows


def table() -> str:
    schema = EmailReceived.model_json_schema(by_alias=True)
    definitions = schema.get("$defs", {})
    lines = ["| field | type | content |", "| --- | --- | --- |", *_rows(schema, definitions, "", {})]
    return "\n".join(lines) + "\n"


def readme_table(text: str) -> str:
    """The table as README.md holds it now."""
    start = text.index(BEGIN) + len(BEGIN) + 1
    return text[start:text.index(END)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = parser.parse_args()
    if not args.write:
        sys.stdout.write(table())
        return 0
    text = README.read_text()
    start = text.index(BEGIN) + len(BEGIN) + 1
    README.write_text(text[:start] + table() + text[text.index(END):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
