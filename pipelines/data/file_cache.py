"""What the reader learnt about each file, kept for later epochs and runs: its verdict and its image size.

The reader checks a file the first time it reads it (:func:`read_checked`), in the order the files are served, and
records the outcome here: a memory-mapped file per dataset (per list of paths) in the cache folder
(``$DALI_OCCLUSION_CACHE``, else ``$XDG_CACHE_HOME/dali_occlusion/verified`` or ``~/.cache/...``), one 56-byte
record per file, which the reader workers of every rank of the node share. A record holds the file's identity --
device, inode, size, mtime and ctime in nanoseconds, from the ``fstat`` of the open file the reader already makes --
and what was learnt: the image's (EXIF-oriented) height and width and how far it was checked (the header, or all of
it). A later read whose ``fstat`` matches uses the record: no check, no header probe. A file replaced, rewritten,
touched, or restored with an old mtime (``cp -p``, ``touch -d``: the ctime still moves, and a copy has a new inode)
no longer matches and is checked again: no user-level call sets a ctime back. That is what "unchanged" means here;
the content is not hashed (that would cost a pass over the bytes on every read). A bad file is never recorded: it is
checked (and refused) every time. A record carries the image's size, so it is judged by the pixel limit in use: an
image above twice the limit is checked again (and refused) whatever limit it was recorded under.

A damaged record file (truncated, overwritten, of another version, unreadable) is named in a warning and rebuilt
empty, written aside and renamed over the old one (a file truncated under another process's mapping would kill that
process); a record file that vanishes or cannot be mapped later turns into a warning and a check on every read.

Costs: 56 bytes per file in the cache folder (72 MB for ImageNet's 1.28 M training files) and none per read beyond
the ``fstat``. Records are written without locks: a writer first invalidates the record, then writes the result,
then the identity; a reader that catches a record half-written sees an identity that does not match and checks
the file again.
"""
from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
from PIL import Image

from pipelines.data.imagefiles import check_image, read_image_file

RECORD = np.dtype([("dev", "<i8"), ("ino", "<i8"), ("size", "<i8"), ("mtime_ns", "<i8"), ("ctime_ns", "<i8"),
                   ("height", "<i4"), ("width", "<i4"), ("level", "<i1"), ("pad", "V7")])
HEADER = 64
MAGIC = b"dali-occlusion file records v1\n"
#: how far a recorded file was checked: its header (its size is known), or all of it (``verify="full"``)
HEADER_READ, FULLY_CHECKED = 1, 2
LEVELS = {"none": HEADER_READ, "header": HEADER_READ, "full": FULLY_CHECKED}


def cache_dir() -> str:
    """Where the per-dataset record files live (``DALI_OCCLUSION_CACHE`` overrides)."""
    env = os.environ.get("DALI_OCCLUSION_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dali_occlusion", "verified")


