"""dali_ops.load(): idempotent, and a clear message when the library is missing or mismatched."""
from __future__ import annotations

import pytest

import dali_ops


def test_load_is_idempotent_and_registers_occlusion_ops():
    first = dali_ops.load()
    assert dali_ops.load() == first and first.exists()
    from nvidia.dali import fn

    assert hasattr(fn.occlusion, "fine_grained_saliency")


def test_missing_library_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.setattr(dali_ops, "_loaded", None)
    monkeypatch.setattr(dali_ops, "library_path", lambda: tmp_path / "libdali_occlusion.so")
    with pytest.raises(RuntimeError, match="not built.*make build"):
        dali_ops.load()


def test_library_built_for_other_dali_is_refused(monkeypatch, tmp_path):
    lib = tmp_path / "libdali_occlusion.so"
    lib.write_bytes(b"")
    (tmp_path / "_build_info.txt").write_text("dali=1.0.0\ncuda=0\n")
    monkeypatch.setattr(dali_ops, "_loaded", None)
    monkeypatch.setattr(dali_ops, "library_path", lambda: lib)
    with pytest.raises(RuntimeError, match="built for DALI 1.0.0.*Rebuild"):
        dali_ops.load()


def test_every_cu_file_is_built_when_a_cuda_compiler_exists():
    """The normal build compiles every ``csrc/<operator>/*.cu`` whenever CMake can find nvcc (PATH or CUDACXX): each GPU
    operator a ``.cu`` file registers is registered with DALI (compiling needs no GPU)."""
    import os
    import re
    import shutil
    from pathlib import Path

    if not (shutil.which("nvcc") or os.environ.get("CUDACXX")):
        pytest.skip("no CUDA compiler (nvcc on PATH or CUDACXX): the build makes the CPU operators only")
    dali_ops.load()
    from nvidia.dali import backend

    assert dali_ops.build_info().get("cuda") == "1"
    csrc = Path(dali_ops.__file__).parent / "csrc"
    names = {n for f in csrc.glob("*/*.cu") for n in re.findall(r"DALI_REGISTER_OPERATOR\((\w+)", f.read_text())}
    assert names and names <= set(backend.RegisteredGPUOps())


def test_every_cpu_operator_has_a_gpu_registration():
    """Issue 9: each ``fn.occlusion.*`` operator with a CPU registration has a GPU one, box_search included."""
    import os
    import shutil

    if not (shutil.which("nvcc") or os.environ.get("CUDACXX")):
        pytest.skip("no CUDA compiler (nvcc on PATH or CUDACXX): the build makes the CPU operators only")
    dali_ops.load()
    from nvidia.dali import backend

    cpu = {n for n in backend.RegisteredCPUOps() if n.startswith("occlusion__")}
    assert "occlusion__BoxSearch" in cpu
    assert cpu <= set(backend.RegisteredGPUOps())


def test_no_numba_function_in_the_graph():
    """DALI 2.4's numba_function(device="gpu") refuses a CUDA 13 toolkit: nothing in dali_ops/ or
    pipelines/ may call it (the GPU searches are the plugin's CUDA box_search)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    calls = [f"{p.relative_to(root)}:{i + 1}"
             for folder in ("dali_ops", "pipelines") for p in (root / folder).rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines())
             if re.search(r"numba_function\s*\(|NumbaFunction\s*\(|plugin\.numba", line)]
    assert calls == []
