"""``make gpu-check``'s checking code (tests/gpu_check/run.py) on the CPU: the GPU machine's run is scarce, so
the way run.py reads the vectors and calls the extension is exercised here with a stand-in extension whose
functions have the real one's signatures (tests/gpu_check/ext.cu) and compute on the host: box_search with
the host emulation of the CUDA kernel, normalize_occlude / paste with NumPy restatements of the kernels'
arithmetic, fine_grained_saliency with the CPU operator. Every check must come out "ok", and a wrong output
must come out as a mismatch."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "gpu_check"))

import run  # noqa: E402  (tests/gpu_check/run.py)
import oracles as ref  # noqa: E402
from helpers import emulated_box_search as emulated, run_op  # noqa: E402


class T:
    """A host stand-in for a CUDA tensor."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def cuda(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


fake_torch = types.SimpleNamespace(from_numpy=T, int32=np.int32,
                                   empty=lambda n, dtype=None, device=None: T(np.empty(n, dtype)))


class FakeExt:
    def __init__(self, lib, corrupt=None):
        self.lib, self.corrupt = lib, corrupt

    def _out(self, name, a):
        if self.corrupt == name:
            a = a.copy()
            a.reshape(-1)[:1] += 1
        return T(a)

    def box_search(self, maps, draws, index, method, size, stride, jitter, tau, quantize, grid, top_k, image_size):
        kw = dict(method={v: k for k, v in run.METHODS.items()}[method], size=size, stride=stride, jitter=jitter,
                  tau=repr(tau), quantize=quantize, grid=grid, top_k=top_k, image_size=image_size)
        return self._out("box_search", emulated(self.lib, [m.a for m in maps], [d.a for d in draws], index, kw))

    def fine_grained_saliency(self, imgs, mirror, max_side):
        # the CPU operator stands in (the kernels' reduced-resolution path has no NumPy twin)
        import dali_ops
        from nvidia.dali import fn

        dali_ops.load()
        (out,) = run_op([[i.a for i in imgs], [np.int32(v) for v in mirror]],
                        lambda im, m: fn.occlusion.fine_grained_saliency(im, mirror=m, max_side=max_side),
                        len(imgs), layouts=("HWC",))
        return [self._out("saliency", o) for o in out]

    def normalize_occlude(self, image, boxes, partner, mirror, mean, inv_std, fill, half):
        x = image.a
        n, H, W, C = x.shape
        xs = np.stack([x[i, :, ::-1] if mirror[i] else x[i] for i in range(n)])
        norm = ((xs.astype(np.float32) - mean.a) * inv_std.a).transpose(0, 3, 1, 2)  # float32 steps
        b = boxes.a if boxes.a.size else np.full((n, 1, 4), -1, np.int32)
        if partner.a.size:
            out = ref.paste_nchw(norm, partner.a, np.where(partner.a[:, None, None] < 0, -1, b))
        else:
            out = ref.erase_nchw(norm, b, fill.a)
        return self._out("normalize", out.astype(np.float16 if half else np.float32))

    def paste_boxes(self, img, boxes, partner, chw):
        x = img.a if chw else img.a.transpose(0, 3, 1, 2)
        out = ref.paste_nchw(x, partner.a, np.where(partner.a[:, None, None] < 0, -1, boxes.a))
        return self._out("paste", np.ascontiguousarray(out if chw else out.transpose(0, 2, 3, 1)))


def _checks(ext):
    """Every vector check of run.py."""
    out = {}
    for name, f in (("box_search", run.check_box_search), ("saliency", run.check_saliency),
                    ("normalize_occlude", run.check_normalize), ("paste_boxes", run.check_paste)):
        with np.load(ROOT / "tests" / "gpu_vectors" / f"{name}.npz") as z:
            f(ext, z, fake_torch, out)
    return out


def test_gpu_check_reads_the_vectors_and_passes_a_correct_extension(box_search_emu):
    out = _checks(FakeExt(box_search_emu))
    assert len(out) == 24 + 3 + 6 + 3  # saliency: uint8 at max_side 0 and 64, float32
    assert all(v == "ok" for v in out.values()), {k: v for k, v in out.items() if v != "ok"}


@pytest.mark.parametrize("broken", ["box_search", "saliency", "normalize", "paste"])
def test_gpu_check_reports_a_wrong_output(box_search_emu, broken):
    out = _checks(FakeExt(box_search_emu, corrupt=broken))
    assert any(v != "ok" for v in out.values())


def test_gpu_check_floors_match_the_documented_table():
    fl = run.floors(256, 224)
    assert fl["normalize_occlude float32"]["bytes"] == 256 * 224 * 224 * 3 * 5
    assert fl["normalize_occlude float32"]["floor_ms"] == pytest.approx(0.0401, abs=1e-4)
    assert fl["paste_boxes CHW float32"]["floor_ms"] == pytest.approx(0.0642, abs=1e-4)
    assert fl["box_search peak"]["floor_ms"] == pytest.approx(0.0107, abs=1e-4)
