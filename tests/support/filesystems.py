"""Real storage faults for the SQLite file: a small tmpfs that fills up, and an ext4 image that the
kernel switches to read-only under running processes.

Why not chmod: the tests run as root, and root writes through file modes. Why not `mount -o
remount,ro`: Linux refuses it (EBUSY) while any file is open for writing, and a running Conduit
always holds its database open. ext4's own error handling is what turns a disk read-only under
open files in real life (errors=remount-ro); /sys/fs/ext4/<dev>/trigger_fs_error raises exactly
that error on demand, after which every write, through old and new file descriptors alike, fails
with EROFS. That state lasts until the filesystem is unmounted, checked and mounted again.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _must(*command: str) -> None:
    result = _run(*command)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr.strip()}"


def require_mounts(tmp_path: Path, *, ext4: bool = False) -> None:
    """Skip, saying exactly why, where this machine cannot mount a filesystem (not root, or no
    CAP_SYS_ADMIN in a container) or, for ``ext4``, has no e2fsprogs or loop devices; the suite's
    machines can, so CI runs these tests."""
    if ext4:
        missing = [tool for tool in ("mkfs.ext4", "e2fsck", "findmnt") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"storage fault test needs {', '.join(missing)} (apt-get install e2fsprogs util-linux)")
        if not Path("/dev/loop-control").exists():
            pytest.skip("storage fault test needs loop devices (/dev/loop-control is missing)")
    probe = tmp_path / "mount-probe"
    probe.mkdir()
    result = _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (`mount -t tmpfs` said: {result.stderr.strip()}); "
                    "storage fault tests need root with CAP_SYS_ADMIN")
    _must("umount", str(probe))


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "8m") mounted at ``path``: a disk that can really run out of space."""
    path.mkdir(parents=True, exist_ok=True)
    _must("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        if _run("umount", str(path)).returncode != 0:
            _run("umount", "-l", str(path))  # a child still holding files: detach, freed when it exits


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC; returns the filler."""
    filler = directory / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    while True:  # the tail: a partly free last block takes smaller writes
        try:
            with filler.open("ab", buffering=0) as out:
                out.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            return filler


class Ext4Image:
    """An ext4 filesystem in a file, loop-mounted with errors=remount-ro at ``mountpoint``."""

    def __init__(self, image: Path, mountpoint: Path, size_mb: int = 32) -> None:
        self.image, self.mountpoint = image, mountpoint
        _must("truncate", "-s", f"{size_mb}M", str(image))
        _must("mkfs.ext4", "-q", "-F", str(image))
        mountpoint.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        _must("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mountpoint))

    def unmount(self) -> None:
        if _run("umount", str(self.mountpoint)).returncode != 0:
            _run("umount", "-l", str(self.mountpoint))

    def _device(self) -> str:
        source = _run("findmnt", "-n", "-o", "SOURCE", str(self.mountpoint)).stdout.strip()
        assert source.startswith("/dev/"), f"{self.mountpoint} is not mounted ({source!r})"
        return os.path.basename(source)

    def go_read_only(self) -> None:
        """Raise an ext4 error: the kernel makes the mounted filesystem read-only at once."""
        Path(f"/sys/fs/ext4/{self._device()}/trigger_fs_error").write_text("conduit storage fault test\n")
        probe = self.mountpoint / "write-probe"
        try:
            probe.write_bytes(b"x")
        except OSError as exc:
            assert exc.errno == errno.EROFS, exc
        else:
            raise AssertionError("the filesystem still takes writes")

    def repair(self) -> None:
        """What an operator does: unmount, fsck, mount again (the error state survives remount)."""
        for _ in range(100):  # a worker child of a stopped `conduit serve` may still be closing files
            if _run("umount", str(self.mountpoint)).returncode == 0:
                break
            time.sleep(0.1)
        else:
            _must("umount", str(self.mountpoint))
        result = _run("e2fsck", "-f", "-y", str(self.image))
        assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: errors corrected
        self.mount()


@contextmanager
def ext4_image(directory: Path, size_mb: int = 32) -> Iterator[Ext4Image]:
    fs = Ext4Image(directory / "disk.img", directory / "disk", size_mb)
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()
