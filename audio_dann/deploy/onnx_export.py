"""``export``: a ``model.pt`` bundle -> one ONNX graph from raw mono waveforms to class probabilities.

The graph is the inference copy of the model (batch norm folded into the convolutions) behind the
convolutional twin of the log-mel frontend (:class:`~audio_dann.nn.frontend_conv.ConvLogMel`), with
the model's input normalisation inside: ``waveform (batch, samples)`` float32 at the model's sample
rate -> ``probabilities (batch, n_classes)`` (softmax of the logits). Batch size and length are
dynamic; the model was trained on windows of ``window_seconds``, which is what callers should feed.

The export verifies itself before it writes: onnxruntime runs the graph on real windows (``check``
folder) or seeded synthetic ones and the largest probability difference from ``load_model`` must
not exceed ``tolerance``. With ``quantize="int8"`` (onnxruntime dynamic quantization) the file
written is the int8 graph, and the top-1 agreement with float32 and the speed-up are measured and
reported instead of a tolerance.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..data.audio import gather_windows, load_mono, plan_windows
from ..data.scan import list_inputs
from ..errors import AudioError, ExportError
from ..files import check_output_file, output_lock
from ..nn.classifier import AudioClassifier, load_checkpoint
from ..nn.frontend_conv import ConvLogMel
from ..runtime import derive_seed

__all__ = ["export", "ProbabilityGraph", "check_windows"]

QUANTIZE = (None, "int8")


class ProbabilityGraph(nn.Module):
    """What is exported: ``waveform (B, samples) -> probabilities (B, n_classes)``."""

    def __init__(self, model: AudioClassifier) -> None:
        super().__init__()
        fast = model.for_inference(strided_pools=False)  # onnxruntime's MaxPool beat strided slices 1.5x
        self.frontend = ConvLogMel(model.frontend)
        self.dann = fast.dann

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.dann(self.frontend(waveform))[0], dim=1)


def _runtime():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError("export needs onnx and onnxruntime: pip install 'audio-dann[export]'") from None
    return onnx, onnxruntime


def check_windows(model: AudioClassifier, folder: str | Path | None, n: int = 64) -> np.ndarray:
    """Up to ``n`` windows ``(n, window samples)`` float32: cut from the audio files of ``folder`` as
    ``predict`` cuts them, or, without a folder, seeded synthetic tones in noise."""
    window = model.config.features.clip_samples
    if folder is None:
        rng = np.random.default_rng(derive_seed(0, "export/check-windows"))
        t = np.arange(window) / model.sample_rate
        freqs = rng.uniform(100, model.sample_rate / 3, (n, 1))
        x = 0.3 * np.sin(2 * np.pi * freqs * t) + 0.05 * rng.standard_normal((n, window))
        return x.astype(np.float32)
    feats, out = model.config.features, []
    for path in list_inputs(folder):
        try:
            signal, starts = plan_windows(
                load_mono(path, model.sample_rate),
                window,
                int(round(feats.hop_seconds * model.sample_rate)),
                feats.pad_mode,
            )
        except AudioError:
            continue
        out.append(gather_windows(signal, starts[: n - sum(len(o) for o in out)], window))
        if sum(len(o) for o in out) >= n:
            break
    if not out:
        raise ExportError(f"--check {folder}: no readable audio file to check the export on")
    return np.concatenate(out)


def _metadata(model: AudioClassifier, bundle: dict, source: Path) -> dict[str, str]:
    feats = model.config.features
    return {
        "classes": json.dumps(model.classes),
        "sample_rate": str(model.sample_rate),
        "window_seconds": str(feats.clip_seconds),
        "hop_seconds": str(feats.hop_seconds),
        "pad_mode": feats.pad_mode,
        "input": "waveform: float32 (batch, samples), mono, in [-1, 1], at sample_rate",
        "output": "probabilities: float32 (batch, n_classes), softmax of the logits, classes in order",
        "adaptation": json.dumps(bundle.get("adaptation", {"method": model.config.train.method})),
        "audio_dann_version": __version__,
        "source_bundle_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }


def _run(session, windows: np.ndarray, batch: int = 64) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: windows[s : s + batch]})[0] for s in range(0, len(windows), batch)])


def _session(ort, path: Path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _timed(session, windows: np.ndarray, repeats: int = 3) -> float:
    _run(session, windows[:8])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _run(session, windows)
        best = min(best, time.perf_counter() - t0)
    return best


def export(
    model_path: str | Path,
    out: str | Path,
    *,
    opset: int = 17,
    quantize: str | None = None,
    check: str | Path | None = None,
    check_windows_n: int = 64,
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Export ``model_path`` to ONNX at ``out`` after checking it; returns what was measured.

    Raises:
        ExportError: the extra is missing, an option is out of range, or the check failed (nothing written).
    """
    if quantize not in QUANTIZE:
        raise ExportError(f"--quantize must be int8 (or absent), got {quantize!r}")
    if not 11 <= opset <= 21:
        raise ExportError(f"--opset must lie in 11-21, got {opset}")
    onnx, ort = _runtime()
    model_path, out = Path(model_path), check_output_file(out, inputs=[model_path, *([check] if check else [])])
    model, bundle = load_checkpoint(model_path)
    windows = check_windows(model, check, check_windows_n)
    with torch.no_grad():
        reference = torch.softmax(model(torch.from_numpy(windows)), 1).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out), tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        f32 = Path(tmp) / "float32.onnx"
        _export_graph(onnx, ProbabilityGraph(model).eval(), windows, f32, opset, _metadata(model, bundle, model_path))
        sess = _session(ort, f32)
        probs = _run(sess, windows)
        diff = float(np.abs(probs - reference).max())
        report: dict[str, Any] = {
            "out": str(out),
            "opset": opset,
            "windows": len(windows),
            "checked_on": str(check) if check else "synthetic windows",
            "max_abs_prob_diff": diff,
            "tolerance": tolerance,
            "top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
        }
        if not diff <= tolerance:
            raise ExportError(
                f"{model_path}: the ONNX graph's probabilities differ from PyTorch's by {diff:.2e} "
                f"(> {tolerance:g}) on {len(windows)} windows; nothing written"
            )
        final = f32
        if quantize == "int8":
            final = Path(tmp) / "int8.onnx"
            report["int8"] = _quantize(ort, f32, final, windows, probs, sess)
        report["bytes"] = final.stat().st_size
        os.replace(final, out)
    return report


