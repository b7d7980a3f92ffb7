"""List the unreadable image files of a dataset before training spends an epoch on them.

    python -m pipelines.verify ROOT [--header-only] [--workers N]
    python -m pipelines.verify --list FILE [--root DIR]

Prints one ``path: reason`` line per bad file. Exit status 0 when every file is readable, 1 when
some are not, 2 when the dataset itself cannot be listed (missing root, no class folders, a bad
file list). By default every file is fully decoded (catches truncated and corrupt data);
``--header-only`` checks only what the loader's default ``verify="header"`` checks.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from pipelines.imagefiles import BadImageError, check_image, read_file_list, scan_image_folder


def find_bad_images(paths, full: bool = True, workers: int | None = None) -> list[tuple[str, str]]:
    """``(path, reason)`` for every file of ``paths`` that is not a usable image, in input order.

    Threads suffice: Pillow releases the GIL while it decodes.
    """
    def check(path):
        try:
            check_image(path, full=full)
            return None
        except BadImageError as exc:
            return exc.path, exc.reason

    workers = workers or min(32, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [r for r in pool.map(check, [os.fspath(p) for p in paths], chunksize=64) if r is not None]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", nargs="?", help="ImageFolder root (root/<class>/<image>)")
    p.add_argument("--list", dest="file_list", help="a file of 'path label' lines instead of a folder")
    p.add_argument("--header-only", action="store_true", help="check headers only (fast; misses truncated data)")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    if not args.root and not args.file_list:
        p.error("give an ImageFolder ROOT or --list FILE (ROOT is then the base of relative paths)")
    try:
        if args.file_list:
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
