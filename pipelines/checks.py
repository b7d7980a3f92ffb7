"""Early, named argument and environment checks for :class:`pipelines.loader.OcclusionLoader`.

Everything here runs in ``OcclusionLoader.__init__`` before any file is read or any process is
started, so a wrong argument fails at once with its name, its value and what is expected, instead
of at the first batch inside NumPy or DALI (issue 14, cases 8 and 9).
"""
from __future__ import annotations

import ast
import os
import sys

import numpy as np

#: Seeds are NumPy ``SeedSequence`` entropy (any non-negative integer works there); we cap them at
#: 64 bits so that a seed is one machine word in ``state_dict()`` and in logs. DALI never sees the
#: user's seed directly: it gets a 63-bit seed derived from it (:mod:`pipelines.seeding`).
SEED_LIMIT = 2 ** 64

DTYPES = ("float32", "float16")


def is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, lo: int = 1) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` unless it is an integer (not a bool) >= ``lo``."""
    if not is_int(value) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def check_loader_args(*, batch_size, train, seed, dtype, shuffle, num_classes) -> None:
    """Validate the loader's method-independent arguments; raise ``ValueError``/``TypeError`` naming one.

    ``train`` and ``shuffle`` must be real booleans: ``train="False"`` is a truthy string and would
    silently train with augmentation, so no other type is accepted.
    """
    check_int("batch_size", batch_size)
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"train must be True or False, got {train!r} ({type(train).__name__})")
    if shuffle is not None and not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be None, True or False, got {shuffle!r} ({type(shuffle).__name__})")
    if not is_int(seed) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**64) (NumPy SeedSequence entropy; DALI gets a "
                         f"seed derived from it), got {seed!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if num_classes is not None:
        check_int("num_classes", num_classes)


#: An inferred class count above ``LABEL_SLACK + LABEL_SPREAD * (distinct labels)`` is taken for a typo.
LABEL_SLACK = 1000
LABEL_SPREAD = 10


def infer_num_classes(labels, paths, num_classes, source) -> int:
    """``num_classes`` when given, else ``max(labels) + 1`` -- unless that is implausibly large.

    A typo label (``100000000`` in a list of labels 0..9) would otherwise allocate targets of 100M
    classes per row (800 MB for two rows) without a word. When the largest label exceeds
    ``1000 + 10 * (number of distinct labels)`` and ``num_classes`` was not given, raise naming the
    label and its first file; passing ``num_classes`` explicitly accepts any label below it.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError(f"{source} lists no samples")
    top = int(labels.max())
    if num_classes is not None:
        if top >= int(num_classes):
            raise ValueError(f"num_classes={num_classes} but the labels of {source} go up to {top} "
                             f"({paths[int(np.argmax(labels))]})")
        return int(num_classes)
    distinct = int(np.unique(labels).size)
    if top + 1 > LABEL_SLACK + LABEL_SPREAD * distinct:
        raise ValueError(f"label {top} of {paths[int(np.argmax(labels))]} (in {source}) is far above the others "
                         f"({distinct} distinct labels): a typo? Fix it, or pass num_classes= explicitly "
                         f"(targets then have that many columns)")
    return top + 1


def check_spawn_safe_main() -> None:
    """Refuse, before any worker starts, a main script the reader workers cannot re-import safely.

    The reader workers are started with ``spawn``: each re-imports the main module as
    ``__mp_main__``. If the loader is built or iterated by top-level code of that module outside
    ``if __name__ == "__main__":``, every worker would run it again and DALI only reports
    ``Workers initialization failed`` after a long traceback; a script piped on stdin cannot be
    re-imported at all. Interactive sessions and notebooks (no ``__file__``) are fine: spawn does
    not re-import them.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return
    if getattr(main, "__spec__", None) is None and not os.path.isfile(path):
        raise RuntimeError(
            f"the main script {path!r} cannot be re-imported by the loader's reader workers (they are "
            f"started with 'spawn', which re-imports the main script): a script piped on stdin or "
            f"otherwise without a file. Save it to a file, put the loader code under "
            f"`if __name__ == \"__main__\":`, and run `python file.py`.")
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            if not _in_main_guard(path, frame.f_lineno):
                raise RuntimeError(
                    f"the loader is used by top-level code of the main script {path} (line "
                    f"{frame.f_lineno}) outside `if __name__ == \"__main__\":`. Its reader workers are "
                    f"started with 'spawn' and re-import {os.path.basename(path)}, so each would run "
                    f"that code again. Move the code that builds and iterates the loader under "
                    f"`if __name__ == \"__main__\":`.")
        frame = frame.f_back


def _in_main_guard(path: str, lineno: int) -> bool:
    """True when line ``lineno`` of ``path`` lies inside a top-level ``if __name__ == "__main__":``
    block (unknown source: assume it does, rather than refuse a script we cannot read)."""
    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return True
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            end = max(getattr(n, "end_lineno", n.lineno) for n in node.body)
            if node.lineno <= lineno <= end:
                return True
    return False


def _is_main_test(test) -> bool:
    """Any ``__name__ == "__main__"`` comparison in the test (either order, possibly inside ``and``): a
    lenient reading, so that only scripts with no guard at all around the loader are refused."""
    for node in ast.walk(test):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            sides = [node.left, node.comparators[0]]
            if any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and \
                    any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides):
                return True
    return False
