"""Plus addressing and catch-alls: how a recipient address maps onto a webhook's address."""

from __future__ import annotations

CATCH_ALL = "*"  # the local part of a catch-all address, ``*@domain``


def split_plus(local: str) -> tuple[str, str | None]:
    """Split a recipient's local part at the first ``+``: ``("name", "tag")`` for ``name+tag``.

    A local part starting with ``+`` has no base, so it is returned whole with no tag.
    Case is left alone; callers lower-case before matching.
    """
    base, plus, tag = local.partition("+")
    if not plus or not base:
        return local, None
    return base, tag
