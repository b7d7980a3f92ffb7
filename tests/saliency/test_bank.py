"""The saliency bank (issue 12): the geometry of a push and a read against a NumPy oracle that maps every
output pixel through the source image, the epoch slots, and the loader's bank end to end -- a hot spot
pushed in epoch e steers the saliency-occlusion window of the sample's visit in epoch e+1, in every copy
mode, after a resume, and across two ranks (``torch.distributed``, gloo)."""
from __future__ import annotations

import os
import shutil
import socket

import numpy as np
import pytest
import torch

from conftest import cuda_devices
from helpers import feeder
from pipelines.saliency.bank import (BankFile, BankReader, EpochProgress, SaliencyBank, grid_window, make_stamp,
                                     progress_path, stamp_epoch, window_holds_pushed_cell)
from pipelines.saliency.bank_writer import push_cells

G = 22


# -- oracle ----------------------------------------------------------------------------------------
def source_points(crop, flip, size):
    """(size, size, 2) source-image points of the output pixel centres of a crop window and flip (the
    resize convention: output pixel o covers [y0 + o h / size, y0 + (o + 1) h / size))."""
    y0, x0, h, w = crop
    sy = y0 + (np.arange(size) + 0.5) * h / size
    sx = x0 + (np.arange(size) + 0.5) * w / size
    if flip:
        sx = sx[::-1]
    return np.stack(np.meshgrid(sy, sx, indexing="ij"), -1)


def output_pixel(point, crop, flip, size):
    """The output pixel (row, col) of a source point inside the crop window."""
    y0, x0, h, w = crop
    oy = int((point[0] - y0) * size / h)
    ox = int((point[1] - x0) * size / w)
    return oy, (size - 1 - ox) if flip else ox


def map_of(f, crop, flip, size):
    """The map a model would push for a row: ``f`` of the source point of each output pixel."""
    pts = source_points(crop, flip, size)
    return f(pts[..., 0], pts[..., 1])


def inside(pts, crop, margin=0.0):
    y0, x0, h, w = crop
    return ((pts[..., 0] >= y0 + margin) & (pts[..., 0] < y0 + h - margin)
            & (pts[..., 1] >= x0 + margin) & (pts[..., 1] < x0 + w - margin))


def _weights(out: int, start, extent, full, grid: int) -> np.ndarray:
    """``(n, out, grid)`` bilinear weights of the cells for each output pixel of ``n`` windows ``[start, start +
    extent)`` of an axis of ``full`` source pixels cut into ``grid`` cells (cell centres at ``(i + 0.5) full / grid``,
    clamped at the border)."""
    start, extent, full = (np.asarray(a, np.float64)[:, None] for a in (start, extent, full))
    src = start + (np.arange(out) + 0.5) * extent / out
    g = np.clip(src * grid / full - 0.5, 0.0, grid - 1.0)
    i0 = np.floor(g).astype(np.int64)
    t = g - i0
    i1 = np.minimum(i0 + 1, grid - 1)
    w = np.zeros((start.shape[0], out, grid))
    rows, cols = np.arange(start.shape[0])[:, None], np.arange(out)[None, :]
    w[rows, cols, i1] = t  # i0 == i1 only at the clamped end, where t = 0
    w[rows, cols, i0] += 1.0 - t
    return w


def read_window(cells, crop, flip, image_size, size: int):
    """NumPy oracle of the read (float64): stored grids ``(n, g, g)`` re-cropped to windows ``crop`` ``(n, 4)`` of
    images ``image_size`` ``(n, 2)`` and flipped, at ``size``. Returns ``(maps (n, size, size), covered (n,))``:
    ``covered`` is False where the window holds no written cell centre."""
    cells = np.asarray(cells)
    n, g = cells.shape[0], cells.shape[-1]
    crop = np.asarray(crop, np.int64).reshape(n, 4)
    hw = np.asarray(image_size, np.int64).reshape(n, 2)
    values = np.where(cells > 0, (cells.astype(np.float64) - 1.0) / 254.0, 0.0)
    wy = _weights(size, crop[:, 0], crop[:, 2], hw[:, 0], g)
    wx = _weights(size, crop[:, 1], crop[:, 3], hw[:, 1], g)
    flipped = np.asarray(flip).reshape(n).astype(bool)
    wx[flipped] = wx[flipped, ::-1]
    maps = np.einsum("nsg,ngh,nth->nst", wy, values, wx)
    covered = np.zeros(n, bool)
    for r in range(n):
        cy, cx = (np.arange(g) + 0.5) * hw[r, 0] / g, (np.arange(g) + 0.5) * hw[r, 1] / g
        pts = np.stack(np.meshgrid(cy, cx, indexing="ij"), -1)
        covered[r] = bool(((cells[r] > 0) & inside(pts, crop[r])).any())
    return maps, covered


