"""Issue 20: the first batch without a pass over the dataset, bad files named before their batch (first and cached
runs), ``on_bad="skip"`` with exact resume, and a pipeline that lives across epochs with a saliency bank."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

import pipelines.loader.loader as loader_module
from helpers import grey_scan_jpeg, photo, photo_folder
from pipelines import OcclusionLoader


@pytest.fixture()
def grey_root(tmp_path):
    """20 JPEGs in two classes, sample 9 (class a, sorted) the grey-scan one: batch 2 of 4-row batches in order."""
    root = photo_folder(tmp_path / "ds", 10)
    (root / "a" / "9.jpg").write_bytes(grey_scan_jpeg(150, 200))
    return root


def make(root, **kw):
    runtime = {"num_threads": 1, "py_workers": 1, **kw.pop("runtime", {})}
    return OcclusionLoader(root, 4, device="cpu", output_size=32, runtime=runtime, **kw)


def ids(batches):
    return [b.meta["sample_id"].tolist() for b in batches]


def test_the_first_batch_reads_only_its_own_files(grey_root):
    """Every file but the first batch's is unreadable: the loader is built and serves its first batch all the same
    (nothing reads the dataset ahead), and names the next batch's first file when it gets there."""
    from pipelines.loader.errors import ReaderFileError

    for p in sorted(grey_root.rglob("*.jpg"))[4:]:
        p.write_bytes(b"")
    ld = make(grey_root, shuffle=False)
    it = iter(ld)
    assert next(it).meta["sample_id"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ReaderFileError, match=r"a/4\.jpg: empty file"):
        next(it)


@pytest.mark.parametrize("shuffle", [False, True])
def test_grey_jpeg_is_never_served_first_run_and_cached_run(grey_root, shuffle):
    """The corrupt-scan JPEG is named after the good batches before it, on a first run and on a run whose other
    files are all recorded as checked; it is never in a served batch."""
    from pipelines.loader.errors import ReaderFileError

    bad = str(grey_root / "a" / "9.jpg")
    for run in ("first", "cached"):
        ld = make(grey_root, shuffle=shuffle, seed=3)
        served = []
        with pytest.raises(ReaderFileError) as err:
            for batch in ld:
                served.append(batch)
        assert str(err.value).startswith(f"{bad}: corrupt scan data"), run
        plan = ld._source.shard_plan(0).ids
        where = int(np.flatnonzero(plan == 9)[0]) // 4
        assert ids(served) == [plan[4 * b:4 * b + 4].tolist() for b in range(where)], run
        assert ld.state_dict()["batch"] == where


def test_skip_drops_the_file_warns_and_resumes_exactly(grey_root):
    """on_bad="skip": the bad file's row repeats the batch's first good sample with valid 0, a warning names the
    file once, state_dict() records it, and a loader resumed from any position serves the same batches -- also
    when the file has been repaired since (the resumed run skips what the original skipped)."""
    runtime = dict(on_bad="skip")
    ld = make(grey_root, shuffle=True, seed=5, runtime=runtime)
    states, batches = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(2):
            for batch in ld:
                batches.append(batch)
                states.append(ld.state_dict())
    named = [str(w.message) for w in caught if "on_bad='skip'" in str(w.message)]
    assert len(named) == 1 and str(grey_root / "a" / "9.jpg") in named[0] and "corrupt scan data" in named[0]
    assert states[-1]["skipped"] == [9]
    for batch in batches:
        meta = batch.meta
        assert 9 not in meta["sample_id"].tolist()
        rows = np.flatnonzero(meta["valid"].numpy() == 0)
        assert len(rows) <= 1
        for r in rows:  # the repeat of the batch's first good row, image and all
            assert meta["sample_id"][r] == meta["sample_id"][0 if r else 1]
    skipped_rows = sum(int((b.meta["valid"] == 0).sum()) for b in batches)
    assert skipped_rows == 2  # once per epoch
    photo(40, 50, 99).save(grey_root / "a" / "9.jpg", quality=90)  # repaired since
    for k in (1, 4, 6):
        again = make(grey_root, shuffle=True, seed=5, runtime=runtime)
        again.load_state_dict(states[k - 1])
        rest = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing new to warn about
            for epoch in range(2):
                rest += list(again)
                if len(rest) >= len(batches) - k:
                    break
        rest = rest[:len(batches) - k]
        assert ids(rest) == ids(batches[k:])
        for got, want in zip(rest, batches[k:]):
            assert torch.equal(got.images, want.images) and torch.equal(got.meta["valid"], want.meta["valid"])


def test_bank_pipeline_lives_across_epochs(tiny_dataset, tmp_path, monkeypatch):
    """With a saliency bank the pipeline is built once for three epochs (its workers wait for each epoch's pushes
    inside the source); the boxes equal those of a loader rebuilt at every epoch start."""
    builds = []
    real = loader_module.build_pipeline

    def spy(source, **kw):
        builds.append((source.start_epoch, source.start_batch))
        return real(source, **kw)

    monkeypatch.setattr(loader_module, "build_pipeline", spy)
    opts = dict(method="saliency_occlusion", saliency="bank", size=24, jitter=0, num_classes=3, seed=2,
                runtime=dict(num_threads=1, py_workers=2))

    def maps(batch):
        rng = np.random.default_rng(batch.meta["position"][0].tolist())
        return torch.from_numpy(rng.random((batch.images.shape[0], 12, 12)).astype(np.float32))

    runs = {}
    for name in ("one pipeline", "rebuilt"):
        ld = OcclusionLoader(tiny_dataset / "train", 6, device="cpu", output_size=48, bank=tmp_path / f"{name}.bin",
                             **opts)
        boxes = []
        for epoch in range(3):
            if name == "rebuilt":
                ld.close()  # the next iteration builds a new pipeline at the start of the epoch
            for batch in ld:
                boxes.append(batch.meta["boxes"].clone())
                ld.feedback(batch, maps(batch))
        runs[name] = boxes
        if name == "one pipeline":
            assert builds == [(0, 0)]
    assert builds[1:] == [(0, 0), (1, 0), (2, 0)]
    assert len(runs["one pipeline"]) == 12
    for got, want in zip(runs["one pipeline"], runs["rebuilt"]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_reader_wait_for_the_bank_times_out_naming_what_it_waited_for(tmp_path):
    from pipelines.saliency.bank import EpochProgress, progress_path
    from pipelines.saliency.base import ReadWaitTimeout

    progress = EpochProgress(progress_path(tmp_path / "bank.bin"), 2, create=True)
    progress.set(1, 3)
    progress.wait(1, 3, 0.1, "bank.bin")  # written: no wait
    start = time.monotonic()
    with pytest.raises(ReadWaitTimeout, match=r"shard 1 waited 0 s for the saliency-bank pushes of epoch 4 "
                                              r"\(bank bank.bin; .*bank.bin.progress says epoch 3"):
        progress.wait(1, 4, 0.2, "bank.bin")
    assert 0.2 <= time.monotonic() - start < 2
    progress.set(1, EpochProgress.CLOSED)
    with pytest.raises(RuntimeError, match="dropped this pipeline"):
        progress.wait(1, 9, 100, "bank.bin")
