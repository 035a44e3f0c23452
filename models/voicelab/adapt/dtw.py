"""Dynamic time warping between two feature sequences, numpy only.

Why this form: the recurrence D[i, j] = c[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1]) has a
dependency along each row; writing the horizontal moves as a running minimum of
(D_diag_or_up - cumsum c) makes each row one vectorized step, so a 15 s recording against its
stock rendering (1,200 x 1,200 frames at 80 Hz) aligns in well under a second without numba.
"""

from __future__ import annotations

import numpy as np


def cost_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between every frame of a [N, D] and of b [M, D] -> [N, M]."""
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def accumulate(cost: np.ndarray) -> np.ndarray:
    """Accumulated cost with steps (1,1), (1,0), (0,1), from (0,0)."""
    n, m = cost.shape
    acc = np.empty_like(cost)
    acc[0] = np.cumsum(cost[0])
    for i in range(1, n):
        prev = acc[i - 1]
        best = prev.copy()  # from above
        best[1:] = np.minimum(prev[1:], prev[:-1])  # or diagonally
        row = cost[i]
        through = best + row  # arriving at (i, j) from row i-1
        cum = np.cumsum(row)
        # horizontal moves within the row: acc[i, j] = min_k<=j (through[k] + sum row[k+1..j])
        acc[i] = cum + np.minimum.accumulate(through - cum)
    return acc


def path(acc: np.ndarray) -> np.ndarray:
    """Backtrack from the end to (0, 0): [L, 2] index pairs (i, j), both non-decreasing."""
    i, j = acc.shape[0] - 1, acc.shape[1] - 1
    steps = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            options = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
            move = int(np.argmin(options))
            i, j = (i - 1, j - 1) if move == 0 else (i - 1, j) if move == 1 else (i, j - 1)
        steps.append((i, j))
    return np.array(steps[::-1])


def align(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """DTW path between a [N, D] and b [M, D], and its mean cost per step."""
    cost = cost_matrix(a, b)
    acc = accumulate(cost)
    steps = path(acc)
    return steps, float(cost[steps[:, 0], steps[:, 1]].mean())


def map_frames(steps: np.ndarray, length: int) -> np.ndarray:
    """For each frame j < length of the second sequence, the (rounded mean) frame of the first it matched."""
    sums = np.bincount(steps[:, 1], weights=steps[:, 0], minlength=length)
    counts = np.bincount(steps[:, 1], minlength=length)
    return np.rint(sums / np.maximum(counts, 1)).astype(int)
