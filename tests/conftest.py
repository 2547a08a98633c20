from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"


def make_moons(n_per_class: int, noise: float, seed: int, angle_deg: float = 0.0):
    """Two interleaved half circles (as scikit-learn's make_moons), optionally rotated."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, math.pi, n_per_class)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    t = rng.uniform(0, math.pi, n_per_class)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.concatenate([upper, lower]) + rng.normal(0, noise, (2 * n_per_class, 2))
    y = np.repeat([0, 1], n_per_class)
    if angle_deg:
        a = math.radians(angle_deg)
        center = np.array([0.5, 0.25])
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        x = (x - center) @ rot.T + center
    return x.astype(np.float32), y


@pytest.fixture
def fsdd_dir() -> Path:
    if not FSDD.is_dir():
        pytest.skip("../shared/data/fsdd is not present")
    return FSDD
