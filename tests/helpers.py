"""Helpers shared by the test modules (fixtures live in conftest.py): building a CPU loader the tests' way, the
torchvision normalisation, painted box masks, and the uint8 image and OpenCV saliency of a normalised row."""
from __future__ import annotations

import ctypes

import cv2
import numpy as np
import torch
from nvidia.dali import fn, pipeline_def
from PIL import Image

from dali_ops import mixing
from pipelines import OcclusionLoader

MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255
SIZE = 64


def photo(h, w, seed=0, mode="RGB"):
    """A gradient photo with noise, ``h`` x ``w``: JPEG-compressible like a photo, different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 // max(w, 1), yy * 255 // max(h, 1), ((xx + yy) * 5) % 256], -1)
    return Image.fromarray(np.clip(a + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)).convert(mode)


def photo_folder(root, per_class: int):
    """Classes ``a`` and ``b`` of ``per_class`` 40x50 JPEGs each under ``root``: sample ``i`` is class
    ``i // per_class``, file ``i % per_class`` in sorted order (``per_class`` <= 10), a photo of seed ``i``."""
    for c in "ab":
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            photo(40, 50, seed=i + per_class * (c == "b")).save(root / c / f"{i}.jpg", quality=90)
    return root


def grey_scan_jpeg(h=375, w=500, seed=0) -> bytes:
    """The JPEG of issue 20: an EOI marker written into the middle of its scan data. Every decoder here (Pillow,
    nvImageCodec, DALI's) returns an image, grey from there on, without an error."""
    import io

    buf = io.BytesIO()
    photo(h, w, seed).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    at = data.find(b"\xff\xda") + len(data) // 3
    data[at:at + 2] = b"\xff\xd9"
    return bytes(data)


class NoBatchNorm(torch.nn.Module):
    """A small convolutional classifier without BatchNorm (each row's logits depend on that row only)."""

    def __init__(self, k=3):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, k)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def make(root, batch=4, **kw):
    kw.setdefault("output_size", SIZE)
    kw.setdefault("device", "cpu")
    if isinstance(kw.get("runtime", {}), dict):  # a Runtime object is passed as it is
        kw["runtime"] = {"num_threads": 2, "py_workers": 1, **kw.get("runtime", {})}
    return OcclusionLoader(root, batch, **kw)


def reference_pixels(path, crop, flip, size=SIZE):
    """PIL: decode, crop the recorded window, bilinear resize, flip, normalise (torchvision's way)."""
    y0, x0, h, w = (int(v) for v in crop)
    im = Image.open(path).convert("RGB").crop((x0, y0, x0 + w, y0 + h)).resize((size, size), Image.BILINEAR)
    a = np.asarray(im, np.float64)
    if flip:
        a = a[:, ::-1]
    return ((a - MEAN) / STD).transpose(2, 0, 1)


def box_mask(boxes, size=SIZE):
    mask = np.zeros((size, size), bool)
    for y0, x0, y1, x1 in np.asarray(boxes):
        if y0 >= 0:
            mask[y0:y1, x0:x1] = True
    return mask


def epoch(loader, n=None):
    """The loader's batches up to the end of its epoch (or the first ``n``)."""
    out = []
    for b in loader:
        out.append(b)
        if n is not None and len(out) == n:
            break
    return out


def uint8_image(norm):
    """The uint8 HWC image the graph normalised (crop_mirror_normalize is exact up to float rounding)."""
    return np.rint(norm.numpy().transpose(1, 2, 0) * STD + MEAN).clip(0, 255).astype(np.uint8)


def opencv_saliency(norm):
    """OpenCV contrib StaticSaliencyFineGrained of the row's image (RGB -> BGR for OpenCV)."""
    ok, sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(uint8_image(norm)[:, :, ::-1].copy())
    assert ok
    return sal.astype(np.float32)


def feeder(batch):
    """An ``external_source`` callback that returns ``batch`` every iteration."""
    def source():
        return batch
    return source


def search_both(sal, draws, index, kwargs, devices=("cpu", "gpu")):
    """``fn.occlusion.box_search`` of the same inputs on each device (``index``: map_index or None)."""
    n = len(draws)
    outs = {}
    for device in devices:
        @pipeline_def(batch_size=n, num_threads=2, device_id=0 if device == "gpu" else None, seed=0)
        def pipe():
            def node(b):
                x = fn.external_source(source=feeder(b), batch=True)
                return x.gpu() if device == "gpu" else x
            inputs = [node(sal), node(draws)]
            if index is not None:
                inputs.append(fn.external_source(source=feeder(index), batch=True))  # a CPU input
            return mixing._plugin().box_search(*inputs, device=device, **kwargs)

        p = pipe()
        p.build()
        (o,) = p.run()
        outs[device] = np.stack([np.array(t) for t in (o.as_cpu() if hasattr(o, "as_cpu") else o)])
    return outs


