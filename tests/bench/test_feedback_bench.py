"""``bench.feedback_bench``: the same-step paths under 2 gloo ranks, with and without bf16 autocast, on a tiny run
(every configuration steps, the JSON holds each ratio the docs quote and its conditions)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_two_ranks_with_and_without_amp(tmp_path):
    out = tmp_path / "feedback.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bench.feedback_bench", "--ranks", "2", "--batch", "2", "--size", "32",
                           "--repeats", "1", "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["conditions"]["ranks"] == 2 and len(res["conditions"]["loadavg_end"]) == 3
    assert set(res["results"]) == {"fp32", "amp_bf16"}
    for mode in res["results"].values():
        assert set(mode["step_cpu_seconds_all_ranks"]) == {"joint_image", "joint_free", "joint_label", "plain",
                                                           "input_grad_half", "input_grad", "early_head"}
        for key in ("joint_free / joint_image", "input_grad_half / plain"):
            assert math.isfinite(mode["ratios_of_median_cpu_time"][key]) and mode["ratios_of_median_cpu_time"][key] > 0