def _damage(path: str, size: int) -> str | None:
    """Why the record file at ``path`` cannot be used as the records of ``size`` bytes (``"missing"`` when there is
    none), or ``None`` when it can."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot open it for reading and writing: {exc.strerror or exc}"
    try:
        head, actual = os.pread(fd, HEADER, 0), os.fstat(fd).st_size
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    finally:
        os.close(fd)
    if head[:len(MAGIC)] != MAGIC:
        return ("written by another version" if head.startswith(MAGIC[:MAGIC.index(b" v")]) else
                "not a records file")
    if actual != size:
        return f"{actual} bytes where the records of this list take {size}: truncated or overwritten"
    return None


def _create(path: str, size: int) -> None:
    """An empty record file of ``size`` bytes at ``path``, written aside and renamed over whatever was there: a
    process that maps the old file keeps it (a file truncated under a mapping would kill that process)."""
    temp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        os.pwrite(fd, MAGIC.ljust(HEADER, b"\0"), 0)
    finally:
        os.close(fd)
    os.replace(temp, path)


class FileRecords:
    """The record file of one list of paths (see the module docstring); picklable, opened lazily in each process."""

    def __init__(self, path, num_files: int):
        self.path, self.num_files = str(path), int(num_files)
        self._records = None

    @classmethod
    def for_paths(cls, paths, directory: str | None = None) -> "FileRecords | None":
        """The records of ``paths`` (created empty when missing; a damaged file -- truncated, overwritten, of
        another version, unreadable -- is set aside with a warning naming it and rebuilt empty); ``None``, with a
        warning, when the cache folder cannot be written (every file is then checked on every read)."""
        items = [os.fspath(p) for p in paths]
        directory = cache_dir() if directory is None else directory
        key = hashlib.sha256("\n".join(items).encode("utf-8", "surrogateescape")).hexdigest()[:32]
        path = os.path.join(directory, f"{key}.records")
        size = HEADER + len(items) * RECORD.itemsize
        try:
            os.makedirs(directory, exist_ok=True)
            damage = _damage(path, size)
            if damage is not None:
                if damage != "missing":
                    warnings.warn(f"ignoring the file records {path} ({damage}): rebuilt empty, so each file is "
                                  f"checked again on its first read", stacklevel=3)
                _create(path, size)
        except OSError as exc:
            warnings.warn(f"cannot keep the file records in {directory} ({exc}): every file is checked again each "
                          f"time it is read (set DALI_OCCLUSION_CACHE to a writable folder)", stacklevel=3)
            return None
        return cls(path, len(items))

    def __getstate__(self):
        return {**self.__dict__, "_records": None}

    @property
    def records(self) -> np.ndarray | None:
        """The records, mapped on first use in this process; ``None`` (with a warning, once) when the file went bad
        since the constructor checked it: the reader then checks every file it reads."""
        if self._records is None:
            try:
                self._records = np.memmap(self.path, RECORD, "r+", HEADER, (self.num_files,))
            except (OSError, ValueError) as exc:
                warnings.warn(f"cannot use the file records {self.path} ({exc}): every file is checked again each "
                              f"time it is read", stacklevel=2)
                self._records = False
        return self._records if self._records is not False else None

    def lookup(self, index: int, st: os.stat_result, level: int):
        """``(height, width)`` recorded for file ``index`` at its identity ``st``, checked at least to ``level``;
        ``None`` when there is no such record."""
        records = self.records
        if records is None:
            return None
        r = records[index]
        if (r["level"] >= level and r["size"] == st.st_size and r["mtime_ns"] == st.st_mtime_ns
                and r["ctime_ns"] == st.st_ctime_ns and r["ino"] == st.st_ino and r["dev"] == st.st_dev):
            return int(r["height"]), int(r["width"])
        return None

    def store(self, index: int, st: os.stat_result, level: int, height: int, width: int) -> None:
        records = self.records
        if records is None:
            return
        records[index]["size"] = -1  # invalid while it is written
        records[index]["level"] = level
        records[index]["height"] = height
        records[index]["width"] = width
        for name in ("dev", "ino", "mtime_ns", "ctime_ns"):
            records[index][name] = getattr(st, "st_" + name)
        records[index]["size"] = st.st_size  # last: a record that matches is complete


def read_checked(path: str, index: int, records: FileRecords | None, verify: str) -> tuple[bytes, int, int]:
    """The bytes of image file ``path`` (number ``index`` of its list) and its (EXIF-oriented) height and width,
    checked as ``verify`` says (``"full"``, ``"header"``, ``"none"``: see :class:`pipelines.loader.runtime.Runtime`)
    unless ``records`` holds the outcome for this very file. Raises :class:`~pipelines.data.imagefiles.BadImageError` naming
    the file."""
    data, st = read_image_file(path)  # refuses a FIFO, a device, an oversized file before reading it
    level = LEVELS[verify]
    known = records.lookup(index, st, level) if records is not None else None
    limit = Image.MAX_IMAGE_PIXELS  # a record made under a larger limit (or none) does not pass this one's bombs
    if known is not None and (limit is None or known[0] * known[1] <= 2 * limit):
        return data, known[0], known[1]
    info = check_image(path, full=verify == "full", data=data)
    if records is not None:
        records.store(index, st, level, info.height, info.width)
    return data, info.height, info.width