#: the box_search kernel's method codes (tests/cuda_emulation/box_search_emu.cc)
BOX_SEARCH_METHODS = {"peak": 0, "max_window": 1, "keep_cut": 2, "keep_paste": 3, "topk_cells": 4}


class Sample(ctypes.Structure):
    _fields_ = [("map", ctypes.c_void_p), ("draws", ctypes.c_void_p), ("box", ctypes.c_void_p),
                ("scratch", ctypes.c_void_p), ("H", ctypes.c_int), ("W", ctypes.c_int), ("tries", ctypes.c_int),
                ("size", ctypes.c_int)]


def emulated_box_search(lib, maps, draws, index, kw, sizes=None):
    """box_search's GPU kernel on host arrays: maps (list of (H, W) float32), draws, index (-1: none). Returns
    ``(n, 4)`` boxes, or ``(n, K, 4)`` for ``topk_cells`` (K = grid * grid - top_k)."""
    n = len(draws)
    method = BOX_SEARCH_METHODS[kw["method"]]
    grid, top_k = int(kw.get("grid", 7)), int(kw.get("top_k", 6))
    boxes = grid * grid - top_k if kw["method"] == "topk_cells" else 1
    maps = [np.ascontiguousarray(m, np.float32) for m in maps]
    draws = [np.ascontiguousarray(d, np.int32) for d in draws]
    out = np.zeros((n, boxes, 4), np.int32)
    keep = []
    samples = (Sample * n)()
    for i in range(n):
        s = samples[i]
        s.draws = draws[i].ctypes.data
        s.box = out[i].ctypes.data
        s.tries = draws[i].shape[0] if draws[i].ndim == 2 else 1
        s.size = int(sizes[i]) if sizes is not None else -1  # -1: the batch's size
        if index[i] < 0:
            continue
        m = maps[index[i]]
        s.map, s.H, s.W = m.ctypes.data, m.shape[0], m.shape[1]
        scratch = np.full((m.shape[0] + 1) * (m.shape[1] + 1) + (m.size if method >= 2 else 0), np.nan)
        keep.append(scratch)
        s.scratch = scratch.ctypes.data
    lib.emu_box_search(samples, n, method, int(kw.get("size", 56)), int(kw.get("stride", 1)),
                       int(kw.get("jitter", 16)), float(kw.get("tau", "0.6")), int(bool(kw.get("quantize", True))),
                       grid, top_k, int(kw.get("image_size", 0)))
    return out if kw["method"] == "topk_cells" else out[:, 0]


def run_op(batches, op, batch_size, layouts=(), num_threads=1):
    """Feed per-sample lists through external_source (``layouts[i]`` for input i, if given), apply
    ``op(*nodes)``, return the outputs as lists."""

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=None, seed=0)
    def pipe():
        nodes = [fn.external_source(source=feeder(b), batch=True,
                                    layout=layouts[i] if i < len(layouts) else None)
                 for i, b in enumerate(batches)]
        out = op(*nodes)
        return tuple(out) if isinstance(out, (tuple, list)) else out

    p = pipe()
    p.build()
    outs = p.run()
    return [[np.array(t) for t in o] for o in outs]


def random_boxes(rng, n, k, H, W, pad=True, overflow=True):
    """``(n, k, 4)`` int32 boxes: random rectangles, some overlapping, empty or (``overflow``) past the image's
    edges; with ``pad`` 30% of them -1 (no box)."""
    y0 = rng.integers(-3 if overflow else 0, H, size=(n, k))
    x0 = rng.integers(-3 if overflow else 0, W, size=(n, k))
    y1 = y0 + rng.integers(0, H // 2 + 2, size=(n, k))
    x1 = x0 + rng.integers(0, W // 2 + 2, size=(n, k))
    if not overflow:
        y1, x1 = np.minimum(y1, H), np.minimum(x1, W)
    b = np.stack([y0, x0, y1, x1], -1).astype(np.int32)
    if pad:
        b[rng.random((n, k)) < 0.3] = -1
    return b
