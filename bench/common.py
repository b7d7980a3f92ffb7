"""Shared measurement helpers for the benchmarks: conditions written with every result."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np


def conditions(**extra) -> dict:
    """Versions, machine, commit, date and load, to be stored beside every figure."""
    import numba
    import nvidia.dali as dali
    import torch
    import torchvision

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "dali": dali.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cpu": cpu, "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "commit": commit, "loadavg_start": os.getloadavg(), **extra}


def summary(samples) -> dict:
    """Median and inter-quartile range of repeated measurements."""
    a = np.asarray(samples, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "iqr": float(q3 - q1), "runs": a.tolist()}


def write_json(path, payload) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def pillow_draft_decode(path) -> None:
    """Pillow's cheapest full decode of a JPEG (DCT scaling to 1/8 with ``draft``): every entropy-coded byte is
    read, as in the reader's full check, without the full-size inverse DCT. The benchmarks' Pillow baseline."""
    from PIL import Image

    img = Image.open(path)
    img.draft(img.mode, (img.size[0] // 8, img.size[1] // 8))
    img.load()
