"""Issue 14, cases 1 and 8: reader workers die with the training process whatever kills it, and a main
script the spawned workers cannot re-import is refused with a clear first line. Real processes, real
signals; children are found through /proc."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TRAIN_SCRIPT = """
import sys
if __name__ == "__main__":
    from pipelines import OcclusionLoader
    loader = OcclusionLoader(sys.argv[1], 2, device="cpu", runtime=dict(num_threads=1, py_workers=2), output_size=32)
    batch = next(iter(loader))
    print("ready", batch.images.shape[0], flush=True)
    import time
    time.sleep(600)
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.environ.get("PYTHONPATH", ""), str(REPO)] if p)
    return env


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a dead child not yet reaped by its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - out
        out |= frontier
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_reader_workers_and_tracker_exit_when_the_training_process_is_killed(tiny_dataset, tmp_path, sig):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_dataset / "train")], cwd=tmp_path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: set[int] = set()
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), (line, proc.stderr.read() if proc.poll() is not None else "")
        children = _descendants(proc.pid)
        cmdlines = {c: Path(f"/proc/{c}/cmdline").read_bytes() for c in children}
        assert sum(b"multiprocessing.spawn" in c for c in cmdlines.values()) == 2, cmdlines  # the 2 workers
        os.kill(proc.pid, sig)
        # Before the fix the workers idled forever and held the pipes: communicate() hung.
        proc.communicate(timeout=20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.1)
        survivors = {c: cmdlines[c][:120] for c in children if _alive(c)}
        assert not survivors, f"left behind after {sig.name}: {survivors}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in children:  # on a failure: the orphans this test made (re-parented, so found by pid)
            if _alive(c):
                os.kill(c, signal.SIGKILL)


NO_GUARD = """
import sys
from pipelines import OcclusionLoader
loader = OcclusionLoader(sys.argv[1], 2, device="cpu", runtime=dict(num_threads=1, py_workers=1), output_size=32)
for batch in loader:
    pass
print("done")
"""


def test_script_without_main_guard_is_refused_before_workers_start(tiny_dataset, tmp_path):
    script = tmp_path / "noguard.py"
    script.write_text(NO_GUARD)
    t = time.monotonic()
    res = subprocess.run([sys.executable, str(script), str(tiny_dataset / "train")], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError") and 'if __name__ == "__main__":' in last and "noguard.py" in last, res.stderr
    assert "line 5" in last  # the `for` loop that would start the workers
    assert "Workers initialization failed" not in res.stderr
    assert time.monotonic() - t < 60


def test_guarded_script_with_loader_built_at_top_level_still_runs(tiny_dataset, tmp_path):
    """Building the loader at top level is harmless (no worker starts); only iterating there is refused."""
    script = tmp_path / "toplevel.py"
    script.write_text(textwrap.dedent("""
        import sys
        from pipelines import OcclusionLoader
        loader = OcclusionLoader(sys.argv[1], 8, device="cpu", runtime=dict(num_threads=1, py_workers=1), output_size=32)
        if __name__ == "__main__":
            print(sum(1 for _ in loader))
    """))
    res = subprocess.run([sys.executable, str(script), str(tiny_dataset / "train")], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "3"


def test_script_piped_on_stdin_is_refused(tiny_dataset, tmp_path):
    code = NO_GUARD.replace("sys.argv[1]", repr(str(tiny_dataset / "train")))
    res = subprocess.run([sys.executable, "-"], input=code, cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError") and "stdin" in last and "save it to a file" in last.lower(), res.stderr


def test_main_guard_detection_reads_the_usual_spellings(tmp_path):
    from pipelines.loader.lifecycle import _in_main_guard

    script = tmp_path / "s.py"
    script.write_text("import x\n"
                      "if '__main__' == __name__:\n    a = 1\n"
                      "if __name__ == '__main__' and not x.quiet:\n    b = 2\n"
                      "c = 3\n")
    assert [_in_main_guard(str(script), n) for n in (1, 3, 5, 6)] == [False, True, True, False]


FORK_SCRIPT = """
import os, sys
if __name__ == "__main__":
    from pipelines import OcclusionLoader
    loader = OcclusionLoader(sys.argv[1], 3, device="cpu", seed=4, runtime=dict(num_threads=1, py_workers=1),
                             output_size=32)
    it = iter(loader)
    print("parent", next(it).meta["sample_id"].tolist(), flush=True)
    pid = os.fork()
    if pid == 0:
        for use in (lambda: next(it), lambda: next(iter(loader))):  # the live iterator, and a new one
            try:
                use()
                print("child served a batch", flush=True)
            except RuntimeError as e:
                print("child refused:", str(e).splitlines()[0], flush=True)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    for _ in range(3):
        print("parent", next(it).meta["sample_id"].tolist(), flush=True)
"""


def test_fork_with_a_live_pipeline_refuses_in_the_child_and_leaves_the_parent_whole(tiny_dataset, tmp_path):
    """Issue 23 class 8: a child forked while the pipeline runs gets a clear error (from an iterator made before the
    fork and from a new one) and exits cleanly; the parent serves the batches an unforked run serves."""
    script = tmp_path / "fork_run.py"
    script.write_text(FORK_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tiny_dataset / "train")], capture_output=True, text=True,
                          timeout=300, env=_env())
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr[-3000:]
    refused = [l for l in lines if l.startswith("child refused:")]
    assert len(refused) == 2 and all("which forked this process" in l for l in refused), lines
    assert "child exit 0" in lines and not any(l.startswith("child served") for l in lines)
    served = [l for l in lines if l.startswith("parent")]
    from pipelines import OcclusionLoader

    reference = OcclusionLoader(tiny_dataset / "train", 3, device="cpu", seed=4, output_size=32,
                                runtime=dict(num_threads=1, py_workers=1))
    expect = [f"parent {b.meta['sample_id'].tolist()}" for _, b in zip(range(4), reference)]
    reference.close()
    assert served == expect
