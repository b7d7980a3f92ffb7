"""Same seed, same batches, across refactors: the first batches of every method, recorded once and checked
on every run.

``tests/golden/batches.json`` was recorded at e101538 (before the "one room per stage" restructure, issue 19)
with ``python tests/loader/test_golden_batches.py --record``; cases added later are recorded alone with
``--record NAME,...`` (issue 22: ``random_erasing``, ``random_erasing_rand``, ``clovaai_color``,
``timm_rand_augment``), which leaves the other records as they are. Every field except the images must equal the record
exactly (a SHA-256 of its bytes: host draws, boxes, ``lam``, partners, soft targets); the images, whose floats
come from DALI's CPU resize and may differ in the last bit between CPU generations, must equal a 4 x 4
average-pooled thumbnail of each row and channel to 1e-4 (a moved box, a changed blend or fill changes a
thumbnail by far more). The saliency sources run through the public channel: ``saliency="model"`` rows are
occluded with ``loader.occlude(batch, maps)``, ``saliency="bank"`` rows read maps pushed in epoch 0 with
``loader.feedback``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "batches.json"
SIZE, BATCH, BATCHES = 64, 6, 2


def cases(checkpoint: str, bank_dir: Path) -> dict:
    """Every method (its paper's defaults where they fit 64 px) and the loader settings around them."""
    small = dict(size=16)
    out = {
        "none": dict(method="none"),
        "cutout": dict(method="cutout", **small),
        "cutout_batch_mode_fill": dict(method="cutout:mode=batch,holes=2", size=12, fill=(255, 0, 0)),
        "hide_and_seek": dict(method="hide_and_seek"),
        "cutmix": dict(method="cutmix"),
        "cutmix_batch": dict(method="cutmix:mode=batch,p=0.5"),
        "mixup": dict(method="mixup"),
        "cutmix_mixup": dict(method="cutmix_mixup"),
        "cutmix_mixup_elem": dict(method="cutmix_mixup:mode=elem"),
        "saliencymix": dict(method="saliencymix"),
        "saliencymix_official": dict(method="saliencymix:saliency_input=official"),
        "attentive_cutmix": dict(method="attentive_cutmix", checkpoint=checkpoint, arch="resnet18"),
        "saliency_occlusion": dict(method="saliency_occlusion", **small),
        "keep_cutout": dict(method="keep_cutout", **small),
        "keep_paste": dict(method="keep_paste", **small),
        "keep_cutmix": dict(method="keep_cutmix"),  # (recorded with size=16, an option keep_cutmix never read)
        "joint_fong_vedaldi": dict(method="saliency_occlusion", copies=2, p_keep_image=(1.0, 0.0), **small),
        "batch_aug_cutout": dict(method="cutout", copies=2, copy_mode="batch_aug", **small),
        "rand_augment": dict(method="cutout", auto_augment="rand_augment", **small),
        "random_erasing": dict(method="random_erasing:mode=pixel,max_count=2"),
        "random_erasing_rand": dict(method="random_erasing:mode=rand,p=1.0"),
        "clovaai_color": dict(method="cutmix", color="clovaai"),
        "timm_rand_augment": dict(method="cutout", auto_augment="rand-m9-mstd0.5-inc1", **small),
        "smoothing": dict(method="cutmix", label_smoothing=0.1),
        "validation": dict(method="none", train=False),
    }
    for name in ("saliency_occlusion", "keep_cutout", "keep_paste", "keep_cutmix", "saliencymix"):
        opts = small if name not in ("saliencymix", "keep_cutmix") else {}  # (keep_cutmix was recorded with an
        # unread size=16)
        out[f"{name}_model"] = dict(method=name, saliency="model", **opts)
        out[f"{name}_bank"] = dict(method=name, saliency="bank", bank=str(bank_dir / f"{name}.bin"), **opts)
    out["joint_model"] = dict(method="saliency_occlusion", saliency="model", copies=2, p_keep_image=(1.0, 0.0),
                              **small)
    return out


def model_maps(images: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a model's saliency: the red channel's magnitude, pooled 4 x 4."""
    return torch.nn.functional.avg_pool2d(images[:, :1].abs(), 4)[:, 0]


def thumbnails(images: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.adaptive_avg_pool2d(images.float(), 4).numpy().astype(np.float64)


def digest(value) -> str:
    a = np.ascontiguousarray(value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value))
    return hashlib.sha256(a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:24]


def record_of(batch) -> dict:
    fields = {"targets": digest(batch.targets), "labels": digest(batch.labels)}
    for key in sorted(batch.meta):
        if key != "source_images":
            fields["meta." + key] = digest(batch.meta[key])
    return {"fields": fields, "thumbnails": thumbnails(batch.images).round(6).tolist()}


def run_case(root: Path, spec: dict) -> list:
    from pipelines import OcclusionLoader

    spec = dict(spec)
    method = spec.pop("method")
    loader = OcclusionLoader(root, BATCH, method, output_size=SIZE, device="cpu", seed=7, num_classes=3,
                             runtime=dict(num_threads=1, py_workers=1), **spec)
    saliency = spec.get("saliency", "image")
    try:
        if saliency == "bank":  # epoch 0 fills the bank; the records are epoch 1's first batches
            for batch in loader:
                loader.feedback(batch, model_maps(batch.images[:batch.images.shape[0] // spec.get("copies", 1)]))
        out = []
        for i, batch in enumerate(loader):
            if saliency == "model":
                clean = batch.meta.get("source_images", batch.images)
                rows = clean.shape[0] // spec.get("copies", 1)
                batch = loader.occlude(batch, model_maps(clean[:rows]))
            out.append(record_of(batch))
            if i + 1 == BATCHES:
                break
        return out
    finally:
        loader.close()


def checkpoint_file(folder: Path) -> str:
    import torchvision

    torch.manual_seed(0)
    path = folder / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    return str(path)


def dataset(folder: Path) -> Path:
    from pipelines.data.demo_data import ensure_demo_data

    root = ensure_demo_data(folder / "data", train_per_class=8, val_per_class=2, num_classes=3,
                            width_range=(64, 120), height_range=(64, 120), workers=1)
    return root / "train"


@pytest.fixture(scope="module")
def golden_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("golden")
    (base / "banks").mkdir()
    return dataset(base), cases(checkpoint_file(base), base / "banks")


def _names():
    return sorted(json.loads(GOLDEN.read_text())) if GOLDEN.exists() else []


@pytest.mark.parametrize("name", _names())
def test_first_batches_unchanged(golden_env, name):
    root, specs = golden_env
    expected = json.loads(GOLDEN.read_text())[name]
    got = run_case(root, specs[name])
    assert len(got) == len(expected)
    for k, (g, e) in enumerate(zip(got, expected)):
        changed = sorted(f for f in set(g["fields"]) | set(e["fields"]) if g["fields"].get(f) != e["fields"].get(f))
        assert not changed, f"{name} batch {k}: changed fields {changed}"
        np.testing.assert_allclose(g["thumbnails"], e["thumbnails"], atol=1e-4, rtol=0,
                                   err_msg=f"{name} batch {k}: images changed")


def test_every_method_is_recorded():
    from pipelines.methods import METHODS

    assert set(METHODS) <= set(_names())


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "banks").mkdir()
        root = dataset(base)
        specs = cases(checkpoint_file(base), base / "banks")
        at = sys.argv.index("--record") + 1
        only = sys.argv[at].split(",") if at < len(sys.argv) else list(specs)
        records = json.loads(GOLDEN.read_text()) if GOLDEN.exists() and at < len(sys.argv) else {}
        records.update({name: run_case(root, specs[name]) for name in only})
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(records, indent=0, sort_keys=True))
    print(f"recorded {', '.join(only)} in {GOLDEN}")
