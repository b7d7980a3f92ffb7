"""The saliency bank under misuse (issue 23, class 3 and the bank's part of class 7): one writer per bank file,
late pushes ignored by rule, space reserved up front, damaged or empty files named at once, banks named by real
path and generation, fingerprints of any file name, and a temporary bank that leaves nothing behind."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.saliency.bank import HEADER_BYTES, BankFile, BankSaliency, dataset_fingerprint
from test_bank import bank_loader

G = 6
REPO = Path(__file__).resolve().parents[2]


def size_of(n=4, grid=G):
    return HEADER_BYTES + n * BankSaliency.bytes_per_sample(grid)


def maps_of(batch):
    """Random maps drawn from the batch's position: the same pushes in every run."""
    rng = np.random.default_rng(batch.meta["position"][0].tolist())
    return torch.from_numpy(rng.random((batch.images.shape[0], 12, 12)).astype(np.float32))


def run_subprocess(code: str, **kw):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, **kw)


# -- one writer per bank file ------------------------------------------------------------------------------
def test_one_writer_per_rank_slot(tmp_path):
    """Slot ``s`` of ``<bank>.lock`` is shard ``s``'s writer: distinct shards share the file (the ranks of a node), a
    second claim of a held slot is refused naming the path and the holder -- in this process or another one --,
    and the slot is free again once its holder closes or dies (kill -9)."""
    path = tmp_path / "bank.bin"
    first, rank1 = BankFile(path, 4, G, "fp"), BankFile(path, 4, G, "fp")
    first.claim(0)
    rank1.claim(1)  # another rank of the node
    second = BankFile(path, 4, G, "fp")
    with pytest.raises(RuntimeError, match=f"saliency bank {path} is in use: another loader of this process "
                                           f"writes the maps of shard 0"):
        second.claim(0)
    code = (f"from pipelines.saliency.bank import BankFile\n"
            f"BankFile({str(path)!r}, 4, {G}, 'fp').claim(0)\n")
    proc = run_subprocess(code)
    assert proc.returncode != 0 and f"is in use: process {os.getpid()} writes the maps of shard 0" in proc.stderr
    first.close()
    second.claim(0)  # freed by close
    second.close()
    holder = subprocess.Popen([sys.executable, "-c", code + "print('held', flush=True)\nimport time\ntime.sleep(600)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=f"is in use: process {holder.pid} writes"):
            BankFile(path, 4, G, "fp").claim(0)
    finally:
        holder.kill()  # SIGKILL: no code of the holder runs
        holder.wait()
    third = BankFile(path, 4, G, "fp")
    third.claim(0)  # the kernel freed the dead holder's lock
    third.close()
    rank1.close()


def test_second_loader_cannot_empty_the_first(tiny_dataset, tmp_path):
    """A second loader on a bank in use (a re-run notebook cell, a peek loader) is refused at construction, before
    it empties the file: the first loader's saved state still loads and its next epoch reads the maps pushed."""
    path = tmp_path / "bank.bin"
    first = bank_loader(tiny_dataset / "train", path)
    for batch in first:
        first.feedback(batch, maps_of(batch))
    state = first.state_dict()
    with pytest.raises(RuntimeError, match=f"saliency bank {path} is in use: another loader of this process"):
        bank_loader(tiny_dataset / "train", path)
    for _ in range(2):  # the refused loader is gone before it could iterate: nothing of it may touch the file
        import gc
        gc.collect()
    first.load_state_dict(state)
    batch = next(iter(first))
    assert int(batch.meta["position"][0, 0]) == 1 and (batch.meta["map_source"] > 0).any()
    del first, batch
    again = bank_loader(tiny_dataset / "train", path)  # the first loader's state also loads in a new loader
    again.load_state_dict(state)
    assert (next(iter(again)).meta["map_source"] > 0).any()


# -- late pushes -------------------------------------------------------------------------------------------------
def run_epochs(root, path, prefetch, mode):
    """Two epochs; in epoch 0 each batch's random maps are pushed in time, except the last batch's: never
    (``"skip_last"``), or after the loop over the epoch ended and written before epoch 1 starts (``"late"``). With
    ``"delayed"`` each batch's maps are pushed after the next batch was taken, in both epochs (the last batch of
    epoch 0 therefore after the loader sealed the epoch). Returns epoch 1's boxes and map sources, and the
    number of late pushes."""
    loader = bank_loader(root, path, prefetch=prefetch)
    out, prev = [], None
    for epoch in range(2):
        for k, batch in enumerate(loader):
            if epoch == 1:
                out.append((batch.meta["boxes"].clone(), batch.meta["map_source"].clone()))
            if mode == "delayed" and prev is not None:
                loader.feedback(prev, maps_of(prev))
            elif mode != "delayed" and epoch == 0 and k < len(loader) - 1:
                loader.feedback(batch, maps_of(batch))
            prev = batch
        if mode == "late" and epoch == 0:
            loader.feedback(prev, maps_of(prev))
            loader.state_dict()  # every push so far written
    late = loader._channel.writer.traffic.get("late_pushes", 0)
    del loader
    return out, late


def assert_same(a, b):
    assert len(a) == len(b)
    for (boxes_a, src_a), (boxes_b, src_b) in zip(a, b):
        torch.testing.assert_close(boxes_a, boxes_b, rtol=0, atol=0)
        torch.testing.assert_close(src_a, src_b, rtol=0, atol=0)


def test_late_push_is_ignored_by_rule(tiny_dataset, tmp_path):
    """A push for a batch of an epoch the loader has sealed lands nowhere (with a warning), whenever it arrives:
    written before the next epoch's first read, or after the next epoch's first batch was taken with prefetch 1
    or 3 -- epoch 1's batches are those of a run that never pushed it."""
    root = tiny_dataset / "train"
    skipped, late = run_epochs(root, tmp_path / "a.bin", prefetch=2, mode="skip_last")
    assert late == 0 and any(src.any() for _, src in skipped)  # the pushes made in time are read
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flushed, late = run_epochs(root, tmp_path / "b.bin", prefetch=2, mode="late")
    assert_same(flushed, skipped)
    assert late == 1 and any("feedback for a batch of epoch 0 came after the loader sealed epoch 0" in str(w.message)
                             for w in caught)
    for prefetch in (1, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            delayed, late = run_epochs(root, tmp_path / f"p{prefetch}.bin", prefetch=prefetch, mode="delayed")
        assert late == 1  # the last batch of epoch 0, pushed in epoch 1
        assert_same(delayed, skipped)


# -- space reserved ----------------------------------------------------------------------------------------------
def test_space_is_reserved_up_front(tmp_path, monkeypatch):
    """The file's blocks are allocated at creation (no sparse file whose memory-mapped writes SIGBUS on a full disk);
    a disk without room fails at construction naming the path and the bytes needed, leaving no file behind."""
    n = 5000
    file = BankFile(tmp_path / "bank.bin", n, 22, "fp")
    st = os.stat(file.path)
    assert st.st_size == size_of(n, 22) and st.st_blocks * 512 >= st.st_size
    file.close()

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=f"cannot reserve {size_of(n, 22)} bytes for the saliency bank "
                                      f"{tmp_path / 'full.bin'} \\(No space left on device\\)"):
        BankFile(tmp_path / "full.bin", n, 22, "fp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.bin", "bank.bin.lock", "full.bin.lock"]


# -- damaged or empty files ----------------------------------------------------------------------------------------
def header_bytes(**fields):
    return json.dumps(fields).encode().ljust(HEADER_BYTES, b" ")


@pytest.mark.parametrize("content, message", [
    (b"", f"is an empty file \\(0 bytes\\); a bank for this dataset and grid is a {size_of()}-byte file"),
    (b"[" * 100_000, "is not a saliency bank file"),
    (header_bytes(magic="occlusion-saliency-bank", format=1, num_samples=4, grid=G, fingerprint="fp"),
     "has a damaged header \\(generation missing or of the wrong type\\)"),
    (header_bytes(magic="occlusion-saliency-bank", format=1, num_samples="4", grid=G, fingerprint="fp",
                  generation="g"), "has a damaged header \\(num_samples missing"),
], ids=["empty", "deep_json", "no_generation", "wrong_type"])
def test_damaged_or_empty_file_is_named_at_once(tmp_path, content, message):
    path = tmp_path / "bank.bin"
    path.write_bytes(content.ljust(size_of(), b"\0") if content else b"")
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} {message}"):
        BankFile(path, 4, G, "fp").generation
    assert time.monotonic() - start < 5


def test_truncated_bank_is_named_not_the_images(tiny_dataset, tmp_path):
    """A bank truncated while the loader runs: the error names the bank file and blames no image file -- found by
    the loader when it seals the epoch, by a reader worker before it reads (``SourceFileError``), and raised as
    such by the loader when a worker's traceback carries one."""
    path = tmp_path / "bank.bin"
    loader = bank_loader(tiny_dataset / "train", path)
    with pytest.raises(Exception) as info:
        for _ in range(2):
            for k, batch in enumerate(loader):
                loader.feedback(batch, maps_of(batch))
                if k == len(loader) - 1:  # every epoch-0 read done, no epoch-1 read allowed yet
                    loader.state_dict()  # every push written: no write can meet the truncation
                    os.truncate(path, HEADER_BYTES + 64)
    text = str(info.value)
    assert f"saliency bank {path} has {HEADER_BYTES + 64} bytes" in text and "files of that batch" not in text, text
    from pipelines.loader.errors import describe_failure
    from pipelines.saliency.bank import BankReader
    from pipelines.saliency.base import SourceFileError

    with pytest.raises(SourceFileError, match=f"saliency bank {re.escape(str(path))} has {HEADER_BYTES + 64} bytes"):
        BankReader(path, 24, 22, "image").lookup([0, 1], 0)
    worker = (f"Exception traceback received from worker thread/process:\nTraceback (most recent call last):\n"
              f"pipelines.saliency.base.SourceFileError: saliency bank {path} has 3 bytes, expected 9")
    failure = describe_failure(RuntimeError(worker), None, 1, 0)
    assert isinstance(failure.error, SourceFileError) and failure.bad_batch is None
    assert str(failure.error).startswith(f"saliency bank {path} has 3 bytes, expected 9 (read by a reader worker")


# -- paths ---------------------------------------------------------------------------------------------------------
def test_same_file_by_another_path_resumes(tiny_dataset, tmp_path, monkeypatch):
    """A bank saved under a relative path resumes through an absolute path from another folder, through a symlinked
    folder, and after its run folder moved; another bank file is still refused."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    first = bank_loader(tiny_dataset / "train", "bank.bin")
    for batch in first:
        first.feedback(batch, maps_of(batch))
    state = first.state_dict()
    del first, batch
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(run)
    for where in (run / "bank.bin", Path("link/bank.bin")):
        loader = bank_loader(tiny_dataset / "train", where)
        loader.load_state_dict(state)
        del loader
    run.rename(tmp_path / "moved")
    loader = bank_loader(tiny_dataset / "train", tmp_path / "moved" / "bank.bin")
    loader.load_state_dict(state)
    assert (next(iter(loader)).meta["map_source"] > 0).any()
    other = bank_loader(tiny_dataset / "train", tmp_path / "other.bin")
    with pytest.raises(ValueError, match="another bank file"):
        other.load_state_dict(state)


# -- fingerprints --------------------------------------------------------------------------------------------------
def test_fingerprint_of_any_file_name(tiny_dataset, tmp_path):
    """A file name that is not valid UTF-8 hashes as its bytes; a UTF-8 name hashes as it always did; a loader on a
    dataset with such a name opens its bank."""
    odd = os.fsdecode(b"caf\xe9.jpg")
    assert dataset_fingerprint([odd, "caf\u00e9.jpg"], [0, 1]) == hashlib.sha1(
        b"caf\xe9.jpg\t0\ncaf\xc3\xa9.jpg\t1\n").hexdigest()
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset / "train", root)
    first = sorted((root / "00_disc").iterdir())[0]
    os.rename(first, os.path.join(os.fsencode(root / "00_disc"), b"caf\xe9.jpg"))
    loader = bank_loader(root, tmp_path / "bank.bin")
    assert loader.bank.num_samples == 24


# -- left behind ---------------------------------------------------------------------------------------------------
def test_temporary_bank_leaves_nothing(tiny_dataset, tmp_path, monkeypatch):
    """A bank without a path is unlinked as soon as it is open: its folder is gone while the loader reads and
    writes it through its descriptors (the reader workers through /proc/<pid>/fd)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    loader = bank_loader(tiny_dataset / "train", None)
    assert list(temp.iterdir()) == []
    for batch in loader:
        loader.feedback(batch, maps_of(batch))
    assert (next(iter(loader)).meta["map_source"] > 0).any()
    assert list(temp.iterdir()) == []
