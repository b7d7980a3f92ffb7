"""List the unreadable image files of a dataset before training spends an epoch on them.

    python -m pipelines.data.verify ROOT [--header-only] [--workers N]
    python -m pipelines.data.verify --list FILE [--root DIR]

Prints one ``path: reason`` line per bad file. Exit status 0 when every file is readable, 1 when
some are not, 2 when the dataset itself cannot be listed (missing root, no class folders, a bad
file list). By default every file is fully decoded (catches truncated and corrupt data) and a JPEG's entropy-coded data
is walked (:mod:`pipelines.data.jpeg_scan`), as the loader's reader does with ``Runtime(verify="full")``;
``--header-only`` checks only what ``Runtime(verify="header")`` checks. The loader itself never makes this
pass: its reader checks each file when it first reads it.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from pipelines.data.imagefiles import BadImageError, check_image, progress_bar, read_file_list, scan_image_folder


_CHUNK = 64  # files per pool task


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


def find_bad_images(paths, full: bool = True, workers: int | None = None,
                    progress: bool | None = None) -> list[tuple[str, str]]:
    """``(path, reason)`` for every file of ``paths`` that is not a usable image, in input order.

    ``full=False`` parses headers only (misses truncated data). Threads suffice: Pillow and the JPEG
    walk release the GIL while they decode. Files go to the pool in chunks of 64 with at most
    ``4 * workers`` chunks in flight, so a million-file list does not become a million futures. A
    pass of more than a few seconds shows its progress on stderr (``progress``:
    :func:`pipelines.data.imagefiles.show_progress`).
    """
    items = [os.fspath(p) for p in paths]
    workers = min(32, (os.cpu_count() or 1) + 2) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    chunks = [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    out: list[tuple[str, str]] = []
    with progress_bar(total=len(items), progress=progress, unit="file", desc="checking images") as bar:
        if workers == 1 or len(chunks) <= 1:
            for chunk in chunks:
                out.extend(_check_chunk(chunk, full))
                bar.update(len(chunk))
            return out
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = deque()
            for chunk in chunks:
                pending.append((len(chunk), pool.submit(_check_chunk, chunk, full)))
                if len(pending) >= 4 * workers:
                    size, future = pending.popleft()
                    out.extend(future.result())
                    bar.update(size)
            while pending:
                size, future = pending.popleft()
                out.extend(future.result())
                bar.update(size)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", nargs="?", help="ImageFolder root (root/<class>/<image>); with --list, "
                   "the folder relative paths are under (default: the list's folder)")
    p.add_argument("--root", dest="root_opt", metavar="DIR", help="same as the positional ROOT")
    p.add_argument("--list", dest="file_list", help="a file of 'path label' lines instead of a folder")
    p.add_argument("--header-only", action="store_true", help="check headers only (fast; misses truncated data)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr for a pass of more than a few seconds (default: when stderr is a "
                        "terminal)")
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
            paths, _, _ = scan_image_folder(args.root, progress=args.progress)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = find_bad_images(paths, full=not args.header_only, workers=args.workers, progress=args.progress)
    for path, reason in bad:
        print(f"{path}: {reason}")
    print(f"{len(bad)} of {len(paths)} files unreadable", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
