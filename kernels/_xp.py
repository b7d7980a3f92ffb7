"""NumPy / CuPy dispatch of the host array code of ``kernels`` (CuPy is imported only when a CuPy array comes in)."""
from __future__ import annotations

import numpy as np


def array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (CuPy is imported only then)."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np
