"""Choosing a configuration without labels by the agreement of its seeds (issue 16: which K?).

    python experiments/fsdd_speakers/seed_agreement.py [--work data/fsdd_hard]

Reads the flat-target DANN runs that ``hard_shifts.py`` trained (3 seeds per variant), applies the
AdaBN stage to each, and prints per variant the mean target-pool accuracy (FSDD file names: report
only) and the mean pairwise agreement of the three seeds' pool predictions (no label read). The idea:
two independently trained models agree about as often as they are right (the agreement estimator,
4.8 points MAE on FSDD), so the variant whose seeds agree most should be the most accurate. Per task
it then says which number of latent domains (none, 2, 3, 4, 6: the variants found) agreement picks
and which is the most accurate. Variants without all three seeds' runs are skipped.
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes" / "fsdd_speakers"))  # the recipe's helpers
from adapt_table import _views  # noqa: E402

from audio_dann.adaptation.methods import adabn  # noqa: E402
from audio_dann.nn.classifier import load_model  # noqa: E402
from audio_dann.nn.outputs import probabilities  # noqa: E402

VARIANTS = ["base", "latent2", "latent3", "latent4", "latent6", "latent-auto", "cdan", "wide"]
K_CHOICES = ("base", "latent2", "latent3", "latent4", "latent6")  # the number of latent domains only


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_hard"))
    ap.add_argument("--out", type=Path, default=None, help="write the figures here (json)")
    args = ap.parse_args()
    work, out = args.work, {}
    for task in ("A", "B", "S"):
        if not (work / f"{task}_prep_flat").is_dir():
            continue
        v = _views(work / f"{task}_prep_flat", ("pool",))["pool"]
        for var in VARIANTS:
            runs = [work / "runs" / f"{task}_{var}_dann-flat_s{s}" / "model.pt" for s in range(3)]
            if not all(r.is_file() for r in runs):
                continue
            preds, accs = [], []
            for run in runs:
                m = load_model(run)
                net = m.dann
                adabn(net, v["x"], torch.device("cpu"))
                p = probabilities(net, v["x"], "cpu")
                cls = np.array([int(c) for c in m.classes])
                preds.append(cls[p.argmax(1)])
                accs.append(float((preds[-1] == v["y"]).mean()))
            agree = [float((a == b).mean()) for a, b in itertools.combinations(preds, 2)]
            out[f"{task}/{var}"] = {"pool_acc": float(np.mean(accs)), "agreement": float(np.mean(agree))}
            print(task, var, "pool acc %.3f" % np.mean(accs), "seed agreement %.3f" % np.mean(agree), flush=True)
        ks = {var: out[f"{task}/{var}"] for var in K_CHOICES if f"{task}/{var}" in out}
        if len(ks) > 1:
            pick, best = max(ks, key=lambda k: ks[k]["agreement"]), max(ks, key=lambda k: ks[k]["pool_acc"])
            print(
                f"{task}: among {', '.join(ks)} agreement picks {pick} (pool {ks[pick]['pool_acc']:.3f}); "
                f"the most accurate is {best} ({ks[best]['pool_acc']:.3f})",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
