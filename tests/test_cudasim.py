"""Every Numba CUDA kernel in ``kernels`` agrees with its CPU twin, under Numba's CUDA simulator.

The simulator must be switched on before ``numba.cuda`` is first imported, so the checks run in a
subprocess with ``NUMBA_ENABLE_CUDASIM=1``; the rest of the test session is unaffected. Inside,
``kernels._twin.force_target`` sends NumPy arrays through the CUDA kernels (one simulated thread per
element) and the results are compared exactly with the CPU twins on the same small inputs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(r'''
    import json, warnings
    import numpy as np
    import numba
    from numba import cuda
    from numba.core.errors import NumbaPerformanceWarning
    warnings.simplefilter("ignore", NumbaPerformanceWarning)
    from kernels import _twin, apply

    _twin.threads_per_block = 32
    results = {"simulator": bool(numba.config.ENABLE_CUDASIM)}

    def run(target, fn):
        _twin.force_target = target
        try:
            out = fn()
        finally:
            _twin.force_target = None
        return out if isinstance(out, tuple) else (out,)

    def check(name, fn):
        try:
            cpu, gpu = run("cpu", fn), run("cuda", fn)
            same = all(np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b)
                       for a, b in zip(cpu, gpu))
            results[name] = "ok" if same else f"mismatch: cpu={cpu!r} cuda={gpu!r}"
        except Exception as e:  # reported per kernel by the test
            results[name] = f"error: {e!r}"

    rng = np.random.default_rng(0)
    imgs_f = rng.standard_normal((3, 2, 9, 11)).astype(np.float32)
    imgs_u = rng.integers(0, 256, (3, 9, 11, 2), dtype=np.uint8)
    boxes = np.array([[[1, 2, 5, 7], [4, 6, 9, 11]],
                      [[-2, -3, 3, 4], [-1, -1, -1, -1]],
                      [[0, 0, 9, 11], [2, 2, 2, 5]]], dtype=np.int32)
    partner = np.array([2, -1, 0])
    cells = rng.random((3, 4, 3)) < 0.5       # 9 x 11 image: edge cells take the remainder

    check("erase_nchw_float", lambda: apply.erase(imgs_f, boxes, [0.5, -1.0]))
    check("erase_nhwc_uint8", lambda: apply.erase(imgs_u, boxes, [7, 200]))
    check("erase_inplace", lambda: apply.erase(imgs_f.copy(), boxes, 0.0, inplace=True))
    check("paste_cells_nchw_float", lambda: apply.paste_cells(imgs_f, partner, cells))
    check("paste_cells_nhwc_uint8", lambda: apply.paste_cells(imgs_u, partner, cells))
    kernel = apply._compiled("paste_cells", "cuda", "NCHW")
    results["kernel_type"] = type(kernel).__module__ + "." + type(kernel).__name__
    print("RESULTS " + json.dumps(results))
''')

KERNEL_CHECKS = ["erase_nchw_float", "erase_nhwc_uint8", "erase_inplace", "paste_cells_nchw_float",
                 "paste_cells_nhwc_uint8"]


@pytest.fixture(scope="module")
def sim_results():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"CUDA-sim subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert line, f"no results from the CUDA-sim subprocess:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(line[-1][len("RESULTS "):])


def test_simulator_was_used(sim_results):
    assert sim_results["simulator"] is True
    assert "simulator" in sim_results["kernel_type"], sim_results["kernel_type"]


@pytest.mark.parametrize("name", KERNEL_CHECKS)
def test_cuda_kernel_matches_cpu_twin(sim_results, name):
    assert sim_results[name] == "ok", sim_results[name]
