"""List the unreadable image files of a dataset before training spends an epoch on them.

    python -m pipelines.data.verify ROOT [--header-only] [--workers N]
    python -m pipelines.data.verify --list FILE [--root DIR]

Prints one ``path: reason`` line per bad file. Exit status 0 when every file is readable, 1 when
some are not, 2 when the dataset itself cannot be listed (missing root, no class folders, a bad
file list). By default every file is fully decoded (catches truncated and corrupt data);
``--header-only`` checks only what the loader's ``Runtime(verify="header")`` checks.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import warnings
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from PIL import Image

from pipelines.data.imagefiles import BadImageError, check_image, read_file_list, scan_image_folder


_CHUNK = 64  # files per pool task


@contextmanager
def pixel_limit(max_image_pixels):
    """Pillow's decompression-bomb limit set to ``max_image_pixels`` (``None``: no limit) for the block."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_chunk(paths: list[str], full: bool) -> list[tuple[str, str]]:
    bad = []
    for path in paths:
        try:
            check_image(path, full=full)
        except BadImageError as exc:
            bad.append((exc.path, exc.reason))
        except Exception as exc:  # anything else would still stop a training run on this file
            bad.append((path, f"{type(exc).__name__}: {exc}"))
    return bad


def find_bad_images(paths, full: bool = True, workers: int | None = None) -> list[tuple[str, str]]:
    """``(path, reason)`` for every file of ``paths`` that is not a usable image, in input order.

    ``full=False`` parses headers only (misses truncated data). Threads suffice: Pillow releases
    the GIL while it decodes. Files go to the pool in chunks of 64 with at most ``4 * workers``
    chunks in flight, so a million-file list does not become a million futures.
    """
    items = [os.fspath(p) for p in paths]
    workers = min(32, (os.cpu_count() or 1) + 2) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    chunks = [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    if workers == 1 or len(chunks) <= 1:
        return [b for c in chunks for b in _check_chunk(c, full)]
    out: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        for chunk in chunks:
            pending.append(pool.submit(_check_chunk, chunk, full))
            if len(pending) >= 4 * workers:
                out.extend(pending.popleft().result())
        while pending:
            out.extend(pending.popleft().result())
    return out


#: Where :func:`verify_cached` keeps its per-dataset files (override with ``DALI_OCCLUSION_CACHE``).
def cache_dir() -> str:
    env = os.environ.get("DALI_OCCLUSION_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dali_occlusion", "verified")


def _stamps(paths: list[str]) -> np.ndarray:
    """``(N, 2)`` int64 ``(size, mtime_ns)`` per file, ``(-1, -1)`` when it cannot be stat-ed."""
    out = np.full((len(paths), 2), -1, np.int64)
    for i, path in enumerate(paths):
        try:
            st = os.stat(path)
        except OSError:
            continue
        out[i] = st.st_size, st.st_mtime_ns
    return out


def verify_cached(paths, workers: int | None = None, directory: str | None = None
                  ) -> tuple[list[tuple[str, str]], int]:
    """Fully decode every file of ``paths`` not already verified at its current size and mtime.

    Returns ``(bad, checked)``: :func:`find_bad_images`'s ``(path, reason)`` list and how many files
    were decoded this time. A file that decoded cleanly is remembered in ``directory`` (one ``.npz``
    per path list, keyed by a hash of the list) with its ``(size, mtime_ns)``; a later run only
    ``stat``s it, so only the first run over a dataset pays for decoding (and later runs pay less
    than the old header check, which opened every file). A file replaced or touched since changes
    size or mtime and is decoded again. Bad files are never remembered. When the cache cannot be
    read or written the check still runs in full (with a warning for an unwritable cache).
    """
    items = [os.fspath(p) for p in paths]
    directory = cache_dir() if directory is None else directory
    key = hashlib.sha256("\n".join(items).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    cache_file = os.path.join(directory, f"{key}.npz")
    stamps = _stamps(items)
    known = np.zeros((len(items), 2), np.int64) - 2
    try:
        with np.load(cache_file) as cached:
            if cached["stamps"].shape == stamps.shape:
                known = cached["stamps"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass
    todo = np.flatnonzero((stamps != known).any(axis=1) | (stamps[:, 0] < 0))
    bad = find_bad_images([items[i] for i in todo], full=True, workers=workers) if todo.size else []
    bad_paths = {p for p, _ in bad}
    verified = known.copy()
    for i in todo:
        verified[i] = (-2, -2) if items[i] in bad_paths else stamps[i]
    if todo.size:
        try:
            os.makedirs(directory, exist_ok=True)
            tmp = f"{cache_file}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                np.savez(fh, stamps=verified)
            os.replace(tmp, cache_file)  # atomic: concurrent ranks never read half a file
        except OSError as exc:
            warnings.warn(f"cannot write the verification cache {cache_file} ({exc}); every run will decode "
                          f"all files again (set DALI_OCCLUSION_CACHE to a writable folder)", stacklevel=2)
    return bad, int(todo.size)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", nargs="?", help="ImageFolder root (root/<class>/<image>); with --list, "
                   "the folder relative paths are under (default: the list's folder)")
    p.add_argument("--root", dest="root_opt", metavar="DIR", help="same as the positional ROOT")
    p.add_argument("--list", dest="file_list", help="a file of 'path label' lines instead of a folder")
    p.add_argument("--header-only", action="store_true", help="check headers only (fast; misses truncated data)")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    if args.root and args.root_opt and args.root != args.root_opt:
        p.error(f"two different roots given: {args.root!r} and --root {args.root_opt!r}")
    args.root = args.root or args.root_opt
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    if not args.root and not args.file_list:
        p.error("give an ImageFolder ROOT or --list FILE (ROOT is then the base of relative paths)")
    try:
        if args.file_list:
            if args.root and not os.path.isdir(args.root):
                raise FileNotFoundError(f"root {args.root!r} (base of the list's relative paths) is not a folder")
            paths, _ = read_file_list(args.file_list, root=args.root)
        else:
            paths, _, _ = scan_image_folder(args.root)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = find_bad_images(paths, full=not args.header_only, workers=args.workers)
    for path, reason in bad:
        print(f"{path}: {reason}")
    print(f"{len(bad)} of {len(paths)} files unreadable", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