def graph_read(cells, crop, flip, image_size, size: int, device: str = "cpu"):
    """The graph's read (:meth:`BankSaliency.graph_map`) of the reader's arrays, run in a DALI pipeline on
    ``device``: ``(n, size, size)`` float32 maps. The uniform fallback: no image saliency is added."""
    from nvidia.dali import fn, pipeline_def

    import dali_ops
    from pipelines.loader.graph import GraphContext

    cells = np.asarray(cells, np.uint8)
    n, g = cells.shape[0], cells.shape[-1]
    start, end = grid_window(crop, flip, image_size, g)
    arrays = {"bank_grid": cells[..., None], "bank_roi_start": start, "bank_roi_end": end}
    dali_ops.load()

    @pipeline_def(batch_size=n, num_threads=1, device_id=0 if device == "gpu" else None, seed=0)
    def pipe():
        nodes = {k: fn.external_source(source=feeder(a), batch=True) for k, a in arrays.items()}
        ctx = GraphContext(device, "float32", None, None, size)
        return SaliencyBank(grid=g, fallback="uniform").graph_map(ctx, None, 0, nodes)

    p = pipe()
    p.build()
    (out,) = p.run()
    out = out.as_cpu() if hasattr(out, "as_cpu") else out
    return np.stack([np.asarray(t) for t in out])


def bank(tmp_path, n=4, grid=G, name="bank.bin"):
    """A bank file whose pushes of every epoch count as written (no reader waits)."""
    file = BankFile(tmp_path / name, n, grid, "fp")
    EpochProgress(progress_path(file.path), 1, create=True).set(0, 10 ** 6)
    return file


def push(file, ids, maps, crops, flips, hw, stamp):
    cells = push_cells(torch.as_tensor(np.asarray(maps, np.float32)), crops, flips, hw, file.grid).numpy()
    file.write(ids, np.full(len(ids), stamp, np.int64), cells)
    return cells


# -- geometry ----------------------------------------------------------------------------------------
H, W = 300, 420


def ramp(y, x):
    return 0.2 + 0.5 * y / H + 0.3 * x / W


@pytest.mark.parametrize("flip_a,flip_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("crop_a,crop_b", [((20, 30, 200, 260), (90, 150, 180, 240)),   # partial overlap
                                           ((0, 0, 300, 420), (60, 90, 120, 160)),       # B inside A
                                           ((40, 10, 150, 300), (10, 0, 290, 420))])     # A inside B
def test_round_trip_matches_the_source_image_oracle(tmp_path, crop_a, crop_b, flip_a, flip_b):
    """A map pushed under crop A / flip a and read under crop B / flip b equals, up to the push's positive
    scale, the A map at the point of A's output that each B pixel's source point falls on; pixels whose
    source point A did not cover read 0. Compared away from A's border and the image border by one cell
    (there the cells hold partial averages / the grid is clamped). A linear map makes the bank exact up to
    its 8-bit quantisation."""
    size_a, size_b = 64, 96
    f = ramp
    file = bank(tmp_path)
    push(file, [2], map_of(f, crop_a, flip_a, size_a)[None], [crop_a], [flip_a], [(H, W)], make_stamp(0, 0))
    cells, age, found = BankReader(file.path, 4, G, "image").lookup([2], 1)
    assert found.tolist() == [True] and age.tolist() == [1]
    assert window_holds_pushed_cell(cells, [crop_b], [(H, W)]).tolist() == [True]
    got = graph_read(cells, [crop_b], [flip_b], [(H, W)], size_b)
    pts = source_points(crop_b, flip_b, size_b)
    cell = max(H, W) / G
    border = (pts[..., 0] >= cell) & (pts[..., 0] < H - cell) & (pts[..., 1] >= cell) & (pts[..., 1] < W - cell)
    inner = inside(pts, crop_a, margin=1.5 * cell) & border
    outer = ~inside(pts, crop_a, margin=-1.5 * cell)
    assert inner.sum() > 100
    oracle = f(pts[..., 0], pts[..., 1])
    scale = (got[0][inner] * oracle[inner]).sum() / (oracle[inner] ** 2).sum()
    assert scale > 0
    np.testing.assert_allclose(got[0][inner], scale * oracle[inner], atol=3 / 254)
    assert (got[0][outer] == 0).all()


