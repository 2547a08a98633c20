"""Training samples per second: audio-dann's loop vs a bare hand-written DANN loop, one run.

    python benchmarks/train_speed.py [--steps 150] [--batch 32]

Same model (default LogMelCNN + heads), same batch (32 source + 32 target), same float16 feature
tensors, same optimizer and schedules; the bare loop has no logging, no evaluation hooks, no
checkpoints. The two are timed alternately, twice each, and the faster of each pair kept.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from audio_dann.config import Config, TrainConfig
from audio_dann.nn.dann import build_dann
from audio_dann.nn.grl import grad_reverse
from audio_dann.training.loop import TrainData, fit


def bare_loop(model, xs, ys, xt, steps: int, batch: int, lr: float = 0.01) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    model.train()
    for step in range(steps):
        p = step / steps
        for group in opt.param_groups:
            group["lr"] = lr / (1 + 10 * p) ** 0.75
        coeff = 2 / (1 + math.exp(-10 * p)) - 1
        si = torch.randint(len(xs), (batch,), generator=g)
        ti = torch.randint(len(xt), (batch,), generator=g)
        x = torch.cat([xs[si], xt[ti]]).float()
        logits, z = model(x)
        dom = model.domain_head(grad_reverse(z, coeff))
        d = torch.cat([torch.zeros(batch), torch.ones(batch)])
        loss = F.cross_entropy(logits[:batch], ys[si]) + F.binary_cross_entropy_with_logits(dom.squeeze(1), d)
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mels", type=int, default=40)
    args = ap.parse_args()
    cfg = Config()
    n = 2000
    xs = torch.randn(n, args.mels, 101).half()
    ys = torch.randint(0, 10, (n,))
    xt = torch.randn(n, args.mels, 101).half()
    train_cfg = TrainConfig(method="dann", steps=args.steps, batch_size=args.batch, eval_every=50, entropy_weight=0.0)
    data = TrainData(xs, ys, xt, torch.ones(n, dtype=torch.long))
    times = {"ours": [], "bare": []}
    for _ in range(2):
        torch.manual_seed(0)
        model = build_dann(cfg.model, 10, 2, n_mels=args.mels)
        t0 = time.perf_counter()
        fit(model, data, train_cfg, evaluate=lambda m, s: {}, progress_cb=lambda s, t, m: None)
        times["ours"].append(time.perf_counter() - t0)
        torch.manual_seed(0)
        model = build_dann(cfg.model, 10, 2, n_mels=args.mels)
        t0 = time.perf_counter()
        bare_loop(model, xs, ys, xt, args.steps, args.batch)
        times["bare"].append(time.perf_counter() - t0)
    samples = args.steps * 2 * args.batch
    ours, bare = min(times["ours"]), min(times["bare"])
    print(
        f"{args.steps} steps of {args.batch}+{args.batch} clips, {args.mels}x101 log-mels, threads={torch.get_num_threads()}"
    )
    print(f"bare hand-written loop : {samples / bare:8.1f} samples/s")
    print(
        f"audio-dann loop (fit)  : {samples / ours:8.1f} samples/s (logging, eval hook every 50 steps, progress callback)"
    )
    print(f"ratio (ours/bare)      : {bare / ours:8.3f}")


if __name__ == "__main__":
    main()
