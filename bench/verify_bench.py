"""Cost of the loader's default corrupt-file check (``Runtime(verify="full")``), per million ImageNet-sized JPEGs.

First run over a dataset: every file is fully decoded (Pillow, strict, DCT-domain 1/8 scaling) on the
loader's thread pool; later runs only ``stat`` each file against the verification cache. Both are
timed on ``make_imagenet_like`` JPEGs (~110 KB, 500x375) and scaled to 10**6 files; the header-only
check (the old default) is timed alongside.

    python -m bench.verify_bench [--images 1000] [--out results/verify_bench.json]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench.common import conditions, write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--out", default="results/verify_bench.json")
    args = p.parse_args(argv)
    from pipelines.data.demo_data import make_imagenet_like
    from pipelines.data.imagefiles import scan_image_folder
    from pipelines.data.verify import find_bad_images, verify_cached

    root = make_imagenet_like(n=args.images) / "train"
    paths, _, _ = scan_image_folder(root)
    workers = max(2, os.cpu_count() or 2)  # what OcclusionLoader uses
    for path in paths:  # warm the page cache: measure decoding, not the disk
        with open(path, "rb") as fh:
            fh.read()
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        bad, checked = verify_cached(paths, workers=workers, directory=cache)
        out["first_run_s"] = time.perf_counter() - t
        assert not bad and checked == len(paths)
        t = time.perf_counter()
        bad, checked = verify_cached(paths, workers=workers, directory=cache)
        out["cached_run_s"] = time.perf_counter() - t
        assert checked == 0
    t = time.perf_counter()
    find_bad_images(paths, full=False, workers=workers)
    out["header_only_s"] = time.perf_counter() - t
    scale = 1e6 / len(paths)
    result = {
        "files": len(paths), "workers": workers,
        "mean_file_bytes": sum(os.path.getsize(p) for p in paths) / len(paths),
        "per_million_files_s": {k.replace("_s", ""): v * scale for k, v in out.items()},
        "per_file_ms": {k.replace("_s", ""): v / len(paths) * 1e3 for k, v in out.items()},
    }
    print(result)
    write_json(args.out, {"conditions": conditions(), "result": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
