"""How well per-file descriptors recover the target speakers of a flat folder, and which K each
label-free criterion would choose (issue 16: latent domains without knowing K).

    python experiments/fsdd_speakers/latent_k.py data/fsdd_hard/A_prep_flat data/fsdd_hard/B_prep_flat

For each descriptor set (standardised per dimension) and K = 2..6: k-means as ``train.latent_domains``
runs it, the adjusted Rand index against the speakers (ariS) and against the digits (ariD: clusters
that follow the labels would make the domain head erase label information), the silhouette
(what ``train.latent_domains=-1`` maximises), and the BIC of a diagonal Gaussian mixture on 8
principal components (lower is better). FSDD file names give speakers and digits: report only.
"""

import argparse
from math import comb
from pathlib import Path

import numpy as np

from audio_dann.adaptation.conditions import kmeans, silhouette
from audio_dann.data.store import open_prepared


def ari(a, b) -> float:
    """Adjusted Rand index of two labellings."""
    a, b = np.unique(a, return_inverse=True)[1], np.unique(b, return_inverse=True)[1]
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    pairs = lambda counts: sum(comb(int(n), 2) for n in counts)  # noqa: E731
    both, rows, cols = pairs(table.ravel()), pairs(table.sum(1)), pairs(table.sum(0))
    expected, top = rows * cols / comb(len(a), 2), (rows + cols) / 2
    return (both - expected) / (top - expected)


def descs(prep):
    rows = prep.rows("train", source=False)
    files = [prep.index[i]["file"] for i in rows]
    uniq = list(dict.fromkeys(files))
    m = {f: k for k, f in enumerate(uniq)}
    which = np.array([m[f] for f in files])
    X = np.asarray(prep.features[rows], dtype=np.float32)
    nm = X.shape[1]
    out = {k: [] for k in ["mean+p10", "p10", "loud+p10", "mean+std", "p10+p90"]}
    for k in range(len(uniq)):
        fr = X[which == k].transpose(1, 0, 2).reshape(nm, -1)
        e = fr.mean(0)
        loud = fr[:, e >= np.median(e)]
        out["mean+p10"].append(np.r_[fr.mean(1), np.percentile(fr, 10, 1)])
        out["p10"].append(np.percentile(fr, 10, 1))
        out["loud+p10"].append(np.r_[loud.mean(1), np.percentile(fr, 10, 1)])
        out["mean+std"].append(np.r_[fr.mean(1), fr.std(1)])
        out["p10+p90"].append(np.r_[np.percentile(fr, 10, 1), np.percentile(fr, 90, 1)])
    spk = np.array([Path(f).name.split("_")[1] for f in uniq])
    dig = np.array([Path(f).name.split("_")[0] for f in uniq])
    return {k: (lambda d: (d - d.mean(0)) / (d.std(0) + 1e-6))(np.array(v)) for k, v in out.items()}, spk, dig


def bic_gmm_diag(x, labels):
    # BIC of a diagonal gaussian mixture fitted from the k-means partition (one M step)
    n, d = x.shape
    K = labels.max() + 1
    dens = np.zeros((n, K))
    for j in range(K):
        xj = x[labels == j]
        mu, var, w = xj.mean(0), xj.var(0) + 1e-3, len(xj) / n
        dens[:, j] = np.log(w) - 0.5 * (np.log(2 * np.pi * var).sum() + (((x - mu) ** 2) / var).sum(1))
    mx = dens.max(1)
    ll = (mx + np.log(np.exp(dens - mx[:, None]).sum(1))).sum()
    p = K * (2 * d) + K - 1
    return -2 * ll + p * np.log(n)


def pca(x, k=10):
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    return u[:, :k] * s[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prepared", nargs="+", type=Path, help="prepared folders with a flat FSDD target")
    for task in ap.parse_args().prepared:
        prep = open_prepared(Path(task))
        D, spk, dig = descs(prep)
        print(task, "files", len(spk), "speakers", len(set(spk)))
        for name, d in D.items():
            line = []
            for K in range(2, 7):
                lab = kmeans(d, K, 0)
                p = pca(d, 8)
                line.append(
                    (
                        K,
                        round(ari(lab, spk), 2),
                        round(ari(lab, dig), 2),
                        round(silhouette(d, lab), 3),
                        round(bic_gmm_diag(p, kmeans(p, K, 0))),
                    )
                )
            print(f"  {name:9s}", " ".join(f"K{K}:ariS={a} ariD={b} sil={s} bic={bb}" for K, a, b, s, bb in line))


if __name__ == "__main__":
    main()
