"""The committed GPU test vectors (``make gpu-vectors``) are those the CPU operators give now, and the
CUDA kernels they check stay DALI-free (``make gpu-check`` builds them on a machine without DALI)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gpu_check"))


def test_committed_vectors_equal_a_fresh_run_of_the_cpu_operators(tmp_path):
    import make_vectors

    make_vectors.main(["--out", str(tmp_path)])
    for name in ("box_search", "saliency", "normalize_occlude", "apply_boxes"):
        with np.load(ROOT / "tests" / "gpu_vectors" / f"{name}.npz") as old, np.load(tmp_path / f"{name}.npz") as new:
            assert sorted(old.files) == sorted(new.files), f"{name}: rerun `make gpu-vectors`"
            for k in old.files:
                assert np.array_equal(old[k], new[k]), f"{name} {k} changed: rerun `make gpu-vectors`"


def test_box_search_vectors_cover_every_method_ties_and_no_map_rows():
    with np.load(ROOT / "tests" / "gpu_vectors" / "box_search.npz") as z:
        cases = {k[: -len(".kwargs")] for k in z.files if k.endswith(".kwargs")}
        assert {c.split("/")[0] for c in cases} == {"peak_q", "peak_f", "max_window", "keep_cut", "keep_paste"}
        assert any((z[f"{c}.index"] < 0).any() for c in cases)
        assert all((z[f"{c}.out"][z[f"{c}.index"] < 0] == -1).all() for c in cases)


@pytest.mark.parametrize("path", sorted((ROOT / "dali_ops" / "csrc" / "kernels").glob("*.*")), ids=lambda p: p.name)
def test_kernel_headers_do_not_include_dali(path):
    includes = re.findall(r'#include\s+[<"]([^>"]+)[>"]', path.read_text())
    assert includes and not [i for i in includes if i.startswith("dali/") or "operator" in i]


def test_every_cuda_kernel_of_the_plugin_lives_in_a_dali_free_header():
    """The DALI operators' .cu files are shells: no __global__ function of their own."""
    for cu in (ROOT / "dali_ops" / "csrc").glob("*.cu"):
        assert "__global__" not in cu.read_text(), f"{cu.name} defines a kernel; move it to csrc/kernels/"
