"""The demo set: deterministic bytes, the promised layout, classes that differ, safe caching."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from pipelines.demo_data import MARKER_NAME, ensure_demo_data
from pipelines.imagefiles import scan_image_folder


def digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.jpg"))}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(train_per_class=2, val_per_class=1, num_classes=3)
    a = digest(ensure_demo_data(tmp_path / "a", seed=0, **kw))
    b = digest(ensure_demo_data(tmp_path / "b", seed=0, **kw))
    c = digest(ensure_demo_data(tmp_path / "c", seed=1, **kw))
    assert a == b and len(a) == 3 * 3
    assert set(a) == set(c) and all(a[k] != c[k] for k in a)


def test_layout_sizes_and_class_signal(tmp_path):
    root = ensure_demo_data(tmp_path / "d", train_per_class=6, val_per_class=2, num_classes=4)
    paths, labels, classes = scan_image_folder(root / "train")
    assert len(classes) == 4 and np.bincount(labels).tolist() == [6] * 4
    assert len(scan_image_folder(root / "val")[0]) == 8
    means = np.zeros((4, 3))
    for p, y in zip(paths, labels):
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            w, h = im.size
            assert 240 <= min(w, h) and max(w, h) <= 500
            means[y] += np.asarray(im, np.float64).mean((0, 1)) / 6
    # Classes carry their own colour families: per-class mean colours are not all alike.
    spread = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert spread[np.triu_indices(4, 1)].max() > 5.0


def test_cached_set_is_reused_and_changed_parameters_regenerate(tmp_path):
    root = ensure_demo_data(tmp_path / "e", train_per_class=1, val_per_class=0, num_classes=2)
    marker = (root / MARKER_NAME).stat().st_mtime_ns
    assert ensure_demo_data(root, train_per_class=1, val_per_class=0, num_classes=2) == root
    assert (root / MARKER_NAME).stat().st_mtime_ns == marker
    ensure_demo_data(root, train_per_class=2, val_per_class=0, num_classes=2)
    assert len(list((root / "train").rglob("*.jpg"))) == 4


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("do not delete")
    with pytest.raises(FileExistsError, match="mine"):
        ensure_demo_data(tmp_path / "mine", train_per_class=1, val_per_class=0, num_classes=2)
