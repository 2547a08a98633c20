"""Which clips each step trains on: a pure function of (seed, step, rank).

The global stream of a domain is a sequence of epoch permutations (epoch ``e``
shuffled with ``derive_seed(seed, "batches/<stream>", e)``); step ``s`` takes positions
``[s * B, (s + 1) * B)`` of it, and rank ``r`` of ``W`` takes its contiguous
``B / W`` slice. Because nothing is kept between steps, a resumed run sees the
same batches as an uninterrupted one, and ``W`` ranks together see exactly the
batches one process would.
"""

from __future__ import annotations

import numpy as np

from ..runtime import derive_seed

__all__ = ["epoch_permutation", "batch_indices"]


def epoch_permutation(n: int, seed: int, epoch: int, stream: str = "source") -> np.ndarray:
    """The order of ``n`` clips in ``epoch`` of the named stream (``source``, ``target``, ...)."""
    return np.random.default_rng(derive_seed(seed, f"batches/{stream}", epoch)).permutation(n)


def batch_indices(
    n: int, global_batch: int, step: int, seed: int, rank: int = 0, world: int = 1, stream: str = "source"
) -> np.ndarray:
    """Indices (into a domain of ``n`` clips) of this rank's share of the batch at ``step`` of ``stream``."""
    if n <= 0:
        raise ValueError("cannot draw a batch from an empty set of clips")
    if global_batch % world:
        raise ValueError(f"train.batch_size={global_batch} must be divisible by the number of processes ({world})")
    local = global_batch // world
    start = step * global_batch + rank * local
    out = np.empty(local, dtype=np.int64)
    filled = 0
    while filled < local:
        epoch, offset = divmod(start + filled, n)
        perm = epoch_permutation(n, seed, epoch, stream)
        take_n = min(local - filled, n - offset)
        out[filled : filled + take_n] = perm[offset : offset + take_n]
        filled += take_n
    return out
