"""Compiled inner loops of the aggregation strategies (numba, cached on disk per machine).

Kept apart from ``aggregation`` so that numba loads only when a strategy first
needs it, and so that its on-disk cache can key the functions by this module.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)
def axpy(acc: np.ndarray, x: np.ndarray, scale: float) -> None:  # pragma: no cover - compiled
    """acc += scale * float64(x), elementwise, in one pass.

    numpy needs two passes (a cast-and-multiply into a temporary, then an add)
    and a call per block; fused, FedAvg reads the updates at about the speed of
    a memory copy. fastmath stays off: every element is rounded exactly as the
    numpy expression would be, so the result does not depend on this kernel.
    """
    for j in range(acc.shape[0]):
        acc[j] += scale * np.float64(x[j])
