"""The argument validators every layer uses (kernels, the DALI operators' wrappers, the methods, the loader):
one rule per kind of value, one message per rule. Each raises ``ValueError`` (``TypeError`` for a flag that is
not a bool) naming the argument, its value and what is expected, and returns the value in its canonical type.

They live at the bottom of the import order (``pipelines`` -> ``kernels`` / ``dali_ops``), so nothing above
writes its own ``isinstance`` checks.
"""
from __future__ import annotations

import math

import numpy as np


def is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, lo: int = 1, hi: int | None = None) -> int:
    """``value`` as an int: an integer (not a bool) >= ``lo`` (and <= ``hi`` when given)."""
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        span = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {span}, got {value!r}")
    return int(value)


def check_probability(name: str, value) -> float:
    """``value`` as a float in [0, 1]."""
    if not is_real(value) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_positive(name: str, value) -> float:
    """``value`` as a finite float > 0."""
    if not is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_fraction(name: str, value) -> float:
    """``value`` as a float in (0, 1] (a scale factor)."""
    if not is_real(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def check_choice(name: str, value, allowed):
    """``value`` unchanged when it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_bool(name: str, value, optional: bool = False):
    """``value`` as a bool (``None`` too when ``optional``): a truthy string such as ``"False"`` is refused."""
    if optional and value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        allowed = "None, True or False" if optional else "True or False"
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    return bool(value)