def test_no_overlap_falls_back_and_partial_pushes_merge(tmp_path):
    """A window that holds no pushed cell centre is not covered (the row falls back); a second push in
    the same epoch over another window adds its cells and keeps the first push's."""
    f = ramp
    file = bank(tmp_path)
    a, c = (0, 0, 120, 150), (180, 250, 120, 170)
    push(file, [1], map_of(f, a, 0, 48)[None], [a], [0], [(H, W)], make_stamp(3, 5))
    cells, age, found = BankReader(file.path, 4, G, "image").lookup([1], 4)
    assert window_holds_pushed_cell(cells, [c], [(H, W)]).tolist() == [False]
    push(file, [1], map_of(f, c, 1, 48)[None], [c], [1], [(H, W)], make_stamp(3, 9))  # same epoch: merged
    cells, age, found = BankReader(file.path, 4, G, "image").lookup([1], 4)
    assert window_holds_pushed_cell(cells, [(0, 0, H, W)], [(H, W)]).tolist() == [True]
    whole = graph_read(cells, [(0, 0, H, W)], [0], [(H, W)], 64)
    pts = source_points((0, 0, H, W), 0, 64)
    cell = max(H, W) / G
    for win in (a, c):
        region = inside(pts, win, margin=1.5 * cell)
        assert (whole[0][region] > 0.3).all()  # both pushes are there (each relative to its own peak)
    gap = ~inside(pts, a, -1.5 * cell) & ~inside(pts, c, -1.5 * cell)
    assert (whole[0][gap] == 0).all()


#: the graph's re-crop against the float64 oracle: DALI's resampling runs in float32 (measured: at most 3e-6);
#: the stored bytes are 1/254 apart, so this is far below the bank's quantisation
RECROP_TOLERANCE = 1e-5


@pytest.mark.parametrize("device", ["cpu"] + (["gpu"] if cuda_devices() else []))
@pytest.mark.parametrize("grid,size", [(22, 64), (22, 224), (7, 40), (5, 3)])
def test_graph_recrop_matches_the_numpy_oracle(device, grid, size):
    """Random stored grids (a third of the cells never written, byte 0), random windows of random images --
    thin, whole, at the borders, smaller than a cell -- and flips: the graph's ``fn.resize`` of the grid over the
    window in grid units, then the flip, equals the oracle's bilinear read between cell centres to
    RECROP_TOLERANCE, and the reader's fallback rule equals the oracle's ``covered``."""
    rng = np.random.default_rng(grid * 1000 + size)
    n = 48
    cells = rng.integers(1, 256, (n, grid, grid)).astype(np.uint8)
    cells[rng.random((n, grid, grid)) < 0.33] = 0
    cells[0] = 0  # nothing pushed
    hw = rng.integers(8, 600, (n, 2))
    h = np.minimum(hw[:, 0], rng.integers(1, 600, n))
    w = np.minimum(hw[:, 1], rng.integers(1, 600, n))
    y0, x0 = rng.integers(0, hw[:, 0] - h + 1), rng.integers(0, hw[:, 1] - w + 1)
    crop = np.stack([y0, x0, h, w], 1)
    crop[1] = (0, 0, hw[1, 0], hw[1, 1])  # the whole image
    crop[2] = (hw[2, 0] - 1, hw[2, 1] - 1, 1, 1)  # one pixel in the corner
    flip = rng.integers(0, 2, n)
    want, covered = read_window(cells, crop, flip, hw, size)
    got = graph_read(cells, crop, flip, hw, size, device)
    assert got.shape == (n, size, size) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=RECROP_TOLERANCE, rtol=0)
    assert window_holds_pushed_cell(cells, crop, hw).tolist() == covered.tolist()
    assert 0 < covered.sum() < n


