"""The occlusion-robustness sweep: its conditions follow Fong & Vedaldi's grids and CutMix's centre/boundary
holes (checked against the areas the papers' rules give), and ``--evaluate --occlusion-sweep`` writes the JSON
and the PNG for a trained checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernels.areas import lam_from_boxes
import torch

from pipelines.tools.occlusion_sweep import condition_boxes, run_sweep, sweep_conditions

REPO = Path(__file__).resolve().parents[2]


def _share(cond, size, n=400):
    boxes = condition_boxes(cond, np.random.default_rng(0), n, size)
    return float(np.mean(1.0 - lam_from_boxes(boxes, size, size)))


def test_conditions_are_the_papers_grids_at_224():
    conds = sweep_conditions(224)
    has = [c for c in conds if c["family"] == "hide_and_seek"]
    assert [c["params"]["p_keep_patch"] for c in has] == [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    assert {c["params"]["patch_size"] for c in has} == {56}  # a 4 x 4 grid
    cut = [c for c in conds if c["family"] == "cutout"]
    assert [c["params"]["holes"] for c in cut] == [1, 2, 4, 6, 8] and {c["params"]["size"] for c in cut} == {56}
    # Hide-and-Seek hides each of the 16 cells with prob 1 - p: expected share 1 - p (exactly 0 at p = 1)
    for c in has:
        assert _share(c, 224) == pytest.approx(1 - c["params"]["p_keep_patch"], abs=0.02)
    # one 56 px square fully inside covers 1/16; clipped ones less
    assert 0.04 < _share(cut[0], 224) < 1 / 16


def test_centre_and_boundary_are_complements():
    """Centre occlusion erases the centred hole, boundary occlusion everything outside it (CutMix)."""
    for cond in sweep_conditions(64):
        if cond["family"] in ("centre", "boundary"):
            h = cond["params"]["hole"]
            share = _share(cond, 64, n=1)
            expected = h * h / 64 ** 2 if cond["family"] == "centre" else 1 - h * h / 64 ** 2
            assert share == pytest.approx(expected), cond
    boxes = condition_boxes({"family": "boundary", "params": {"hole": 32}}, np.random.default_rng(0), 1, 64)
    mask = np.zeros((64, 64), bool)
    for y0, x0, y1, x1 in boxes[0]:
        mask[y0:y1, x0:x1] = True
    assert not mask[16:48, 16:48].any() and mask.sum() == 64 * 64 - 32 * 32


def test_centre_and_boundary_holes_are_cutmix_e1s_zero_to_224_in_equal_steps():
    for family in ("centre", "boundary"):
        holes = [c["params"]["hole"] for c in sweep_conditions(224) if c["family"] == family]
        assert holes == list(range(0, 225, 16))


class _Batch:
    alive = 0
    most = 0

    def __init__(self, n, size, classes, rng):
        self.images = torch.as_tensor(rng.standard_normal((n, 3, size, size)), dtype=torch.float32)
        self.labels = torch.as_tensor(rng.integers(0, classes, n))
        self.meta = {"valid": torch.ones(n, dtype=torch.int32)}
        _Batch.alive += 1
        _Batch.most = max(_Batch.most, _Batch.alive)

    def __del__(self):
        _Batch.alive -= 1


def test_the_sweep_streams_one_batch_at_a_time():
    """The sweep holds one batch (and the loader's next) at a time, however many batches the split has, and its
    counts equal an evaluation of each condition on its own (top-1 and top-5 from the same logits)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 7))

    def loader(batches):
        rng = np.random.default_rng(1)
        for _ in range(batches):
            yield _Batch(5, 16, 7, rng)

    result = run_sweep(model, loader(30), "cpu", 16, seed=3)
    assert _Batch.most <= 2 and _Batch.alive == 0
    assert all(r["images"] == 150 for r in result["conditions"])
    rng = np.random.default_rng(1)
    batches = [_Batch(5, 16, 7, rng) for _ in range(30)]
    for ci, cond in enumerate(result["conditions"]):
        top1 = top5 = 0
        for bi, b in enumerate(batches):
            boxes = condition_boxes(cond, np.random.default_rng([3, ci, bi]), 5, 16)
            x = b.images.clone()
            for r, rb in enumerate(boxes):
                for y0, x0, y1, x1 in rb:
                    if y0 >= 0:
                        x[r, :, y0:y1, x0:x1] = 0
            logits = model(x)
            order = logits.argsort(1, descending=True)
            top1 += int((order[:, 0] == b.labels).sum())
            top5 += int((order[:, :5] == b.labels[:, None]).any(1).sum())
        assert (cond["top1"], cond["top5"]) == (top1 / 150, top5 / 150), cond["setting"]


def test_bad_size_names_the_argument():
    with pytest.raises(ValueError, match="size"):
        sweep_conditions(2)


def test_evaluate_occlusion_sweep_writes_json_and_png(tiny_dataset, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    small = ["--arch", "resnet18", "--image-size", "32", "--reader-workers", "1", "--workers", "1", "--device", "cpu"]
    subprocess.run([sys.executable, "train_example.py", "--data", str(tiny_dataset), "--epochs", "1",
                    "--batch-size", "8", "--save", str(tmp_path / "ckpt"), *small], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=600)
    out = subprocess.run([sys.executable, "train_example.py", "--evaluate", str(tmp_path / "ckpt"),
                          "--occlusion-sweep", "--data", str(tiny_dataset), "--batch-size", "4", *small],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads((tmp_path / "ckpt" / "occlusion_sweep.json").read_text())
    png = tmp_path / "ckpt" / "occlusion_sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert result["image_size"] == 32 and len(result["conditions"]) == len(sweep_conditions(32))
    for row in result["conditions"]:
        assert row["images"] == 6 and 0.0 <= row["top1"] <= row["top5"] <= 1.0 and 0.0 <= row["occluded_share"] <= 1.0
    clean = [r for r in result["conditions"] if r["family"] == "hide_and_seek" and r["params"]["p_keep_patch"] == 1.0]
    assert clean[0]["occluded_share"] == 0.0
    full = [r for r in result["conditions"] if r["family"] == "boundary"]
    assert max(r["occluded_share"] for r in full) > 0.7
