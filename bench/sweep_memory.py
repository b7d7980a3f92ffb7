"""Peak memory of the occlusion sweep (``pipelines.tools.occlusion_sweep.run_sweep``) against the number of validation
images: the streamed sweep (one batch held at a time) and, for comparison, the former way of holding every batch of
the split before sweeping (``--hold``, what the sweep did before issue 22).

Each measurement runs in its own process (``--child``): the peak resident set of that process
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``; DALI's reader workers are other processes and not counted) after
the sweep, at 224 px, batch 50, on demo validation images; the model is a pooling + linear stand-in (memory, not
accuracy, is measured). Two split sizes; the streamed peak should not move, the held one grows by about
``N * 3 * 224 * 224 * 4`` bytes. The children run with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``):
its default dynamic threshold keeps freed batch-sized (30 MB) tensors in the heap, and the resident set then
wanders by about 100 MB from batch to batch whatever the split size, which would hide the comparison.

    python -m bench.sweep_memory --sizes 250,1000 --out results/sweep_memory.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import conditions, write_json

SIZE, BATCH, CLASSES = 224, 50, 10
MMAP_THRESHOLD = "131072"  # glibc's default initial threshold, kept fixed


def child(root: Path, hold: bool) -> dict:
    import torch

    from pipelines import OcclusionLoader
    from pipelines.tools.occlusion_sweep import run_sweep

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, CLASSES))
    val = OcclusionLoader(root, BATCH, train=False, output_size=SIZE, device="cpu", seed=0, last_batch="pad",
                          runtime=dict(num_threads=2, py_workers=1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batches = list(val) if hold else val  # the former sweep held every batch of the split
    result = run_sweep(model, batches, "cpu", SIZE)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    val.close()
    return {"images": result["conditions"][0]["images"], "conditions": len(result["conditions"]),
            "peak_rss_mb": peak / 1024, "rss_before_sweep_mb": before / 1024}


def dataset(folder: Path, images: int) -> Path:
    from pipelines.data.demo_data import ensure_demo_data

    root = ensure_demo_data(folder / f"demo{images}", train_per_class=1, val_per_class=images // CLASSES,
                            num_classes=CLASSES, workers=2)
    return root / "val"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="250,1000", help="validation images per measurement, comma separated")
    p.add_argument("--out", type=Path, default=Path("results/sweep_memory.json"))
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.hold)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for images in (int(v) for v in args.sizes.split(",")):
            root = dataset(Path(tmp), images)
            for hold in (False, True):
                cmd = [sys.executable, "-m", "bench.sweep_memory", "--child", str(root)] + (["--hold"] if hold else [])
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=MMAP_THRESHOLD)
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                row = {"mode": "held (before issue 22)" if hold else "streamed", **json.loads(out.stdout.splitlines()[-1])}
                rows.append(row)
                print(row, flush=True)
    payload = {"conditions": conditions(image_size=SIZE, batch=BATCH, model="AdaptiveAvgPool2d(4) + Linear",
                                        malloc_mmap_threshold=int(MMAP_THRESHOLD)),
               "results": rows}
    print(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
