"""ONNX export against PyTorch on the same windows: speed and top-1 agreement, float32 and int8.

    python benchmarks/export_speed.py --model runs/dann/model.pt --audio recordings/ [--windows 2000]

Cuts up to ``--windows`` windows from the audio folder as ``predict`` does, then classifies them
three ways in one process, batch 64, one thread each (as one predict worker runs): the PyTorch
inference copy (what ``predict`` runs), the float32 ONNX graph and its int8 dynamic quantization,
both with onnxruntime. Prints windows/s, ratios to PyTorch, top-1 agreement with PyTorch, and the
largest probability difference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--audio", type=Path, required=True)
    ap.add_argument("--windows", type=int, default=2000)
    args = ap.parse_args()
    import onnxruntime as ort

    from audio_dann.api import export, load_model
    from audio_dann.deploy.onnx_export import check_windows

    torch.set_num_threads(1)
    model = load_model(args.model)
    windows = check_windows(model, args.audio, args.windows)
    fast = model.for_inference()
    batches = [torch.from_numpy(windows[s : s + 64]) for s in range(0, len(windows), 64)]

    def run_torch():
        with torch.inference_mode():
            return np.concatenate([torch.softmax(fast(b), 1).numpy() for b in batches])

    ref = run_torch()
    rows = [("PyTorch inference copy (predict)", _best_of(run_torch), ref)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, quantize in (("ONNX float32 (onnxruntime)", None), ("ONNX int8 dynamic (onnxruntime)", "int8")):
            path = Path(tmp) / f"{quantize or 'f32'}.onnx"
            export(args.model, path, quantize=quantize, check=args.audio, check_windows_n=64)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

            def run_onnx(sess=sess):
                return np.concatenate([sess.run(None, {"waveform": b.numpy()})[0] for b in batches])

            rows.append((name, _best_of(run_onnx), run_onnx()))
    base = rows[0][1]
    print(f"{len(windows)} windows of {windows.shape[1]} samples from {args.audio}; batch 64, one thread each")
    print(f"{'path':34} {'windows/s':>10} {'vs PyTorch':>10} {'top-1 agree':>12} {'max |dp|':>10}")
    for name, seconds, probs in rows:
        agree = float((probs.argmax(1) == ref.argmax(1)).mean())
        print(
            f"{name:34} {len(windows) / seconds:10.0f} {base / seconds:9.2f}x {agree:12.4f} "
            f"{float(np.abs(probs - ref).max()):10.2e}"
        )


if __name__ == "__main__":
    main()
