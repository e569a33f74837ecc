"""``Link`` headers (RFC 8288) for the list endpoints that page with ``page``: the body stays the
spec's bare array, and a client follows ``rel="next"`` to the end instead of guessing it from a
short page.

Targets are path-absolute references (RFC 3986 4.2), resolved against the request's URL: right
behind a proxy that rewrites the scheme or host too. Every other query parameter is kept.
"""

from __future__ import annotations

from fastapi import Request


def page_links(request: Request, *, page: int, has_next: bool) -> str:
    """The header's value (empty when there is neither a next nor a previous page)."""
    links = []
    if has_next:
        links.append(f'<{_page_url(request, page + 1)}>; rel="next"')
    if page > 1:
        links.append(f'<{_page_url(request, page - 1)}>; rel="prev"')
    return ", ".join(links)


def _page_url(request: Request, page: int) -> str:
    url = request.url.include_query_params(page=page)
    return f"{url.path}?{url.query}"