def test_push_cells_area_average_oracle():
    """Each covered cell holds the area average of the (un-flipped) map over its part inside the window,
    relative to the row's largest cell: checked against overlap lengths of cells and map pixels in NumPy."""
    rng = np.random.default_rng(0)
    crop, hw, g = (13, 27, 101, 157), (140, 200), 7
    maps = rng.random((2, 9, 11)).astype(np.float32)
    flips = [0, 1]
    cells = push_cells(torch.from_numpy(maps), [crop] * 2, flips, [hw] * 2, g).numpy()
    y0, x0, h, w = crop

    def overlaps(lo, ext, full, pixels):  # (g, pixels): length of cell i inside the window and pixel p
        cell = np.arange(g + 1) * full / g
        pix = lo + np.arange(pixels + 1) * ext / pixels
        a = np.maximum(cell[:-1, None], pix[None, :-1])
        b = np.minimum(cell[1:, None], pix[None, 1:])
        return np.clip(b - a, 0, None)

    oy, ox = overlaps(y0, h, hw[0], 9), overlaps(x0, w, hw[1], 11)
    cy, cx = (np.arange(g) + 0.5) * hw[0] / g, (np.arange(g) + 0.5) * hw[1] / g
    written = ((cy >= y0) & (cy < y0 + h))[:, None] & ((cx >= x0) & (cx < x0 + w))[None, :]
    for r in range(2):
        src = maps[r][:, ::-1] if flips[r] else maps[r]
        area = oy.sum(1)[:, None] * ox.sum(1)[None, :]
        means = (oy @ src.astype(np.float64) @ ox.T) / np.where(area > 0, area, 1)
        expected = np.where(written, 1 + np.round(254 * means / means[written].max()), 0)
        assert np.abs(cells[r].astype(int) - expected).max() <= 1  # a rounding tie at most


def test_epoch_slots_and_forgetting(tmp_path):
    """A read in epoch e sees only pushes of earlier epochs (the latest); a push in epoch e goes to the
    other slot; forget_since drops pushes at or after a position and refuses a bank that is past it."""
    file = bank(tmp_path)
    reader = BankReader(file.path, 4, G, "image")
    full = (0, 0, H, W)
    one = np.ones((1, 8, 8), np.float32)
    push(file, [0], one, [full], [0], [(H, W)], make_stamp(0, 3))
    assert reader.lookup([0], 0)[2].tolist() == [False]  # not visible in its own epoch
    sloped = map_of(ramp, full, 0, 16)[None]
    push(file, [0], sloped, [full], [0], [(H, W)], make_stamp(1, 2))
    cells1, age1, found1 = reader.lookup([0], 1)
    assert found1.tolist() == [True] and age1.tolist() == [1] and (cells1 == 255).all()  # epoch 0's flat map
    cells2, age2, _ = reader.lookup([0], 2)
    assert age2.tolist() == [1] and not (cells2 == 255).all()  # epoch 1's ramp
    assert sorted(stamp_epoch(file.stamps[0]).tolist()) == [0, 1]
    with pytest.raises(ValueError, match="already holds maps pushed in epoch 1"):
        file.forget_since(int(make_stamp(0, 5)))
    file.forget_since(int(make_stamp(1, 2)))
    assert reader.lookup([0], 2)[1].tolist() == [2]  # back to epoch 0's map
    with pytest.raises(ValueError, match="another dataset or grid.*grid"):
        BankFile(file.path, 4, G + 1, "fp")
    with pytest.raises(ValueError, match="fingerprint"):
        BankFile(file.path, 4, G, "another")


def write_oracle(stamps, cells, ids, push_stamps, pushed):
    """BankFile.write restated sample by sample: copies of a sample in one push combine cell by cell (the larger
    byte where both covered a cell, else the covered one); the merge goes into the slot written in the push's
    epoch, else into the other slot than the latest earlier push, starting from that push's cells."""
    stamps, cells = stamps.copy(), cells.copy()
    combined = {}
    for s, stamp, new in zip(ids, push_stamps, pushed):
        if s in combined:
            prev = combined[s][0]
            new = np.where((prev > 0) & (new > 0), np.maximum(prev, new), np.where(new > 0, new, prev))
        combined[s] = (new, stamp)
    for s, (new, stamp) in combined.items():
        epoch = stamp >> 32
        same = [k for k in range(2) if stamps[s, k] >= 0 and stamps[s, k] >> 32 == epoch]
        earlier = [k for k in range(2) if stamps[s, k] >= 0 and stamps[s, k] >> 32 < epoch]
        if same:
            target = base = same[0]
        elif earlier:
            base = max(earlier, key=lambda k: stamps[s, k])
            target = 1 - base
        else:
            base, target = None, 0
        merged = cells[s, base].copy() if base is not None else np.zeros_like(new)
        merged[new > 0] = new[new > 0]
        cells[s, target] = merged
        stamps[s, target] = stamp
    return stamps, cells


