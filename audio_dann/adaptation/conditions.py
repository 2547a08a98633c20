"""Latent recording conditions: discovered from the unlabelled target audio when the target names none.

A flat target folder gives one target domain, so the domain head can only tell "source" from
"target". Named target conditions (a K-way head) gained 10-12 points on FSDD, so for a flat target
the files are clustered by their long-term spectra (each file's mean log-mel and its 10th
percentile over time: the channel's colouring and its noise floor, cf. Mancini et al., CVPR 2018)
and each cluster becomes a domain. The number of clusters is given, or chosen by the silhouette
score among 2..``max_k`` (no label is read; on FSDD it picked 2 and 6 where 3 speakers were mixed,
and both did worse than no latent domains). scikit-learn's k-means and silhouette, seeded, so a
resumed run finds the same clusters (a run begun before this version, with the hand-written k-means,
may number them differently).
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from ..runtime import derive_seed

__all__ = ["file_descriptors", "clip_descriptors", "kmeans", "silhouette", "discover_domains"]


def _describe(clips: np.ndarray) -> np.ndarray:
    """One file's ``[mean log-mel, 10th percentile]`` over all frames of its clips ``(c, mels, frames)``."""
    frames = np.asarray(clips, dtype=np.float32).transpose(1, 0, 2).reshape(clips.shape[1], -1)
    return np.concatenate([frames.mean(1), np.percentile(frames, 10, axis=1)])


def _standardise(desc: np.ndarray) -> np.ndarray:
    return (desc - desc.mean(0)) / (desc.std(0) + 1e-6)


def file_descriptors(features, rows: np.ndarray, files: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct file of ``files`` (one entry per clip row): ``[mean log-mel, 10th percentile]``,
    standardised; returns ``(descriptors (F, 2 * n_mels), file index of each row)``."""
    uniq = {f: k for k, f in enumerate(dict.fromkeys(files))}
    which = np.array([uniq[f] for f in files])
    desc = np.stack([_describe(features[rows[which == k]]) for k in range(len(uniq))])
    return _standardise(desc), which


def clip_descriptors(x: np.ndarray, file_index: np.ndarray) -> np.ndarray:
    """The descriptors of ``file_descriptors`` from clips in memory: ``x`` ``(N, mels, frames)`` and the
    file (0..F-1) of each clip; ``(F, 2 * n_mels)``."""
    return _standardise(np.stack([_describe(x[file_index == k]) for k in range(int(file_index.max()) + 1)]))


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 100, restarts: int = 5) -> np.ndarray:
    """Cluster labels of the rows of ``x``: scikit-learn's k-means (k-means++ seeding, best of ``restarts``
    by inertia), seeded from ``seed`` and ``k``."""
    state = derive_seed(seed, "latent/kmeans", k) % 2**32
    return KMeans(n_clusters=k, n_init=restarts, max_iter=iters, random_state=state).fit_predict(x)


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Euclidean); -1 when there is a single cluster or one per row."""
    if not 2 <= len(np.unique(labels)) <= len(x) - 1:
        return -1.0
    return float(silhouette_score(x, labels))


def discover_domains(
    descriptors: np.ndarray, seed: int, k: int = 0, max_k: int = 6, max_files: int = 1500
) -> tuple[np.ndarray, dict]:
    """Cluster file descriptors; ``k`` > 0 fixes the number of domains, 0 chooses it by silhouette.

    Returns a cluster index per file and a record of the choice (``k``, silhouette per candidate).
    """
    n = len(descriptors)
    if n < 4:
        return np.zeros(n, dtype=int), {"k": 1, "reason": "too few target files to cluster"}
    sample = np.arange(n)
    if n > max_files:  # silhouettes need all pairwise distances: score on a seeded sample
        sample = np.sort(np.random.default_rng(derive_seed(seed, "latent/sample")).permutation(n)[:max_files])
    candidates = [k] if k > 0 else list(range(2, min(max_k, n - 1) + 1))
    scores = {}
    for c in candidates:
        labels = kmeans(descriptors[sample], c, seed)
        scores[c] = silhouette(descriptors[sample], labels) if k <= 0 else float("nan")
    chosen = k if k > 0 else max(scores, key=scores.get)
    labels = kmeans(descriptors, chosen, seed)
    return labels, {"k": int(chosen), "silhouette": {str(c): s for c, s in scores.items()}}