def _export_graph(onnx, graph: nn.Module, windows: np.ndarray, path: Path, opset: int, meta: dict[str, str]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            graph,
            (torch.from_numpy(windows[:2]),),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["waveform"],
            output_names=["probabilities"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "probabilities": {0: "batch"}},
        )
    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _quantize(ort, f32: Path, q8: Path, windows: np.ndarray, probs: np.ndarray, sess) -> dict[str, float]:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The frontend stays float32: quantizing its DFT kernels and mel matrix changed the top-1 label of
    # 43% of FSDD windows (measured); the network's convolutions and linear layers are quantized.
    frontend = [n.name for n in onnx.load(str(f32)).graph.node if n.name.startswith("/frontend/")]
    logging.disable(logging.WARNING)  # the quantizer logs advice on the root logger
    try:
        quantize_dynamic(str(f32), str(q8), weight_type=QuantType.QInt8, nodes_to_exclude=frontend)
    finally:
        logging.disable(logging.NOTSET)
    qsess = _session(ort, q8)
    qprobs = _run(qsess, windows)
    t32, t8 = _timed(sess, windows), _timed(qsess, windows)
    return {
        "top1_agreement_with_float32": float((qprobs.argmax(1) == probs.argmax(1)).mean()),
        "max_abs_prob_diff": float(np.abs(qprobs - probs).max()),
        "float32_seconds": t32,
        "int8_seconds": t8,
        "speedup": t32 / t8,
        "float32_bytes": f32.stat().st_size,
        "int8_bytes": q8.stat().st_size,
    }
