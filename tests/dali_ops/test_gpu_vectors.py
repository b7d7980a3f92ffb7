"""The committed GPU test vectors (``make gpu-vectors``) are those the CPU operators give now, and the
CUDA kernels they check stay DALI-free (``make gpu-check`` builds them on a machine without DALI)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "gpu_check"))


def test_committed_vectors_equal_a_fresh_run_of_the_cpu_operators(tmp_path):
    import make_vectors

    make_vectors.main(["--out", str(tmp_path)])
    for name in ("box_search", "saliency", "normalize_occlude", "paste_boxes"):
        with np.load(ROOT / "tests" / "gpu_vectors" / f"{name}.npz") as old, np.load(tmp_path / f"{name}.npz") as new:
            assert sorted(old.files) == sorted(new.files), f"{name}: rerun `make gpu-vectors`"
            for k in old.files:
                assert np.array_equal(old[k], new[k], equal_nan=old[k].dtype.kind == "f"), \
                    f"{name} {k} changed: rerun `make gpu-vectors`"


def test_box_search_vectors_cover_every_method_ties_and_no_map_rows():
    with np.load(ROOT / "tests" / "gpu_vectors" / "box_search.npz") as z:
        cases = {k[: -len(".kwargs")] for k in z.files if k.endswith(".kwargs")}
        assert {c.split("/")[0] for c in cases} == {"peak_q", "peak_f", "max_window", "keep_cut", "keep_paste",
                                                    "topk_cells"}
        assert any((z[f"{c}.index"] < 0).any() for c in cases)
        assert all((z[f"{c}.out"][z[f"{c}.index"] < 0] == -1).all() for c in cases)


CSRC = ROOT / "dali_ops" / "csrc"
#: the DALI shells: <operator>/<operator>.{h,cc,cu}, and the input checks they share
SHELLS = {p for p in CSRC.glob("*/*") if p.stem == p.parent.name} | {CSRC / "common" / "input_checks.h"}


@pytest.mark.parametrize("path", sorted(p for p in CSRC.rglob("*") if p.is_file() and p not in SHELLS),
                         ids=lambda p: str(p.relative_to(CSRC)))
def test_kernels_and_shared_headers_do_not_include_dali(path):
    """Every file of dali_ops/csrc but the shells builds without DALI (tests/cpu_kernels, tests/gpu_check)."""
    includes = re.findall(r'#include\s+[<"]([^>"]+)[>"]', path.read_text())
    assert not [i for i in includes if i.startswith("dali/") or CSRC / i in SHELLS]


def test_each_operator_folder_holds_its_kernels_beside_its_shell():
    """DALI's split (dali/kernels + dali/operators), one folder per operator: a CPU kernel, a CUDA kernel and
    the three shell files."""
    for folder in sorted(p for p in CSRC.iterdir() if p.is_dir() and p.name != "common"):
        op = folder.name
        names = {p.name for p in folder.iterdir()}
        assert {f"{op}.h", f"{op}.cc", f"{op}.cu", f"{op}_cpu.h", f"{op}_gpu.cuh"} <= names, (op, sorted(names))


def test_every_cuda_kernel_of_the_plugin_lives_in_a_dali_free_header():
    """The DALI operators' .cu files are shells: no __global__ function of their own."""
    cus = sorted(CSRC.glob("*/*.cu"))
    assert cus
    for cu in cus:
        assert "__global__" not in cu.read_text(), f"{cu.name} defines a kernel; move it to {cu.stem}_gpu.cuh"
