"""The dashboard: static files (HTML, ES modules, CSS) served by the API at ``/``.

No build step: the files under ``static/`` are what the browser loads, shipped as package
data. The dashboard is a client of the public REST API and holds no rules of its own.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
INDEX_HTML = STATIC_DIR / "index.html"
