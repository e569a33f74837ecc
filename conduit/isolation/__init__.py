"""Where untrusted work runs: parsing a message and rendering its payload template.

Both run on attacker-controlled input (the mail) or account-written code (the template),
so they run in renderer processes (``RenderPool``), never on an event loop that serves
other work: each process has a memory limit of its own and each item a time budget, and
one account's slow items leave a process free for everyone else's.
"""

from __future__ import annotations

from conduit.isolation.payloads import (
    OwnedDestination,
    RendererBusy,
    RenderFailed,
    check_template,
    default_deadline,
    render_body,
)
from conduit.isolation.pool import RenderPool, Reply

__all__ = ["OwnedDestination", "RenderFailed", "RenderPool", "RendererBusy", "Reply", "check_template",
           "default_deadline", "render_body"]
