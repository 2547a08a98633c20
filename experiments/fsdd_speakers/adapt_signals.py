"""Can a label-free signal tell when self-training beat AdaBN? Measured on models hard_shifts.py trained.

    python recipes/fsdd_speakers/hard_shifts.py --work data/fsdd_hard --tasks A B S --variants base \
        --bases source-only --methods adabn          # trains the source-only models (CPU: ~2 min each)
    python experiments/fsdd_speakers/adapt_signals.py --work data/fsdd_hard --tasks A B S [--methods shot-file]

For every source-only model of ``--work`` and each self-training method, the script adapts the model
(on the flat pool, as ``audio-dann adapt``), and compares the adapted network with the AdaBN network on
label-free signals computed on the pool:

- ``atc``: ATC-NE with the bundle's source calibration (the single-model estimate ``adapt`` has);
- ``consistency``: share of windows whose top class survives a random SpecWarp (+-10%) and two frequency
  masks, averaged over three draws (invariance to nuisance perturbations, Deng et al. 2022);
- ``stability``: agreement between two adaptations with different seeds (self-training that locks onto
  its own errors tends to lock onto different ones each time); for AdaBN, which has no randomness,
  the agreement between AdaBN on two halves of the pool;
- ``neighbours``: share of each window's 10 nearest neighbours, in the AdaBN network's embedding, that
  the network gives the same top class (cluster consistency of the labelling).

A rule "keep the adapted network when signal(adapted) > signal(AdaBN)" is graded against the pool
accuracy (labels from file names, report only).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes" / "fsdd_speakers"))  # noqa: E402
from adapt_table import _scores, _views  # noqa: E402 (same folder)
from hard_shifts import ADAPTS  # noqa: E402

from audio_dann.adaptation.estimators import estimate
from audio_dann.adaptation.methods import AdaptConfig, TargetClips, adabn, adapt_network
from audio_dann.nn.augment import SpecAugment, SpecWarp
from audio_dann.nn.classifier import load_model
from audio_dann.nn.outputs import probabilities


@torch.no_grad()
def consistency(net, x: torch.Tensor, draws: int = 3) -> float:
    net.eval()
    base = probabilities(net, x).argmax(1)
    warp, mask = SpecWarp(0.1, 0.1).train(), SpecAugment(freq_masks=2, freq_mask_width=4).train()
    torch.manual_seed(123)
    same = []
    for _ in range(draws):
        xp = mask(warp(x.float()))
        same.append((probabilities(net, xp).argmax(1) == base).mean())
    return float(np.mean(same))


@torch.no_grad()
def embeddings(net, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[s : s + 512].float())[1] for s in range(0, len(x), 512)])


def neighbour_agreement(z: torch.Tensor, labels: np.ndarray, k: int = 10) -> float:
    zn = F.normalize(z.float(), dim=1)
    lab = torch.as_tensor(labels)
    share = []
    for s in range(0, len(zn), 1024):
        idx = (zn[s : s + 1024] @ zn.T).topk(k + 1, dim=1).indices[:, 1:]
        share.append((lab[idx] == lab[s : s + 1024, None]).float().mean(1))
    return float(torch.cat(share).mean())


def signals(net, z_ref: torch.Tensor, x: torch.Tensor, calibration: dict | None) -> tuple[np.ndarray, dict]:
    p = probabilities(net, x)
    return p, {
        "atc": estimate(p, calibration).get("atc-ne", float("nan")),
        "consistency": consistency(net, x),
        "neighbours": neighbour_agreement(z_ref, p.argmax(1)),
    }


def one(run: Path, prep: Path, methods: list[str], seed: int) -> list[dict]:
    views = _views(prep, ("pool", "test"))
    pool = views["pool"]
    clips = TargetClips(pool["x"], pool["file"], pool["paths"], [])
    model = load_model(run / "model.pt")
    ref, _ = adapt_network(model.dann, clips, "adabn", AdaptConfig(seed=seed))
    z_ref = embeddings(ref, pool["x"])
    p_ref, s_ref = signals(ref, z_ref, pool["x"], model.calibration)
    halves = []  # AdaBN's "stability": statistics from each half of the files
    for part in (pool["file"] % 2 == 0, pool["file"] % 2 == 1):
        net = copy.deepcopy(model.dann)
        adabn(net, pool["x"][torch.as_tensor(part)], torch.device("cpu"))
        halves.append(probabilities(net, pool["x"]))
    s_ref["stability"] = float((halves[0].argmax(1) == halves[1].argmax(1)).mean())
    rows = [
        {
            "run": run.name,
            "adapt": "adabn",
            **{f"pool_{k}": v for k, v in _scores(p_ref, pool, model.classes).items()},
            "signals": s_ref,
        }
    ]
    for name in methods:
        method, settings = ADAPTS[name]
        nets = [
            adapt_network(model.dann, clips, method, AdaptConfig(seed=sd, **settings))[0] for sd in (seed, seed + 100)
        ]
        p, s = signals(nets[0], z_ref, pool["x"], model.calibration)
        s["stability"] = float((p.argmax(1) == probabilities(nets[1], pool["x"]).argmax(1)).mean())
        rows.append(
            {
                "run": run.name,
                "adapt": name,
                **{f"pool_{k}": v for k, v in _scores(p, pool, model.classes).items()},
                "signals": s,
            }
        )
    return rows


def grade(rows: list[dict]) -> str:
    out = [
        "| signal | right calls | kept minus AdaBN, mean (pool points) | worst | adapted minus AdaBN, mean |",
        "|---|---|---|---|---|",
    ]
    ref = {r["run"]: r for r in rows if r["adapt"] == "adabn"}
    cases = [r for r in rows if r["adapt"] != "adabn"]
    for sig in ("atc", "consistency", "stability", "neighbours"):
        right, kept = 0, []
        for r in cases:
            a = ref[r["run"]]
            keep = r["signals"][sig] > a["signals"][sig]
            better = r["pool_window_acc"] > a["pool_window_acc"]
            right += keep == better
            kept.append((r["pool_window_acc"] if keep else a["pool_window_acc"]) - a["pool_window_acc"])
        diffs = [r["pool_window_acc"] - ref[r["run"]]["pool_window_acc"] for r in cases]
        out.append(
            f"| {sig} | {right}/{len(cases)} | {100 * np.mean(kept):+.1f} | {100 * min(kept):+.1f} | "
            f"{100 * np.mean(diffs):+.1f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_hard"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B", "S"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["shot-file", "shot-file-t0.9"], choices=list(ADAPTS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            run = args.work / "runs" / f"{task}_base_source-only_s{seed}"
            part = one(run, args.work / f"{task}_prep_flat", args.methods, seed)
            for r in part:
                r["task"], r["seed"] = task, seed
                print(json.dumps(r), flush=True)
            rows += part
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(grade(rows))


if __name__ == "__main__":
    main()