def test_vectorised_write_equals_the_per_sample_rule(tmp_path):
    """Pushes of many samples with copies, over three epochs, pushed twice within an epoch: the vectorised
    BankFile.write leaves the same stamps and cells as the rule applied sample by sample."""
    rng = np.random.default_rng(4)
    file = bank(tmp_path, n=30, grid=5)
    stamps, cells = np.array(file.stamps), np.array(file.cells)
    for epoch in range(3):
        for batch in range(3):
            ids = rng.integers(0, 30, 24)
            pushed = rng.integers(0, 256, (24, 5, 5)).astype(np.uint8)
            pushed[rng.random(pushed.shape) < 0.4] = 0
            push_stamps = np.full(24, int(make_stamp(epoch, batch)), np.int64)
            file.write(ids, push_stamps, pushed)
            stamps, cells = write_oracle(stamps, cells, ids.tolist(), push_stamps.tolist(), pushed)
            np.testing.assert_array_equal(np.array(file.stamps), stamps)
            np.testing.assert_array_equal(np.array(file.cells), cells)


def test_foreign_file_is_refused_at_once(tmp_path):
    import time

    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a bank")
    start = time.monotonic()
    with pytest.raises(ValueError, match="photo.jpg is not a saliency bank file"):
        BankFile(tmp_path / "photo.jpg", 4, G, "fp")
    assert time.monotonic() - start < 5  # no wait for a header that will never come


def test_bank_options_are_checked():
    with pytest.raises(ValueError, match="bank fallback"):
        SaliencyBank(fallback="zeros")
    with pytest.raises(ValueError, match="bank grid"):
        SaliencyBank(grid=1)
    assert SaliencyBank.bytes_per_sample(22) == 984 <= 1024


# -- the loader ----------------------------------------------------------------------------------------
SIZE, WIN, BATCH = 96, 24, 6


def bank_loader(root, bank_spec, copies=1, copy_mode="joint", prefetch=2, **kw):
    from pipelines.loader import OcclusionLoader

    return OcclusionLoader(root, BATCH, "saliency_occlusion", saliency="bank", size=WIN, jitter=0,
                           copies=copies, copy_mode=copy_mode, output_size=SIZE, device="cpu", seed=3, num_classes=3,
                           runtime=dict(num_threads=2, py_workers=1, verify="none", prefetch=prefetch), bank=bank_spec, **kw)


def hot_spot_maps(batch, points):
    """Per row one hot output pixel where the sample's point falls in the row's crop (zeros elsewhere)."""
    meta = batch.meta
    maps = np.zeros((batch.images.shape[0], SIZE, SIZE), np.float32)
    for r in range(maps.shape[0]):
        p = points[int(meta["sample_id"][r])]
        crop = meta["crop"][r].tolist()
        if inside(np.asarray(p), crop):
            maps[r][output_pixel(p, crop, int(meta["flip"][r]), SIZE)] = 1.0
    return torch.from_numpy(maps)


def pick_points(batch, points):
    """A source point inside the first copy's crop of each sample, fixed at its first visit."""
    rng = np.random.default_rng(int(batch.meta["sample_id"][0]))
    b = batch.images.shape[0] // int(batch.meta["copy"].max() + 1)
    for r in range(b):
        y0, x0, h, w = batch.meta["crop"][r].tolist()
        points.setdefault(int(batch.meta["sample_id"][r]), (y0 + rng.uniform(0.1, 0.9) * h,
                                                            x0 + rng.uniform(0.1, 0.9) * w))


def check_window_holds_point(batch, points, pushed):
    """Every valid row whose crop holds its sample's pushed point: map from the bank, one epoch old, and the
    occluded window contains the point. Returns how many rows were checked."""
    meta = batch.meta
    checked = 0
    for r in range(batch.images.shape[0]):
        s = int(meta["sample_id"][r])
        if not meta["valid"][r] or s not in pushed:
            continue
        crop = meta["crop"][r].tolist()
        if not inside(np.asarray(points[s]), crop):
            continue
        assert int(meta["map_source"][r]) == 1 and int(meta["map_age"][r]) == 1, (r, s)
        oy, ox = output_pixel(points[s], crop, int(meta["flip"][r]), SIZE)
        y0, x0, y1, x1 = meta["boxes"][r, 0].tolist()
        assert y0 <= oy < y1 and x0 <= ox < x1, f"row {r} sample {s}: point {(oy, ox)} outside window {(y0, x0, y1, x1)}"
        checked += 1
    return checked


