"""`conduit serve`'s metrics directory: its worker children are processes of their own, so their
metrics are written to files (prometheus-client's multiprocess mode) that the API process adds
up at each scrape.

prometheus-client picks file-backed values when it is imported, if PROMETHEUS_MULTIPROC_DIR is
set: this module imports nothing of it, and ``private_directory`` must run before anything that
does. The children inherit the variable; the directory is made fresh (a leftover file of a
former run would count twice) and removed at exit. A serve that was killed (SIGKILL) cannot
remove its own: the next one removes the directories of serve processes that no longer run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "conduit-metrics-"


@contextmanager
def private_directory(parent: str | None = None) -> Iterator[str]:
    """A new directory, private to this user, named in PROMETHEUS_MULTIPROC_DIR while it lasts
    (in ``parent``, by default the system's temporary directory)."""
    parent = parent or tempfile.gettempdir()
    _remove_orphans(parent)
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent)
    previous = os.environ.get(VARIABLE)
    os.environ[VARIABLE] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = previous
        shutil.rmtree(path, ignore_errors=True)


def _remove_orphans(parent: str) -> None:
    """Remove this user's metrics directories whose serve process is gone."""
    for entry in Path(parent).glob(f"{PREFIX}*-*"):
        pid = entry.name.removeprefix(PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or entry.stat().st_uid != os.getuid() or not entry.is_dir():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue  # alive under another user, or unreadable: not ours to remove


def directory() -> str | None:
    """The metrics directory this process writes to, if it is one of several."""
    path = os.environ.get(VARIABLE)
    return path if path and os.path.isdir(path) else None
