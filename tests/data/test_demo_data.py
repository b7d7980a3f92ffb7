"""The demo set: deterministic bytes, the promised layout, classes that differ, safe caching."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from pipelines.data.demo_data import MARKER_NAME, ensure_demo_data
from pipelines.data.imagefiles import scan_image_folder


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


def test_a_damaged_set_is_regenerated_and_no_temp_folders_remain(tmp_path):
    kw = dict(train_per_class=2, val_per_class=1, num_classes=2)
    root = ensure_demo_data(tmp_path / "f", **kw)
    before = digest(root)
    victim = sorted((root / "val").rglob("*.jpg"))[0]
    victim.unlink()  # marker still there, but the set is no longer complete
    assert ensure_demo_data(root, **kw) == root
    assert digest(root) == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["f"]


def test_parameter_errors_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        ensure_demo_data(tmp_path / "g", num_classes=11)
    with pytest.raises(ValueError, match="train_per_class"):
        ensure_demo_data(tmp_path / "g", train_per_class=-1)
    with pytest.raises(ValueError, match="width_range"):
        ensure_demo_data(tmp_path / "g", width_range=(100, 50))
    assert not (tmp_path / "g").exists()


def test_colour_histograms_separate_classes_well_above_chance(demo_root):
    # A weak but real check that classes differ visually: nearest class-mean hue histogram.
    def feature(path):
        with Image.open(path) as im:
            hsv = np.asarray(im.convert("RGB").resize((96, 72)).convert("HSV")).reshape(-1, 3)
        hist = np.bincount(hsv[hsv[:, 1] > 100, 0] // 16, minlength=16).astype(float)
        return hist / max(hist.sum(), 1.0)

    tp, tl, classes = scan_image_folder(demo_root / "train")
    vp, vl, _ = scan_image_folder(demo_root / "val")
    assert len(classes) == 10 and len(tp) == 40 and len(vp) == 20
    f = np.array([feature(p) for p in tp])
    centroids = np.array([f[np.array(tl) == c].mean(0) for c in range(10)])
    v = np.array([feature(p) for p in vp])
    pred = np.argmin(((v[:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (pred == np.array(vl)).mean() >= 0.4  # chance: 0.1


def test_tiny_dataset_fixture(tiny_dataset):
    paths, labels, classes = scan_image_folder(tiny_dataset / "train")
    assert classes == ["00_disc", "01_square", "02_triangle"] and len(paths) == 24
    assert len(scan_image_folder(tiny_dataset / "val")[0]) == 6
    for p in paths:
        with Image.open(p) as im:
            assert 64 <= min(im.size) and max(im.size) <= 120


def test_imagenet_like_sizes_and_weight(tmp_path):
    from pipelines.data.demo_data import make_imagenet_like

    root = make_imagenet_like(tmp_path / "inet", n=5, num_classes=2, workers=1)
    files = sorted((root / "train").rglob("*.jpg"))
    assert len(files) == 6 and not (root / "val").exists()
    for f in files:
        with Image.open(f) as im:
            assert sorted(im.size) >= [300, 400] and sorted(im.size) <= [375, 500]
    # ImageNet's train JPEGs weigh ~110 KB; these should be of that order, not demo-light.
    assert 70e3 < np.mean([f.stat().st_size for f in files]) < 160e3


def test_cli_prints_the_root(tmp_path, capsys):
    from pipelines.data.demo_data import main

    assert main(["--root", str(tmp_path / "h"), "--train-per-class", "1", "--val-per-class", "0",
                 "--num-classes", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "h")
    assert len(list((tmp_path / "h" / "train").rglob("*.jpg"))) == 2
    assert main(["--root", str(tmp_path / "h2"), "--num-classes", "99"]) == 2
    assert "num_classes" in capsys.readouterr().err
