"""Issue 16: a latent-domain ensemble as the teacher of the self-training stage (``train.latent_ensemble``).

    python experiments/fsdd_speakers/latent_ensemble.py [--work data/fsdd_hard] [--tasks A B S] [--members 2 3 4] \
        [--rows results/hard_shifts_cpu_2026-11-29.jsonl]

Reads the flat-target DANN runs that ``hard_shifts.py`` trained (variants ``base`` = one target domain,
``latent2``, ``latent3``, ... = K latent domains; saved without the AdaBN stage) and does what
``train --set train.latent_ensemble=[2,3,4]`` does after its own training, with the same functions: each
model gets AdaBN on the target pool, the mean of their pool probabilities is the teacher, and the
``base`` model is self-trained with shot-file on the teacher's per-file pseudo-labels (threshold 0,
10 epochs, seed = the run's seed), then AdaBN. Where ``{task}_latent{K}`` is missing, a ``latent-auto``
run whose silhouette picked that K stands in (said on the console). Scores on the target test files and
pool (FSDD file names: report only) go out as rows of ``hard_shifts.py``'s schema (variant
``latent-ensemble``, adapt ``teacher`` = the mean of the networks, ``distilled`` = the one shipped
network), so ``hard_shifts.py --tables-from`` puts them in the headline table; ``train_s`` is the sum
of the members' training times. ``--members 2 4`` gives variant ``latent-ensemble-2-4``;
``--seed-ensemble`` the control of the same cost: the K = 0 runs of the three seeds as members.
``--teacher-bn latent-bn`` normalises each network per latent target condition for the teacher, as
``train.ensemble_teacher=latent-bn`` does (variant suffix ``+latent-bn``). ``--family warp+mixstyle``
composes the runs of that variant (``warp+mixstyle``, ``warp+mixstyle+latent2``, ...; variant
``latent-ensemble@warp+mixstyle``); ``--member-family`` takes only the members from another.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes" / "fsdd_speakers"))  # the recipe's helpers
from adapt_table import _scores, _views  # noqa: E402

from audio_dann.adaptation.methods import (
    AdaptConfig,
    TargetClips,
    adapt_network,  # noqa: E402
    ensemble_probabilities,
)
from audio_dann.nn.classifier import load_model  # noqa: E402
from audio_dann.nn.outputs import probabilities  # noqa: E402


def member_run(runs: Path, task: str, k: int, seed: int, family: str = "base") -> Path | None:
    """The flat DANN run of ``task`` with ``k`` latent domains (0: the ``family`` variant itself, else
    ``{family}+latent{k}``; family ``base``: ``base`` and ``latent{k}``), or None."""
    name = family if k == 0 else (f"latent{k}" if family == "base" else f"{family}+latent{k}")
    run = runs / f"{task}_{name}_dann-flat_s{seed}"
    if (run / "model.pt").is_file():
        return run
    auto = runs / f"{task}_latent-auto_dann-flat_s{seed}"
    if k and family == "base" and (auto / "summary.json").is_file():
        if (json.loads((auto / "summary.json").read_text()).get("latent_domains") or {}).get("k") == k:
            print(f"{task} seed {seed}: K={k} from {auto.name} (the silhouette picked {k})", flush=True)
            return auto
    return None


def one(
    task: str,
    seed: int,
    members: list[int],
    views: dict,
    runs: Path,
    seeds: list[int] | None = None,
    family: str = "base",
    member_family: str | None = None,
    teacher_bn: str = "adabn",
) -> list[dict]:
    """Rows for the ensemble of K = 0 and ``members`` at ``seed``; or, with ``seeds``, the ensemble of the
    K = 0 runs of those seeds (``seed``'s first: the student), the same cost without the K."""
    if seeds:
        paths, variant = (
            [member_run(runs, task, 0, s) for s in [seed, *(s for s in seeds if s != seed)]],
            "seed-ensemble",
        )
    else:
        member_family = member_family or family
        paths = [
            member_run(runs, task, 0, seed, family),
            *(member_run(runs, task, k, seed, member_family) for k in members),
        ]
        variant = (
            "latent-ensemble"
            + ("" if members == [2, 3, 4] else "-" + "-".join(map(str, members)))
            + ("" if family == "base" else f"@{family}")
            + ("" if member_family == family else f"/members@{member_family}")
        )
    if any(p is None for p in paths):
        print(f"{task} seed {seed}: {variant} skipped, runs missing", flush=True)
        return []
    pool, test = views["pool"], views["test"]
    clips = TargetClips(pool["x"], pool["file"], [], [])
    nets, classes = [], None
    for p in paths:
        m = load_model(p / "model.pt")
        classes = m.classes
        nets.append(adapt_network(m.dann, clips, "adabn")[0])
    # as train.ensemble_teacher does (latent-bn: AdaBN per latent condition, K = 1-4)
    teacher = torch.from_numpy(np.mean(ensemble_probabilities(nets, clips, teacher_bn, seed), axis=0)).float()
    variant += "+latent-bn" if teacher_bn == "latent-bn" else ""
    t0 = time.perf_counter()
    student, _ = adapt_network(nets[0], clips, "shot-file", AdaptConfig(seed=seed), "cpu", teacher=teacher)
    adapt_s = time.perf_counter() - t0
    train_s = sum(json.loads((p / "summary.json").read_text())["train_seconds"] for p in paths)
    rows = []
    for adapt, pool_p, test_p in (
        ("teacher", teacher.numpy(), np.mean([probabilities(n, test["x"]) for n in nets], axis=0)),
        ("distilled", probabilities(student, pool["x"]), probabilities(student, test["x"])),
    ):
        ps, ts = _scores(pool_p, pool, classes), _scores(test_p, test, classes)
        rows.append(
            {
                "task": task,
                "variant": variant,
                "base": "dann-flat",
                "adapt": adapt,
                "seed": seed,
                "members": [p.name for p in paths],
                "train_s": train_s,
                "adapt_s": adapt_s if adapt == "distilled" else 0.0,
                "pool_window_acc": ps["window_acc"],
                "pool_file_acc": ps["file_acc"],
                "pool_files": ps["files"],
                "test_window_acc": ts["window_acc"],
                "test_file_acc": ts["file_acc"],
                "test_files": ts["files"],
            }
        )
        print(task, seed, variant, adapt, f"test {ts['file_acc']:.3f} pool {ps['file_acc']:.3f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_hard"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B", "S"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--members", nargs="+", type=int, default=[2, 3, 4], help="K of the members besides K=0")
    ap.add_argument(
        "--seed-ensemble",
        action="store_true",
        help="instead: the ensemble of the K=0 runs of all --seeds (the same cost, no latent domains)",
    )
    ap.add_argument("--family", default="base", help="the hard_shifts variant of the runs (e.g. warp+mixstyle)")
    ap.add_argument("--member-family", default=None, help="the members' variant, if not --family")
    ap.add_argument(
        "--teacher-bn",
        choices=["adabn", "latent-bn"],
        default="adabn",
        help="how each network is normalised for the teacher (train.ensemble_teacher)",
    )
    ap.add_argument("--rows", type=Path, default=None, help="append the rows here (jsonl)")
    args = ap.parse_args()
    for task in args.tasks:
        if not (args.work / f"{task}_prep_flat").is_dir():
            print(f"{task}: no prepared flat folder under {args.work}", flush=True)
            continue
        views = _views(args.work / f"{task}_prep_flat", ("pool", "test"))
        for seed in args.seeds:
            rows = one(
                task,
                seed,
                args.members,
                views,
                args.work / "runs",
                args.seeds if args.seed_ensemble else None,
                args.family,
                args.member_family,
                args.teacher_bn,
            )
            if args.rows and rows:
                with open(args.rows, "a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
