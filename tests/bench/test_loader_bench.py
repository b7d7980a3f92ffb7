"""``bench.loader_bench --data ROOT``: times a user's ImageFolder tree with every contender, timm's loader with
its Mixup included, and the model-bound mode against cached batches (small runs on the demo train split)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--repeats", "1", "--batches", "2", "--warmup", "1", "--batch-size", "4", "--image-size", "48",
         "--workers", "1", "--reader-workers", "1"]


def _bench(args, out):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bench.loader_bench", *args, *SMALL, "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return json.loads(Path(out).read_text())


def test_data_root_with_timm_and_model_bound_mode(tiny_dataset, tmp_path):
    res = _bench(["--data", str(tiny_dataset / "train"), "--methods", "none,cutmix_mixup", "--model", "resnet18"],
                 tmp_path / "bench.json")
    names = set(res["results"])
    assert names == {"ours:none", "ours:cutmix_mixup", "torchvision", "dali_readers_file", "timm_mixup", "cached"}
    assert all(r["median"] > 0 for r in res["results"].values())
    c = res["conditions"]
    assert c["images"] == 24 and c["image_size"] == 48 and c["model"] == "resnet18"
    assert c["data"] == str(tiny_dataset / "train")
    for name in names - {"cached"}:
        assert res["ratios"][f"loader_efficiency_{name}"] > 0
    assert "ours_cutmix_mixup_vs_timm_mixup" in res["ratios"]
    assert res["unit"].startswith("training-loop images/s")


def test_dataset_root_means_its_train_split(tiny_dataset):
    import argparse

    from bench.loader_bench import data_root

    args = argparse.Namespace(data=str(tiny_dataset), images=0)
    assert data_root(args) == tiny_dataset / "train"
