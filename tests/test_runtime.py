"""Runtime helpers: seeds."""

from __future__ import annotations

from audio_dann.runtime import derive_seed


def test_derive_seed_is_a_pure_function_of_seed_and_purpose():
    assert derive_seed(3, "batches/source", 1) == derive_seed(3, "batches/source", 1)
    seeds = {derive_seed(s, p, e) for s in (0, 1) for p in ("batches/source", "batches/target") for e in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
