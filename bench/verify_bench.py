"""Cost of the reader's file check (``Runtime(verify="full")``), per million ImageNet-weight JPEGs.

The reader checks each file the first time it reads it (:func:`pipelines.data.file_cache.read_checked`): the
header, then a JPEG's entropy-coded data walked code by code (:mod:`pipelines.data.jpeg_scan`); later reads of the
same file find its record and check nothing. Timed on ``make_imagenet_like`` JPEGs (~110 KB, 500x375) in the page
cache, one thread, and scaled to 10**6 files: the first read, a recorded read, the header-only check
(``verify="header"``) and, for comparison, Pillow's strict decode at 1/8 scale (the check until issue 20).

    python -m bench.verify_bench [--images 1000] [--out results/verify_bench.json]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench.common import conditions, pillow_draft_decode, write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--out", default="results/verify_bench.json")
    args = p.parse_args(argv)
    from pipelines.data.demo_data import make_imagenet_like
    from pipelines.data.file_cache import FileRecords, read_checked
    from pipelines.data.imagefiles import scan_image_folder
    from pipelines.data.jpeg_scan import compile_walk

    compile_walk()
    root = make_imagenet_like(n=args.images) / "train"
    paths, _, _ = scan_image_folder(root)
    for path in paths:  # warm the page cache: measure checking, not the disk
        with open(path, "rb") as fh:
            fh.read()

    out = {}
    with tempfile.TemporaryDirectory() as cache:
        records = FileRecords.for_paths(paths, directory=cache)
        for name, verify, use in (("first_read", "full", records), ("recorded_read", "full", records),
                                  ("header_only", "header", None)):
            start = time.perf_counter()
            for i, path in enumerate(paths):
                read_checked(path, i, use, verify)
            out[f"{name}_s"] = time.perf_counter() - start
    start = time.perf_counter()
    for path in paths:
        pillow_draft_decode(path)
    out["pillow_strict_decode_s"] = time.perf_counter() - start
    scale = 1e6 / len(paths)
    result = {
        "files": len(paths), "threads": 1,
        "mean_file_bytes": sum(os.path.getsize(p) for p in paths) / len(paths),
        "per_million_files_s": {k[:-2]: v * scale for k, v in out.items()},
        "per_file_ms": {k[:-2]: v / len(paths) * 1e3 for k, v in out.items()},
    }
    print(result)
    write_json(args.out, {"conditions": conditions(), "result": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
