"""Issue 14: nothing lost, nothing silent. One test (or a few) per numbered case of the issue, on real
files and real pipelines: corrupt scan data, seeds per shard and position, interrupted runs, a second
iterator, symlink loops, reader failures mid-epoch, argument checks, file lists and roots, replaced files."""
from __future__ import annotations

import io
import os
import signal
import time
import warnings

import numpy as np
import pytest
import torch

import pipelines.loader.loader as loader_module
from helpers import photo
from pipelines import OcclusionLoader
from pipelines.data.imagefiles import BadImageError, probe_image, scan_image_folder

# New names of issue 14 are imported inside the tests, so each test fails on its own on the old code.


def make(root, batch=4, **kw):
    kw.setdefault("device", "cpu")
    kw["runtime"] = {"num_threads": 1, "py_workers": 1, **kw.get("runtime", {})}
    kw.setdefault("output_size", 32)
    return OcclusionLoader(root, batch, **kw)


def ids(batches):
    return [b.meta["sample_id"].tolist() for b in batches]


# -- case 2: corrupt scan data behind an intact header ---------------------------------------------------

def scan_corrupted(path, seed=3):
    """A 500x375 JPEG whose header is intact and 400 bytes of scan data are overwritten (bit rot)."""
    buf = io.BytesIO()
    photo(375, 500).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sos = data.find(b"\xff\xda")
    at = sos + len(data) // 3
    data[at:at + 400] = np.random.default_rng(seed).integers(0, 256, 400, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_corrupt_scan_data_is_refused_by_default_and_passes_the_header_check(flat_root):
    from pipelines.loader.errors import ReaderFileError

    bad = scan_corrupted(flat_root / "a" / "rotten.jpg")
    assert probe_image(bad).width == 500  # the header is intact: the old default let it through
    assert len(list(make(flat_root, batch=17, runtime=dict(verify="header")))) == 1
    with pytest.raises(ReaderFileError) as err:
        next(iter(make(flat_root, batch=17)))  # default verify="full"
    assert str(err.value).startswith(f"{bad}: ") and "corrupt" in str(err.value)


# -- case 3: DALI's seed per shard and start position -------------------------------------------------------

def test_dali_seed_differs_per_shard_and_start_position(flat_root, monkeypatch):
    from pipelines.loader.seeding import pipeline_seed

    seen = []
    real = loader_module.build_pipeline

    def spy(source, **kw):
        seen.append((source.shard_id, source.start_epoch, source.start_batch, kw["seed"]))
        return real(source, **kw)

    monkeypatch.setattr(loader_module, "build_pipeline", spy)
    for shard in (0, 1):
        ld = make(flat_root, seed=5, num_shards=2, shard_id=shard)
        next(iter(ld))
        ld.set_epoch(3)
        next(iter(ld))
    resumed = make(flat_root, seed=5, num_shards=2, shard_id=0)
    resumed.load_state_dict({**resumed.state_dict(), "epoch": 3, "batch": 1})
    next(iter(resumed))
    seeds = [s[3] for s in seen]
    assert len(set(seeds)) == len(seeds) == 5  # every rank and every start position its own stream
    assert seeds == [pipeline_seed(5, k, e, b) for k, e, b, _ in seen]
    assert all(0 <= s < 2 ** 63 for s in seeds)


def test_auto_augment_stream_is_reproducible_per_start_position(flat_root):
    a = make(flat_root, auto_augment="rand_augment", seed=2)
    b = make(flat_root, auto_augment="rand_augment", seed=2)
    for ld in (a, b):
        ld.load_state_dict({**ld.state_dict(), "batch": 1})
    assert torch.equal(next(iter(a)).images, next(iter(b)).images)


# -- case 4: an interrupted or failed run() ----------------------------------------------------------------

@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_rebuilds_at_the_recorded_position(flat_root, interrupt):
    reference = ids(make(flat_root, shuffle=True, seed=4))
    ld = make(flat_root, shuffle=True, seed=4)
    it = iter(ld)
    first = next(it)
    real_run = ld._pipe.outputs

    def run_then_interrupt():
        real_run()  # DALI has handed out batch 1 when the interrupt arrives
        raise interrupt("interrupted")

    ld._pipe.outputs = run_then_interrupt
    with pytest.raises(interrupt):
        next(it)
    assert ld.state_dict()["batch"] == 1 and ld._pipe is None
    rest = ids(ld)
    assert ids([first]) + rest == reference  # no batch skipped
    assert ld.state_dict() == {**ld.state_dict(), "epoch": 1, "batch": 0}


# -- case 5: one live iterator per loader -----------------------------------------------------------------

def test_second_live_iterator_is_refused(flat_root):
    ld = make(flat_root)
    with pytest.raises(RuntimeError, match="already being iterated"):
        list(zip(ld, ld))
    ld = make(flat_root)
    with pytest.raises(RuntimeError, match="already being iterated"):
        for _ in ld:
            for _ in ld:
                pass
    ld = make(flat_root, shuffle=False)
    for _ in ld:
        break  # the abandoned iterator is released: a new loop continues the epoch (documented)
    assert ids(ld) == [[4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert ids([next(iter(ld))]) == [[0, 1, 2, 3]]  # next(iter(loader)) takes the next training batch


# -- case 6: symlink loops in a class folder ----------------------------------------------------------------

def test_symlink_loops_are_walked_once_and_keep_their_labels(flat_root):
    os.symlink("..", flat_root / "a" / "loop")        # -> the root: would serve class b as a
    os.symlink(".", flat_root / "b" / "self")         # -> itself
    (flat_root / "b" / "sub").mkdir()
    photo(40, 50).save(flat_root / "b" / "sub" / "x.jpg")
    os.symlink("../sub", flat_root / "b" / "sub" / "again")  # -> its own parent folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths, labels, classes = scan_image_folder(flat_root)
    assert len(paths) == 17 and labels.count(0) == 8 and labels.count(1) == 9
    assert all(os.path.realpath(p).startswith(str(flat_root / ("a" if l == 0 else "b"))) for p, l in zip(paths, labels))
    assert {str(w.message).split("'")[1] for w in caught} == {
        str(flat_root / "a" / "loop"), str(flat_root / "b" / "self"), str(flat_root / "b" / "sub" / "again")}


# -- case 7: reader failures name the real file, good batches are served ---------------------------------

@pytest.mark.parametrize("damage", ["delete", "empty"])
def test_file_broken_mid_epoch_is_named_after_the_good_batches(flat_root, damage):
    from pipelines.loader.errors import ReaderFileError

    ld = make(flat_root, batch=2, shuffle=False, runtime=dict(verify="none"))
    it = iter(ld)
    served = [next(it)]
    victim = flat_root / "b" / "3.jpg"  # sample 11, batch 5
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(b"")
    with pytest.raises(ReaderFileError) as err:
        for batch in it:
            served.append(batch)
    first_line = str(err.value).splitlines()[0]
    assert first_line.startswith(f"{victim}: ") and "batch 5" in first_line
    assert isinstance(err.value, BadImageError) and isinstance(err.value, RuntimeError)
    assert ids(served) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]  # batch 4 is not lost
    assert ld.state_dict()["batch"] == 5


def test_dead_worker_is_reported_as_a_dead_worker(flat_root):
    from pipelines.loader.errors import ReaderWorkerDied

    ld = make(flat_root, batch=2, runtime=dict(verify="none"))
    it = iter(ld)
    next(it)
    # the loader checks these before each run (pipelines.loader.errors.dead_worker): DALI's pool must expose them
    assert [p.pid for p in ld._pipe._py_pool.pool._processes]
    me = os.getpid()
    workers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                cmd = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if int(stat[1]) == me and b"multiprocessing.spawn" in cmd:
                workers.append(int(entry))
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(ReaderWorkerDied, match="reader worker process died"):
        for _ in it:
            pass


# -- case 9: argument errors, early and named ---------------------------------------------------------------

@pytest.mark.parametrize("kw, name", [
    (dict(seed=-1), "seed"), (dict(seed=2 ** 64), "seed"), (dict(seed="1"), "seed"), (dict(seed=1.0), "seed"),
    (dict(runtime=dict(prefetch=0)), "prefetch"), (dict(runtime=dict(num_threads=-1)), "num_threads"),
    (dict(runtime=dict(py_workers=0)), "py_workers"),
    (dict(dtype="float64"), "dtype"), (dict(train="False"), "train"), (dict(shuffle=1), "shuffle"),
    (dict(num_classes=0), "num_classes"), (dict(runtime=dict(max_image_pixels=0)), "max_image_pixels"),
])
def test_bad_arguments_fail_in_init_naming_the_argument(tmp_path, kw, name):
    # The root does not exist: the argument must be refused before any file is looked at.
    with pytest.raises((ValueError, TypeError)) as err:
        make(tmp_path / "missing", **kw)
    assert str(err.value).startswith(name + " must")


def test_numpy_scalars_and_large_seeds_are_accepted(flat_root):
    ld = make(flat_root, p=np.float32(0.5), alpha=np.float64(1.0), seed=2 ** 64 - 1, method="cutmix")
    assert next(iter(ld)).images.shape[0] == 4
    assert make(flat_root, batch=np.int64(4), train=np.bool_(False)).batch_size == 4


# -- case 10: file lists and roots --------------------------------------------------------------------------

def test_file_list_and_root_errors_name_the_file(flat_root, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match=r"empty.txt.*no 'path label' line"):
        make(empty)
    with pytest.raises(ValueError, match=r"0.jpg.*is an image file"):
        make(flat_root / "a" / "0.jpg")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(f"{flat_root / 'a' / '0.jpg'} 0\n".encode() + "caf\xe9.jpg 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt:2: not valid UTF-8"):
        make(latin)


def test_file_list_with_a_byte_order_mark(flat_root, tmp_path):
    listing = tmp_path / "bom.txt"
    listing.write_text("".join(f"{p} {i % 2}\n" for i, p in enumerate(sorted(flat_root.rglob("*.jpg")))),
                       encoding="utf-8-sig")
    assert listing.read_bytes().startswith(b"\xef\xbb\xbf")
    ld = make(listing)
    assert ld.dataset_size == 16 and ld.num_classes == 2


def test_typo_label_is_refused_unless_num_classes_is_given(flat_root, tmp_path):
    listing = tmp_path / "typo.txt"
    goods = sorted(flat_root.rglob("*.jpg"))
    listing.write_text(f"{goods[0]} 0\n{goods[1]} 100000000\n{goods[2]} 1\n")
    with pytest.raises(ValueError, match=r"label 100000000 .*num_classes"):
        make(listing)
    listing.write_text(f"{goods[0]} 0\n{goods[1]} 1200\n{goods[2]} 1\n")
    assert make(listing, num_classes=1201).num_classes == 1201
    with pytest.raises(ValueError, match="num_classes=5 but the labels"):
        make(listing, num_classes=5)


def test_decompression_bomb_limit_is_explained_and_reaches_the_workers(flat_root):
    from pipelines.loader.errors import ReaderFileError

    with pytest.raises(ReaderFileError, match="max_image_pixels"):
        next(iter(make(flat_root, runtime=dict(max_image_pixels=500))))  # 40x50 = 2000 px > 2 x 500: a bomb
    assert next(iter(make(flat_root, runtime=dict(max_image_pixels=None)))).images.shape[0] == 4
    ld = make(flat_root, runtime=dict(max_image_pixels=500, verify="none"), batch=16)  # only the workers see them
    with pytest.raises(ReaderFileError, match="max_image_pixels"):
        next(iter(ld))


# -- case 11: a file replaced after its header was cached ----------------------------------------------------

def test_replaced_file_is_cropped_from_its_new_geometry(flat_root):
    ld = make(flat_root, batch=2, shuffle=False, runtime=dict(verify="none"))
    for _ in ld:  # epoch 0: the worker probes and caches every header (40x50)
        pass
    victim = flat_root / "b" / "7.jpg"  # sample 15, last of 8 batches: epoch 1 has not read it yet
    photo(200, 240).save(victim, quality=90)
    last = list(ld)[-1]
    assert int(last.meta["sample_id"][-1]) == 15
    y0, x0, h, w = (int(v) for v in last.meta["crop"][-1])
    # random-resized-crop takes at least 8% of the new 200x240 image; the stale 40x50 has 2000 px in all
    assert y0 + h <= 200 and x0 + w <= 240 and h * w > 2000
