"""Choosing a configuration without labels by the agreement of its seeds (issue 16: which K?).

    python recipes/fsdd_speakers/seed_agreement.py [--work data/fsdd_hard]

Reads the flat-target DANN runs that ``hard_shifts.py`` trained (3 seeds per variant), applies the
AdaBN stage to each, and prints per variant the mean target-pool accuracy (FSDD file names: report
only) and the mean pairwise agreement of the three seeds' pool predictions (no label read). The idea:
two independently trained models agree about as often as they are right (the agreement estimator,
4.8 points MAE on FSDD), so the variant whose seeds agree most should be the most accurate.
"""
import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapt_table import _views  # noqa: E402
from audio_dann.nn.calibration import probabilities  # noqa: E402
from audio_dann.nn.classifier import load_model  # noqa: E402
from audio_dann.training.self_training import adabn  # noqa: E402
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--work", type=Path, default=Path("data/fsdd_hard"))
ap.add_argument("--out", type=Path, default=None, help="write the figures here (json)")
work = ap.parse_args().work
out = {}
RUNS = (("A", ["base", "latent3", "latent-auto", "cdan"]), ("B", ["base", "latent3", "latent-auto", "cdan", "wide"]),
        ("S", ["base", "wide"]))
for task, variants in RUNS:
    v = _views(work / f"{task}_prep_flat", ("pool",))["pool"]
    for var in variants:
        preds, accs = [], []
        for s in range(3):
            m = load_model(work / "runs" / f"{task}_{var}_dann-flat_s{s}" / "model.pt")
            net = m.dann
            adabn(net, v["x"], torch.device("cpu"))
            p = probabilities(net, v["x"], "cpu")
            cls = np.array([int(c) for c in m.classes])
            preds.append(cls[p.argmax(1)])
            accs.append(float((preds[-1] == v["y"]).mean()))
        agree = [float((a == b).mean()) for a, b in itertools.combinations(preds, 2)]
        out[f"{task}/{var}"] = {"pool_acc": float(np.mean(accs)), "agreement": float(np.mean(agree))}
        print(task, var, "pool acc %.3f" % np.mean(accs), "seed agreement %.3f" % np.mean(agree), flush=True)
if ap.parse_args().out:
    ap.parse_args().out.write_text(json.dumps(out, indent=1))
