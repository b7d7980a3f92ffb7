"""The package layout (docs/design.md, issue 19): one room per stage of a batch, imports running one way --
tools -> loader -> methods -> saliency -> kernels / dali_ops (data beside them, below the loader) -- and reader
workers that never import torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the rooms of ``pipelines`` each room may import (kernels and dali_ops are below every room)
ALLOWED = {
    "tools": {"tools", "loader", "methods", "saliency", "data"},
    "loader": {"loader", "methods", "saliency", "data"},
    "methods": {"methods", "saliency"},
    "saliency": {"saliency"},
    "data": {"data"},
}


def imported_modules(path: Path):
    """Every absolute module a file imports, at module level or inside a function, with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def test_rooms_import_one_way():
    wrong = []
    for room, allowed in ALLOWED.items():
        for path in sorted((ROOT / "pipelines" / room).glob("*.py")):
            for line, module in imported_modules(path):
                parts = module.split(".")
                if parts[0] == "pipelines" and (len(parts) < 2 or parts[1] not in allowed):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    for layer in ("kernels", "dali_ops"):  # the bottom imports nothing of pipelines
        for path in sorted((ROOT / layer).glob("*.py")):
            wrong += [f"{path.relative_to(ROOT)}:{line} imports {module}" for line, module in imported_modules(path)
                      if module.split(".")[0] == "pipelines"]
    assert not wrong, "\n".join(wrong)


def test_every_module_lives_in_a_room():
    loose = [p.name for p in (ROOT / "pipelines").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the rooms of pipelines/: {loose}"
    assert {p.name for p in (ROOT / "pipelines").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ALLOWED)


@pytest.mark.parametrize("method", ["saliency_occlusion:saliency=bank", "keep_paste:saliency=model", "cutmix",
                                    "attentive_cutmix"])
def test_what_a_reader_worker_imports_holds_no_torch(method, tmp_path):
    """A reader worker unpickles the source (the reader, the plan, the method and its saliency source): none of
    it may import torch or torchvision (650-800 MB and 2-3 s per worker). The source is pickled here in a
    process that did import everything, and unpickled in a fresh one."""
    import pickle

    import torch
    import torchvision

    from pipelines.loader.plan import AugmentConfig
    from pipelines.loader.source import ImageSource
    from pipelines.methods import get_method
    from pipelines.saliency.bank import BankReader, BankSaliency

    if method == "attentive_cutmix":
        ckpt = tmp_path / "r18.pth"
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), ckpt)
        m = get_method(method, checkpoint=str(ckpt), arch="resnet18")
    else:
        m = get_method(method)
    if isinstance(m.source, BankSaliency):  # bound as a loader binds it, with the workers' reader
        bound = BankSaliency(tmp_path / "bank.bin")
        object.__setattr__(bound, "reader", BankReader(bound.path, 4, bound.grid, bound.fallback))
        m = m.with_source(bound)
    source = ImageSource([str(tmp_path / f"{i}.jpg") for i in range(4)], [0, 1, 0, 1], 2,
                         AugmentConfig(method=m, copies=2))
    (tmp_path / "source.pkl").write_bytes(pickle.dumps(source))
    code = ("import pickle, sys\n"
            f"pickle.loads(open({str(tmp_path / 'source.pkl')!r}, 'rb').read())\n"
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
