"""``bench.scale_bench``'s storage-latency shim (``bench/slow_open.c``): it delays every open of a path under the
prefix, in the preloaded process and in the processes it spawns (the reader workers), and nothing else."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, multiprocessing as mp, os, sys, time

def timed(path):
    start = time.perf_counter()
    with open(path, "rb") as fh:
        fh.read()
    os.close(os.open(path, os.O_RDONLY))
    return time.perf_counter() - start

def child(q, path):
    q.put(timed(path))

if __name__ == "__main__":
    slow, fast = sys.argv[1], sys.argv[2]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q, slow))
    p.start()
    spawned = q.get()
    p.join()
    print(json.dumps({"slow": timed(slow), "fast": timed(fast), "spawned": spawned}))
"""


def test_open_latency_shim_delays_only_the_prefix_and_reaches_spawned_workers(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    from bench.scale_bench import shim

    so = shim(tmp_path)
    (tmp_path / "data").mkdir()
    slow, fast = tmp_path / "data" / "a.jpg", tmp_path / "b.jpg"
    slow.write_bytes(b"x")
    fast.write_bytes(b"y")
    (tmp_path / "probe.py").write_text(PROBE)
    env = dict(os.environ, LD_PRELOAD=str(so), SLOW_OPEN_PREFIX=str(tmp_path / "data"), SLOW_OPEN_MS="100")
    proc = subprocess.run([sys.executable, str(tmp_path / "probe.py"), str(slow), str(fast)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["slow"] >= 0.2 and got["spawned"] >= 0.2  # two opens of 100 ms each
    assert got["fast"] < 0.1
