"""int8 activation ranges: the range that minimises the expected quantization error.

A leaf (NumPy only): used by the post-training int8 export (``edsr_tf.export.tflite``)
and to initialise the ranges of quantization-aware training (``edsr_tf.models.qat``).
"""

from __future__ import annotations

import numpy as np


def mse_range(values: np.ndarray, lo: float, hi: float, levels: int = 256, steps: int = 40) -> tuple[float, float]:
    """The [a·lo, b·hi] (a, b in (0, 1]) with least expected int8 error on ``values``.

    Error model: uniform rounding noise step²/12 inside the range, squared distance
    to the nearest end outside it; evaluated exactly on the sorted values with cumulative
    sums, so a fine grid over both ends costs little. An end only moves towards 0
    (a ReLU output keeps its 0), and a range only shrinks.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    if n == 0 or hi <= lo:
        return lo, hi
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    f = np.linspace(1.0 / steps, 1.0, steps)
    los = lo * f if lo < 0 else np.array([lo])
    his = hi * f if hi > 0 else np.array([hi])
    L, H = np.meshgrid(los, his, indexing="ij")
    ia = np.searchsorted(x, L, side="left")  # x[:ia] < L
    ib = np.searchsorted(x, H, side="right")  # x[ib:] > H
    below = c2[ia] - 2 * L * c1[ia] + L * L * ia
    above = (c2[n] - c2[ib]) - 2 * H * (c1[n] - c1[ib]) + H * H * (n - ib)
    step = (H - L) / (levels - 1)
    err = below + above + (ib - ia) * step * step / 12.0
    j, k = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(L[j, k]), float(H[j, k])
