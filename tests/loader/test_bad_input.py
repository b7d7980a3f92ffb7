"""Bad files and odd images: clear errors before the work starts, documented handling otherwise."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import READABLE_ODD, UNREADABLE
from pipelines import OcclusionLoader
from pipelines.data.imagefiles import probe_image
from pipelines.data.verify import main as verify_main

MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


def loader(root, **kw):
    kw.setdefault("device", "cpu")
    kw["runtime"] = {"num_threads": 2, "py_workers": 1, **kw.get("runtime", {})}
    kw.setdefault("output_size", 48)
    return OcclusionLoader(root, 4, **kw)


def test_verify_cli_lists_exactly_the_unreadable_files(bad_images_dir, capsys):
    root, files = bad_images_dir
    assert verify_main([str(root)]) == 1
    listed = {line.split(": ", 1)[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == {str(files[k]) for k in UNREADABLE}


def test_verify_cli_header_only_misses_only_truncated(bad_images_dir, capsys):
    root, files = bad_images_dir
    assert verify_main([str(root), "--header-only"]) == 1
    listed = {line.split(": ", 1)[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == {str(files[k]) for k in UNREADABLE if k != "truncated"}


def test_verify_cli_bad_root(tmp_path, capsys):
    assert verify_main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.parametrize("mode, kinds", [("header", [k for k in UNREADABLE if k != "truncated"]),
                                         ("full", list(UNREADABLE))])
def test_loader_names_each_bad_file_before_its_batch(bad_images_dir, tmp_path, mode, kinds):
    """No pass over the dataset precedes the first batch: the loader is built at once, and a bad file is named
    when the reader meets it, after the batches before it (docs/robustness.md, "Bad input")."""
    from pipelines.loader.errors import ReaderFileError

    root, files = bad_images_dir
    for kind in kinds:
        one = tmp_path / kind
        (one / "x").mkdir(parents=True)
        for i, p in enumerate(sorted((root / "a").glob("good*.jpg")) + sorted((root / "b").glob("good*.jpg"))):
            shutil.copy(p, one / "x" / f"{i}.jpg")
        shutil.copy(files[kind], one / "x" / f"5_{files[kind].name}")  # sample 5: batch 1 of 4-row batches
        ld = loader(one, shuffle=False, runtime=dict(verify=mode))
        served = []
        with pytest.raises(ReaderFileError) as err:
            for batch in ld:
                served.append(batch.meta["sample_id"].tolist())
        assert str(err.value).startswith(f"{one / 'x' / ('5_' + files[kind].name)}: ")
        assert "batch 1" in str(err.value) and "pipelines.data.verify" in str(err.value)
        assert served == [[0, 1, 2, 3]]


@pytest.mark.parametrize("verify", ["none", "full"])
@pytest.mark.parametrize("kind", ["fifo", "grey16"])
def test_a_fifo_or_a_refused_mode_is_named_at_its_batch_without_blocking(bad_images_dir, tmp_path, kind, verify):
    """Issue 23, class 5: a FIFO named .jpg hung the first batch (the reader opened it before any check), also
    with verify="none"; a 16-bit greyscale PNG passed the check and trained white. Both are named at their batch."""
    import os
    import threading

    from pipelines.loader.errors import ReaderFileError

    root, _ = bad_images_dir
    (tmp_path / "x").mkdir()
    for i, p in enumerate(sorted((root / "a").glob("good*.jpg")) + sorted((root / "b").glob("good*.jpg"))):
        shutil.copy(p, tmp_path / "x" / f"{i}.jpg")
    bad = tmp_path / "x" / ("5_pipe.jpg" if kind == "fifo" else "5_grey16.png")  # sample 5: batch 1
    if kind == "fifo":
        os.mkfifo(bad)
    else:
        Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)).save(bad)
    ld = loader(tmp_path, shuffle=False, runtime=dict(verify=verify))
    served, box = [], {}

    def run():
        try:
            for batch in ld:
                served.append(batch.meta["sample_id"].tolist())
        except ReaderFileError as exc:
            box["err"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(120)
    if kind == "fifo" and t.is_alive():  # the old reader blocks in open(): let it go before failing
        os.close(os.open(bad, os.O_WRONLY | os.O_NONBLOCK))
    assert not t.is_alive(), "the loader blocked"
    assert str(box["err"]).startswith(f"{bad}: ") and served == [[0, 1, 2, 3]]
    assert ("a FIFO" if kind == "fifo" else "mode I;16") in str(box["err"])


def test_truncated_file_met_during_an_epoch_is_named(bad_images_dir, tmp_path):
    root, files = bad_images_dir
    (tmp_path / "x").mkdir()
    for i, p in enumerate(sorted((root / "b").glob("good*.jpg")) or sorted((root / "a").glob("good*.jpg"))):
        shutil.copy(p, tmp_path / "x" / f"{i}.jpg")
    shutil.copy(files["truncated"], tmp_path / "x" / "truncated.jpg")
    with pytest.raises(RuntimeError, match="truncated.jpg"):
        for _ in loader(tmp_path, runtime=dict(verify="none")):
            pass


@pytest.fixture()
def odd_root(bad_images_dir, tmp_path):
    _, files = bad_images_dir
    (tmp_path / "odd").mkdir()
    for kind in READABLE_ODD:
        shutil.copy(files[kind], tmp_path / "odd" / files[kind].name)
    return tmp_path


@pytest.mark.parametrize("train", [True, False])
def test_greyscale_cmyk_png_tiny_and_rotated_images_load_as_rgb(odd_root, train):
    ld = loader(odd_root, train=train, shuffle=False)
    paths = ld._source.paths
    seen = 0
    for batch in ld:
        assert batch.images.shape[1:] == (3, 48, 48)
        assert np.isfinite(batch.images.numpy()).all()
        for r in range(batch.images.shape[0]):
            path = paths[int(batch.meta["sample_id"][r])]
            info = probe_image(path)
            y0, x0, h, w = (int(v) for v in batch.meta["crop"][r])
            assert 0 <= y0 and y0 + h <= info.height and 0 <= x0 and x0 + w <= info.width
            name = path.rsplit("/", 1)[-1]
            if name.startswith("cmyk"):
                continue  # CMYK -> RGB conversions differ between decoders (Adobe inversion)
            # Oracle: PIL with EXIF orientation applied, converted to RGB (alpha dropped).
            ref = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            ref = ref.crop((x0, y0, x0 + w, y0 + h)).resize((48, 48), Image.BILINEAR)
            a = np.asarray(ref, np.float64)
            if int(batch.meta["flip"][r]):
                a = a[:, ::-1]
            ref = ((a - MEAN) / STD).transpose(2, 0, 1)
            assert np.abs(batch.images[r].numpy() - ref).mean() < 0.05, path
            if name.startswith("gray"):
                rgb = batch.images[r].numpy() * STD[:, None, None] + MEAN[:, None, None]
                assert np.allclose(rgb[0], rgb[1], atol=1.0) and np.allclose(rgb[1], rgb[2], atol=1.0)
            seen += 1
    assert seen == len(READABLE_ODD) - 1


def test_exif_rotation_swaps_the_probed_size(bad_images_dir):
    _, files = bad_images_dir
    info = probe_image(files["exif_rotated"])
    assert (info.width, info.height) == (60, 180)


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        loader(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "x.jpg")
    with pytest.raises(ValueError, match="flat"):
        loader(tmp_path / "flat")
    (tmp_path / "withempty" / "a").mkdir(parents=True)
    (tmp_path / "withempty" / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "withempty" / "a" / "x.jpg")
    with pytest.raises(ValueError, match="withempty.b"):
        loader(tmp_path / "withempty")


def test_file_list_input(bad_images_dir, tmp_path):
    root, _ = bad_images_dir
    goods = sorted(root.glob("*/good*.jpg"))
    listing = tmp_path / "train.txt"
    listing.write_text("# path label\n" + "".join(f"{p} {i % 3}\n" for i, p in enumerate(goods)))
    ld = loader(listing, shuffle=False)
    assert ld.num_classes == 3 and ld.dataset_size == len(goods)
    labels = np.concatenate([b.labels.numpy() for b in ld])
    assert labels.tolist() == [i % 3 for i in range(len(goods))]
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{goods[0]} 0\n{goods[1]} cat\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        loader(bad)