@pytest.mark.parametrize("copies,copy_mode", [(1, "joint"), (2, "joint"), (2, "batch_aug")])
def test_hot_spot_steers_next_visit(tiny_dataset, tmp_path, copies, copy_mode):
    """A hot spot pushed at a source point in epoch 0 is inside the saliency-occlusion window (jitter 0) of
    the sample in epoch 1 whenever the point lies in the new crop; epoch 0 rows fall back to image saliency."""
    loader = bank_loader(tiny_dataset / "train", tmp_path / "bank.bin", copies=copies, copy_mode=copy_mode)
    points, pushed = {}, set()
    for batch in loader:  # epoch 0
        assert (batch.meta["map_source"] == 0).all() and (batch.meta["map_age"] == -1).all()
        pick_points(batch, points)
        loader.feedback(batch, hot_spot_maps(batch, points))
        pushed.update(batch.meta["sample_id"].tolist())
    checked = sum(check_window_holds_point(batch, points, pushed) for batch in loader)  # epoch 1
    assert checked >= 8, checked


def test_resume_reproduces_the_boxes(tiny_dataset, tmp_path):
    """state_dict() in epoch 1 (the bank by path and generation) and a new loader on the same file give the
    boxes of the original run for the rest of epoch 1 and, with the same pushes, in epoch 2; the original
    pushed on (to the end of epoch 1) before the resumed loader opened the file."""
    path = tmp_path / "bank.bin"
    first = bank_loader(tiny_dataset / "train", path)
    points = {}
    for batch in first:
        pick_points(batch, points)
        first.feedback(batch, hot_spot_maps(batch, points))

    def maps_of(batch):  # the same pushes in both runs, drawn from the batch's position
        rng = np.random.default_rng(batch.meta["position"][0].tolist())
        return torch.from_numpy(rng.random((batch.images.shape[0], 12, 12)).astype(np.float32))

    boxes, state = [], None
    for epoch in (1, 2):
        for k, batch in enumerate(first):
            boxes.append(batch.meta["boxes"].clone())
            first.feedback(batch, maps_of(batch))
            if epoch == 1 and k == 0:
                state = first.state_dict()  # the next batch to serve: epoch 1, batch 1
            if epoch == 2 and k == 0:
                break
        if epoch == 1:
            first.state_dict()  # every push written
            shutil.copyfile(path, tmp_path / "end_of_epoch_1.bin")
    assert state["bank"]["path"] == str(path) and state["epoch"] == 1 and state["batch"] == 1
    first.state_dict()
    del first
    again = bank_loader(tiny_dataset / "train", path)
    with pytest.raises(ValueError, match="already holds maps pushed in epoch 2"):
        again.load_state_dict(state)  # the original went on into epoch 2: some maps epoch 1 reads are gone
    shutil.copyfile(tmp_path / "end_of_epoch_1.bin", path)  # a run that stopped at the end of epoch 1
    again.load_state_dict(state)
    rest = []
    for epoch in (1, 2):
        for k, batch in enumerate(again):
            rest.append(batch.meta["boxes"])
            again.feedback(batch, maps_of(batch))
            if epoch == 2 and k == 0:
                break
    assert len(rest) == len(boxes) - 1
    for got, want in zip(rest, boxes[1:]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    fresh = bank_loader(tiny_dataset / "train", tmp_path / "other.bin")
    with pytest.raises(ValueError, match="has generation=.*another bank file"):
        fresh.load_state_dict(state)


def test_loader_bank_errors(tiny_dataset, tmp_path):
    from pipelines.loader import OcclusionLoader

    plain = OcclusionLoader(tiny_dataset / "train", 4, "saliency_occlusion", output_size=64, device="cpu",
                            num_classes=3, runtime=dict(verify="none"))
    batch = next(iter(plain))
    with pytest.raises(ValueError, match="feedback needs a training loader whose method reads the saliency bank"):
        plain.feedback(batch, torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="method 'cutout' has no option.*bank"):
        OcclusionLoader(tiny_dataset / "train", 4, "cutout", device="cpu", bank=tmp_path / "b")
    with pytest.raises(ValueError, match="bank is the file of saliency='bank'; saliency_occlusion has saliency='im"):
        OcclusionLoader(tiny_dataset / "train", 4, "saliency_occlusion", device="cpu", bank=tmp_path / "b")
    with pytest.raises(ValueError, match="bank path must be a file path"):
        OcclusionLoader(tiny_dataset / "train", 4, "saliency_occlusion", saliency="bank", device="cpu", bank=3)
    with pytest.raises(ValueError, match="saliency must be one of"):
        OcclusionLoader(tiny_dataset / "train", 4, "saliency_occlusion", saliency="banks", device="cpu")
    loader = bank_loader(tiny_dataset / "train", None, copies=2, copy_mode="batch_aug")
    batch = next(iter(loader))
    with pytest.raises(ValueError, match="maps has 6 rows; give one per batch row"):
        loader.feedback(batch, torch.zeros(BATCH, 8, 8))
    with pytest.raises(ValueError, match="rows must be batch row indices"):
        loader.feedback(batch, torch.zeros(1, 8, 8), rows=[2 * BATCH])
    with pytest.raises(ValueError, match="num_shards > 1 needs last_batch"):
        bank_loader(tiny_dataset / "train", tmp_path / "s.bin", num_shards=2, shard_id=0)


# -- two ranks -------------------------------------------------------------------------------------------
def holds_pushed_cell(crop_a, crop_b, hw, g=G):
    """Whether window B holds the centre of a cell that a push under window A covered (the bank's rule)."""
    cy = (np.arange(g) + 0.5) * hw[0] / g
    cx = (np.arange(g) + 0.5) * hw[1] / g
    pts = np.stack(np.meshgrid(cy, cx, indexing="ij"), -1)
    return bool((inside(pts, crop_a) & inside(pts, crop_b)).any())


def _rank_main(rank, world, port, root, path, out):
    import torch.distributed as dist

    os.environ.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        loader = bank_loader(root, path, shard_id=rank, num_shards=world, last_batch="drop")
        rows = []
        for epoch in range(2):
            for batch in loader:
                meta = batch.meta
                points = {int(s): sample_point(int(s), meta["crop"][r].tolist()) if epoch == 0 else None
                          for r, s in enumerate(meta["sample_id"])}
                if epoch == 0:
                    loader.feedback(batch, hot_spot_maps(batch, points))
                rows += [dict(epoch=epoch, sample=int(meta["sample_id"][r]), crop=meta["crop"][r].tolist(),
                              flip=int(meta["flip"][r]), hw=meta["image_size"][r].tolist(),
                              source=int(meta["map_source"][r]), age=int(meta["map_age"][r]),
                              box=meta["boxes"][r, 0].tolist()) for r in range(batch.images.shape[0])]
        torch.save({"rows": rows, "traffic": dict(loader._channel.writer.traffic)}, out)
    finally:
        dist.destroy_process_group()


def sample_point(sample: int, crop):
    """A source point inside the sample's epoch-0 crop, seeded by the sample (any rank can recompute it)."""
    rng = np.random.default_rng(sample)
    y0, x0, h, w = crop
    return y0 + rng.uniform(0.1, 0.9) * h, x0 + rng.uniform(0.1, 0.9) * w


def test_two_ranks_share_the_bank(tiny_dataset, tmp_path):
    """Two CPU processes, gloo, two shards, one bank file: in epoch 1 every row reads the map its sample got in
    epoch 0 exactly where its window holds a pushed cell -- whichever rank pushed it -- and the window then
    holds the pushed hot spot. Each map was sent to, and written by, the one rank that serves its sample in
    epoch 1: each rank wrote exactly the rows it serves."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs = [tmp_path / f"rank{r}.pt" for r in range(2)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(r, 2, port, tiny_dataset / "train", tmp_path / "bank.bin", outs[r]))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0, p.exitcode
    saved = [torch.load(o) for o in outs]
    rows = [dict(row, rank=r) for r, out in enumerate(saved) for row in out["rows"]]
    for r, out in enumerate(saved):  # each pushed map went to the one rank serving its sample next epoch
        serves = sum(row["epoch"] == 1 and row["rank"] == r for row in rows)
        assert out["traffic"]["rows_written"] == out["traffic"]["rows_received"] == serves == 12, out["traffic"]
        assert out["traffic"]["rows_sent"] == 12 and out["traffic"]["pushes"] == 2
    first = {row["sample"]: row for row in rows if row["epoch"] == 0}
    second = [row for row in rows if row["epoch"] == 1]
    assert len(first) == 24 and sorted(row["sample"] for row in second) == sorted(first)
    crossed = checked = 0
    for row in second:
        before = first[row["sample"]]
        expected = holds_pushed_cell(before["crop"], row["crop"], row["hw"])
        assert row["source"] == int(expected), row
        if not expected:
            continue
        assert row["age"] == 1
        crossed += before["rank"] != row["rank"]
        point = sample_point(row["sample"], before["crop"])
        if inside(np.asarray(point), row["crop"]):
            oy, ox = output_pixel(point, row["crop"], row["flip"], SIZE)
            y0, x0, y1, x1 = row["box"]
            assert y0 <= oy < y1 and x0 <= ox < x1, row
            checked += 1
    assert crossed >= 4 and checked >= 4, (crossed, checked)


def test_fine_grained_saliency_skip_passes_the_prior_and_computes_the_rest():
    """``skip`` (the bank's rows): skipped samples are the ``prior`` input's sample as it is (zeros without one), the
    others equal the op without it; a prior of the wrong shape is refused naming both shapes."""
    import dali_ops

    dali_ops.load()
    import nvidia.dali.experimental.dynamic as ndd  # after the plugin: ndd.occlusion

    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (40 + 3 * i, 52, 3), dtype=np.uint8) for i in range(4)]
    priors = [rng.random(im.shape[:2]).astype(np.float32) for im in images]
    skip = [np.int32(v) for v in (1, 0, 0, 1)]
    full = ndd.occlusion.fine_grained_saliency(ndd.as_batch(images))
    zeros = ndd.occlusion.fine_grained_saliency(ndd.as_batch(images), skip=ndd.as_batch(skip))
    part = ndd.occlusion.fine_grained_saliency(ndd.as_batch(images), ndd.as_batch(priors), skip=ndd.as_batch(skip))
    for i in range(4):
        got, without = np.asarray(part.tensors[i]), np.asarray(zeros.tensors[i])
        if skip[i]:
            np.testing.assert_array_equal(got, priors[i])
            assert without.shape == images[i].shape[:2] and (without == 0).all()
        else:
            assert got.max() > 0
            np.testing.assert_array_equal(got, np.asarray(full.tensors[i]))
            np.testing.assert_array_equal(without, np.asarray(full.tensors[i]))
    with pytest.raises(Exception, match="prior.*sample 1 has shape"):
        bad = [p if i != 1 else p[:-1] for i, p in enumerate(priors)]
        np.asarray(ndd.occlusion.fine_grained_saliency(ndd.as_batch(images), ndd.as_batch(bad),
                                                       skip=ndd.as_batch(skip)).tensors[0])


@pytest.mark.parametrize("method,opts", [("saliency_occlusion", dict(size=16)), ("keep_cutout", dict(size=16)),
                                         ("keep_paste", dict(size=16)), ("keep_cutmix", {}), ("saliencymix", {})])
def test_empty_bank_equals_image_saliency(tiny_dataset, tmp_path, method, opts):
    """Every saliency-guided method with ``saliency="bank"`` and nothing pushed yet falls back to the image
    saliency row by row: the batch equals ``saliency="image"``'s bit for bit (images, boxes, lam, targets)."""
    from pipelines.loader import OcclusionLoader

    common = dict(output_size=64, device="cpu", seed=7, num_classes=3,
                  runtime=dict(num_threads=2, py_workers=1, verify="none"), copies=2, copy_mode="batch_aug", **opts)
    image = next(iter(OcclusionLoader(tiny_dataset / "train", 4, method, **common)))
    bank = next(iter(OcclusionLoader(tiny_dataset / "train", 4, method, saliency="bank", bank=tmp_path / "b.bin",
                                     **common)))
    assert (bank.meta["map_source"] == 0).all()
    torch.testing.assert_close(bank.images, image.images, rtol=0, atol=0)
    torch.testing.assert_close(bank.targets, image.targets, rtol=0, atol=0)
    for key in ("boxes", "lam", "partner"):
        torch.testing.assert_close(bank.meta[key], image.meta[key], rtol=0, atol=0)
