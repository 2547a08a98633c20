"""The ``audio-dann`` command line: parse, call one library function, print a summary.

Every user error (any :class:`~audio_dann.errors.UserError`: bad path, bad file, bad config)
ends in one line on stderr and exit code 2, never a traceback. Nothing heavy (torch, numpy,
matplotlib) is imported until a command runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import OptionError, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no value placeholders on flags, no boxes in logs
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Adapt audio classifiers to new recording conditions without new labels.",
)
out_console = Console(soft_wrap=True)  # a long line stays one line in logs and pipes
err_console = Console(stderr=True, soft_wrap=True)


def _flag(*names: str, help: str, **kwargs):
    """An on/off option, shown in --help without a value placeholder."""
    return typer.Option(False, *names, help=help, metavar=" ", **kwargs)


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        out_console.print(f"audio-dann {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = _flag("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Adapt audio classifiers to new recording conditions without new labels."""


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    """Turn user errors into one line and exit code 2; Ctrl-C into exit 130."""
    try:
        yield
    except (UserError, FileNotFoundError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; run the same command again (with --resume for train) to continue")
        raise typer.Exit(130) from None


@contextlib.contextmanager
def _bar(quiet: bool, description: str, unit: str = "files") -> Iterator[callable]:
    """A rich progress bar on a terminal; silent when piped or --quiet. Yields ``update(done, total, text)``."""
    if quiet or not err_console.is_terminal:
        yield lambda done, total, text="": None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TextColumn("{task.fields[text]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=None, text="")

        def update(done: int, total: int, text: str = "") -> None:
            progress.update(task, completed=done, total=total, text=text)

        yield update


ReferenceOpt = typer.Option(
    None,
    "--reference",
    help=(
        "A second model of the task (e.g. another seed; repeat for several; same classes and features): the label-free "
        "estimate is then the lowest of how often the model agrees with them, ATC-NE and the prior bound, in place "
        "of the critic's (which still sets the lower bound; adapt adapts each alike). Default: none."
    ),
)
LabelShiftOpt = _flag(
    "--label-shift",
    help=(
        "The target's classes may be far more skewed than the source's: leave the prior bound out of the "
        "label-free estimate (it assumes they are about as frequent)."
    ),
)


def _limited(est: dict) -> str:
    """``combined, set by agreement`` for the console: the estimator and the figure that set its value."""
    by = est.get("limited_by")
    return f"{est['estimator']}, set by {by}" if isinstance(by, str) else est["estimator"]


# a point estimate this far above its lower bound is worth a plain-words caution
UNCERTAIN_SPREAD = 0.15


def _lower_text(est: dict) -> str:
    """``, lower bound 0.640`` for the console (nothing for estimates without one)."""
    lower = est.get("lower_bound")
    return "" if lower is None else f", lower bound {lower:.3f}"


def _uncertain(value: float | None, lower: float | None) -> None:
    """On stderr, what to do when the lower bound lies far under the estimate."""
    if value is None or lower is None or value - lower <= UNCERTAIN_SPREAD:
        return
    err_console.print(
        f"[yellow]the target accuracy could be as low as {lower:.3f} though the estimate is {value:.3f}: "
        "before relying on this model there, label a few dozen target files and check it with "
        "`audio-dann evaluate`[/yellow]",
        highlight=False,
        soft_wrap=True,
    )


def _bound_text(bound: float | None, label_shift: bool | None) -> str:
    """`` (prior bound 0.375)``, or with ``--label-shift`` `` (prior bound 0.375, left out: --label-shift)``."""
    if bound is None:
        return ""
    return f" (prior bound {bound:.3f}" + (", left out: --label-shift)" if label_shift else ")")


def _warn(est: dict, classes: list[str] | None = None) -> None:
    """The estimated target class shares (with ``classes``), and the label-free estimate's warning (its
    prior bound), if it has one, on stderr."""
    shares = est.get("class_shares")
    if shares and classes and len(classes) == len(shares["estimate"]):
        text = ", ".join(f"{c} {v:.0%}" for c, v in zip(classes, shares["estimate"]))
        out_console.print(escape(f"estimated target class shares ({shares['by']}, no label read): {text}"))
    for key in ("warning", "caution"):
        if est.get(key):
            err_console.print(f"[yellow]{escape(est[key])}[/yellow]", highlight=False, soft_wrap=True)


def _config(config: Optional[Path], overrides: list[str]):
    from .config import load_config

    return load_config(config, overrides or [])


ConfigOpt = typer.Option(None, "--config", "-c", help="Recipe YAML (features/model/train/data sections).")
SetOpt = typer.Option(None, "--set", help="Override one setting, e.g. --set train.steps=3000 (repeatable).")
AmpOpt = typer.Option(
    "off",
    "--amp",
    help="off (float32) | bf16 | fp16: faster on GPUs and AMX/AVX-512-BF16 CPUs, probabilities differ slightly",
)
QuietOpt = _flag("--quiet", "-q", help="No progress bar.")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]")
WorkersOpt = typer.Option(
    None,
    "--workers",
    "-w",
    help="Worker processes that decode audio (default: one per core; half the cores when a GPU runs the network).",
)


@app.command()
def prepare(
    source: Path = typer.Option(..., "--source", "-s", help="Labelled folder (SRC/<class>/**) or CSV manifest."),
    target: list[Path] = typer.Option(
        ..., "--target", "-t", help="Unlabelled folder or manifest; repeat for several target domains."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Prepared folder to write."),
    target_eval: Optional[Path] = typer.Option(
        None, "--target-eval", help="Labelled target clips for reporting only (split 'test')."
    ),
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    val_fraction: Optional[float] = typer.Option(
        None, "--val-fraction", help="Share of source files held out for validation."
    ),
    workers: Optional[int] = WorkersOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the train/val split."),
    quiet: bool = QuietOpt,
) -> None:
    """Decode, resample and slice recordings into a log-mel feature store (resumable)."""
    with _guard():
        from .data.prepare import prepare as run_prepare

        extra = [
            f"data.{k}={v}"
            for k, v in (("val_fraction", val_fraction), ("workers", workers), ("seed", seed))
            if v is not None
        ]
        cfg = _config(config, list(set_ or []) + extra)
        import time

        t0 = time.perf_counter()
        with _bar(quiet, "prepare") as update:
            summary = run_prepare(
                source,
                target,
                out,
                target_eval=target_eval,
                config=cfg,
                progress=lambda d, t, c, s: update(
                    d, t, f"{c} clips, {s / 3600:.2f} h audio ({s / max(time.perf_counter() - t0, 1e-9):.0f} audio-s/s)"
                ),
            )
        if summary.already_complete:
            out_console.print(f"already prepared (same inputs and settings): {summary.line()}")
        elif summary.rebuilt_because:
            out_console.print(f"rebuilt {out}: {summary.rebuilt_because}")
        else:
            out_console.print(summary.line())
            out_console.print("clips: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.clips_by_split.items())))
            if summary.files_skipped:
                out_console.print(f"skipped files and reasons: {out / 'skipped.csv'}")
        if (summary.level_check or {}).get("warning"):
            err_console.print(escape(summary.level_check["warning"]), highlight=False)
        if summary.links_skipped:
            out_console.print(
                f"{summary.links_skipped} links skipped: folders or files reached a second time "
                "through symbolic links (each real file is read once)"
            )


@app.command()
def train(
    prepared: list[Path] = typer.Argument(
        ..., help="Folder(s) written by `audio-dann prepare` (several: shards of one corpus)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    method: Optional[str] = typer.Option(
        None,
        "--method",
        "-m",
        help=(
            "auto | dann | source-only (default: config, auto). auto: source-only training, then the latent-bn "
            "stage on the target audio; dann: domain-adversarial; source-only: the pure baseline."
        ),
    ),
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: str = DeviceOpt,
    resume: bool = _flag("--resume", help="Continue the run in --out from its last.pt."),
    reference: Optional[list[Path]] = ReferenceOpt,
    label_shift: bool = LabelShiftOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train on a prepared folder (default: source-only, then the latent-bn stage on the target audio;
    --method dann for DANN); writes model.pt, last.pt, metrics and plots."""
    with _guard():
        from .api import train as run_train
        from .config import named_settings

        if method is not None and method not in ("auto", "dann", "source-only"):
            raise OptionError(f"--method must be auto, dann or source-only, got {method!r}")
        cfg = _config(config, set_)

        with _bar(quiet, "train", unit="steps") as update:

            def cb(step, total, m):
                text = " ".join(
                    f"{k.replace('_loss', '')} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()
                )
                update(step, total, text)

            summary = run_train(
                prepared,
                out,
                config=cfg,
                method=method,
                seed=seed,
                device=device,
                resume=resume,
                progress=cb,
                reference=reference,
                named=named_settings(config, set_ or []),
                label_shift=label_shift,
            )
        _print_train_summary(summary, out)


def _print_train_summary(summary: dict, out: Path) -> None:
    """What `train` prints once the run is written."""
    sel = summary["selected"]
    stage_s = summary.get("self_training", {}).get("seconds")
    out_console.print(
        f"{summary['method']}: {summary['steps']} steps in {summary['train_seconds']:.0f} s"
        + (f" + {summary['self_training']['method']} stage {stage_s:.0f} s" if stage_s else "")
        + f"; model.pt = step {sel['step']} ({sel['criterion']} {sel['score']:.3f}) -> {out}"
    )
    if summary.get("method_choice"):
        out_console.print(summary["method_choice"])
    for warning in summary.get("source_warnings", []):
        err_console.print(escape(warning), highlight=False)
    guard = summary.get("self_training", {}).get("guard")
    if guard and guard["kept"] == "original":
        err_console.print(
            f"[yellow]the {summary['self_training']['method']} stage was undone: its label-free estimate "
            f"after ({guard['after']:.3f}) fell below the lower bound before ({guard['before']:.3f}; "
            "--reference models are not used for the stage), so model.pt is the network "
            "before it (train.self_training_guard=false keeps the stage)[/yellow]",
            highlight=False,
            soft_wrap=True,
        )
    ens = summary.get("self_training", {}).get("ensemble")
    if ens:
        members = ens.get("members") or ens.get("runs", [])  # "runs": summaries written before the plan
        out_console.print(
            f"self-trained on the mean predictions of {len(members)} networks (the others in "
            f"{out / 'members'}); "
            f"their agreement with that mean: "
            f"{', '.join(f'{a:.3f}' for a in ens['agreement_with_teacher'])}"
        )
    est = summary.get("estimated_target_accuracy")
    if est:
        bound = est.get("prior_bound")
        out_console.print(
            f"estimated target accuracy ({_limited(est)}, no target label read): "
            f"{est['value']:.3f}{_lower_text(est)}" + _bound_text(bound, est.get("label_shift"))
        )
        _uncertain(est["value"], est.get("lower_bound"))
        _warn(est, summary.get("classes"))
    if "report_only" in summary:
        r = summary["report_only"]
        shipped = ""
        if "target_test_acc_shipped" in r:
            stage = summary["self_training"]
            what = (
                f"(its {stage['method']} stage undone)"
                if stage.get("kept") == "original"
                else f"after {stage['method']}"
            )
            shipped = f", saved model {what} {r['target_test_acc_shipped']:.3f}"
        out_console.print(
            f"target test accuracy (report only, not used for selection): "
            f"selected {r['target_test_acc_selected']:.3f}, final {r['target_test_acc_final']:.3f}"
            f"{shipped}"
        )


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="model.pt bundle."),
    data: Path = typer.Argument(..., help="Labelled folder (DIR/<class>/**) or CSV manifest."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the metrics as JSON."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write the confusion matrix as PNG."),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows per forward pass."),
    reference: Optional[list[Path]] = ReferenceOpt,
    label_shift: bool = LabelShiftOpt,
    workers: Optional[int] = WorkersOpt,
    amp: str = AmpOpt,
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Accuracy (95% CI), macro-F1, per-class recall and confusion matrix on labelled audio."""
    with _guard():
        from .data.audio import AUDIO_EXTENSIONS
        from .data.scan import read_paths
        from .files import check_output_file
        from .infer.evaluate import evaluate as run_evaluate
        from .runtime import resolve_device

        given = read_paths([model, data, *(reference or [])])
        for path, option in ((json_out, "--json"), (plot, "--plot")):
            if path:
                check_output_file(path, option, inputs=given, audio_suffixes=AUDIO_EXTENSIONS)
        with _bar(quiet, "evaluate") as update:
            report = run_evaluate(
                model,
                data,
                batch_size=batch_size,
                workers=workers,
                device=resolve_device(device),
                amp=amp,
                reference=reference,
                label_shift=label_shift,
                progress=update,
            )
        lo, hi = report["accuracy_ci95"]
        out_console.print(
            f"accuracy {report['accuracy']:.4f} (95% CI {lo:.3f}-{hi:.3f}, n={report['n']}), "
            f"macro-F1 {report['macro_f1']:.4f}"
        )
        table = Table("class", "recall", "support")
        for c, v in report["per_class"].items():
            table.add_row(c, "-" if v["recall"] is None else f"{v['recall']:.3f}", str(v["support"]))
        out_console.print(table)
        for d, v in report.get("per_domain", {}).items():
            out_console.print(f"  domain {d}: accuracy {v['accuracy']:.4f} (n={v['n']})")
        est = report.get("estimated_accuracy")
        if est:
            out_console.print(
                f"label-free estimate ({_limited(est)}) of window accuracy: {est['value']:.3f}{_lower_text(est)}"
                f"{_bound_text(est.get('prior_bound'), est.get('label_shift'))}; "
                f"measured with the labels: {est['window_accuracy']:.3f} ({est['windows']} windows)"
            )
            _warn(est, report["classes"])
        if report["skipped"]:
            out_console.print(
                escape(
                    f"{len(report['skipped'])} files skipped, e.g. {report['skipped'][0]['file']}: "
                    f"{report['skipped'][0]['reason']}"
                ),
                highlight=False,
                soft_wrap=True,
            )
        if json_out:
            from .files import write_json

            write_json(json_out, report)
        if plot:
            from .report.plots import plot_confusion

            plot_confusion(report["confusion"], report["classes"], plot, title=f"{model}")


@app.command()
def predict(
    model: Path = typer.Argument(..., help="model.pt bundle."),
    wav_dir: Path = typer.Argument(..., help="Folder of audio files (recursive) or one file."),
    out: str = typer.Option(..., "--out", "-o", help="predictions.csv (or .jsonl)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows per forward pass."),
    workers: Optional[int] = WorkersOpt,
    amp: str = AmpOpt,
    window_seconds: Optional[float] = typer.Option(
        None, "--window-seconds", help="Window length (default: the model's clip length)."
    ),
    hop_seconds: Optional[float] = typer.Option(None, "--hop-seconds", help="Hop between windows of long files."),
    per_window: bool = _flag("--per-window", help="One row per window (begin_s, end_s) instead of per file."),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        help="csv | jsonl | raven (one Raven Pro selection table) | audacity (--out is a folder of label files). "
        "Default: jsonl for an --out ending in .jsonl, else csv.",
    ),
    min_confidence: float = typer.Option(0.0, "--min-confidence", help="Keep windows whose top class reaches this."),
    all_classes: bool = _flag("--all-classes", help="With --min-confidence: every class that reaches it."),
    merge: bool = _flag("--merge", help="Join consecutive windows of one class into one event."),
    plot: Optional[str] = typer.Option(None, "--plot", help="PNG: the first file's spectrogram with its detections."),
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Classify every audio file of a folder; unreadable files get an error row, the rest go on.

    Rerunning the same command after a crash or Ctrl-C finishes the files not done yet."""
    with _guard():
        from .infer.predict import predict as run_predict
        from .runtime import resolve_device

        if plot:
            from .data.audio import AUDIO_EXTENSIONS
            from .files import check_output_file

            check_output_file(plot, "--plot", inputs=[model, wav_dir, out], audio_suffixes=AUDIO_EXTENSIONS)
        with _bar(quiet, "predict") as update:
            counts = run_predict(
                model,
                wav_dir,
                out,
                batch_size=batch_size,
                workers=workers,
                window_seconds=window_seconds,
                hop_seconds=hop_seconds,
                per_window=per_window,
                fmt=fmt,
                min_confidence=min_confidence,
                all_classes=all_classes,
                merge=merge,
                device=resolve_device(device),
                amp=amp,
                progress=update,
            )
        if counts.get("restarted_because"):
            out_console.print(f"started afresh: {counts['restarted_because']}")
        hours, spent = counts["audio_seconds"] / 3600, counts["seconds"]
        resumed = f"; {counts['resumed']} files taken from the interrupted run" if counts.get("resumed") else ""
        out_console.print(
            f"{counts['ok']} files predicted, {counts['errors']} unreadable; {hours:.2f} h of audio in "
            f"{spent:.1f} s (real-time factor {counts['audio_seconds'] / max(spent, 1e-9):.0f}){resumed}"
            f" -> {out}"
        )
        for path, reason in counts.get("unreadable", [])[:5]:
            err_console.print(f"[red]{escape(str(path))}: {escape(str(reason))}[/red]", highlight=False, soft_wrap=True)
        if len(counts.get("unreadable", [])) > 5:
            err_console.print(f"... and {len(counts['unreadable']) - 5} more unreadable files", highlight=False)
        for path in counts.get("left_as_they_were", []):
            err_console.print(
                f"[yellow]{escape(path)}: exists and was not written by audio-dann; left as it is (its labels "
                "not written)[/yellow]",
                highlight=False,
                soft_wrap=True,
            )
        if plot:
            from .report.plots import plot_detections

            plot_detections(model, wav_dir, out, counts.get("format") or fmt or "csv", plot)
            out_console.print(f"detections plotted -> {plot}")


@app.command()
def adapt(
    model: Path = typer.Argument(..., help="model.pt bundle (source-only or DANN) to adapt."),
    target: list[Path] = typer.Argument(..., help="Unlabelled target folder(s) or manifest(s)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write (model.pt, summary.json)."),
    method: str = typer.Option(
        "latent-bn",
        "--method",
        "-m",
        help="latent-bn (per-condition batch-norm statistics, then self-training) | shot-file | shot | tent | adabn",
    ),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the target clips (trained methods)."),
    lr: float = typer.Option(0.005, "--lr", help="Learning rate (SGD; TENT uses Adam at lr/5)."),
    threshold: float = typer.Option(
        0.0,
        "--threshold",
        help="shot-file, latent-bn: pseudo-label only windows whose smoothed probability reaches this.",
    ),
    seed: int = typer.Option(0, "--seed"),
    max_clips: int = typer.Option(20000, "--max-clips", help="At most this many target windows (a seeded choice)."),
    no_guard: bool = _flag(
        "--no-guard",
        help="Keep the adapted model even when its estimate falls below the original's lower bound.",
    ),
    reference: Optional[list[Path]] = ReferenceOpt,
    label_shift: bool = LabelShiftOpt,
    workers: Optional[int] = WorkersOpt,
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Adapt a trained model with unlabelled target audio alone (no source data needed)."""
    with _guard():
        from .adaptation.adapt import adapt as run_adapt
        from .adaptation.methods import AdaptConfig

        for name, value, ok in (
            ("--epochs", epochs, epochs >= 1),
            ("--max-clips", max_clips, max_clips >= 1),
            ("--lr", lr, 0 < lr < float("inf")),
            ("--threshold", threshold, 0 <= threshold <= 1),
        ):
            if not ok:
                raise OptionError(
                    f"{name} {value}: out of range (--epochs and --max-clips >= 1, --lr a finite "
                    "number > 0, --threshold in [0, 1])"
                )
        with _bar(quiet, "adapt", unit="") as update:  # files decoded, then epochs of the trained methods
            config = AdaptConfig(epochs=epochs, lr=lr, threshold=threshold, seed=seed)
            s = run_adapt(
                model,
                target,
                out,
                method=method,
                config=config,
                guard=not no_guard,
                reference=reference,
                label_shift=label_shift,
                max_clips=max_clips,
                workers=workers,
                device=device,
                progress=lambda done, total: update(done, total, "files decoded"),
                on_epoch=lambda done, total: update(done, total, f"{method} epochs"),
            )
        _print_adapt_summary(s, model, method, no_guard)


def _print_adapt_summary(s: dict, model: Path, method: str, no_guard: bool) -> None:
    """What `adapt` prints once the adapted bundle is written."""
    for skip in s.get("skipped", [])[:5]:
        err_console.print(f"[red]{escape(skip['file'])}: {escape(skip['reason'])}[/red] (skipped)", highlight=False)
    if len(s.get("skipped", [])) > 5:
        err_console.print(f"... and {len(s['skipped']) - 5} more unreadable files skipped", highlight=False)
    e = s["estimated_accuracy"]
    if e["before"] is not None:
        by = e.get("limited_by", {})
        low = e.get("lower_bound") or {}
        lows = {k: f", lower bound {low[k]:.3f}" if low.get(k) is not None else "" for k in ("before", "after")}
        out_console.print(
            f"estimated target accuracy ({e['estimator']}, no target label read): "
            f"{e['before']:.3f} before (set by {by.get('before')}{lows['before']}), {e['after']:.3f} after "
            f"{method} (set by {by.get('after')}{lows['after']})"
            + (
                ""
                if no_guard
                else "; the guard keeps the adapted model unless its estimate falls below the lower bound before"
            )
            + (" (prior bound left out: --label-shift)" if e.get("label_shift") else "")
        )
        kept = "before" if s["kept"] == "original" else "after"
        _uncertain(e[kept], low.get(kept))
        if no_guard and e["dropped"]:
            err_console.print(
                "note: the estimate after adaptation fell below the original's lower bound; --no-guard kept "
                "the adapted model",
                highlight=False,
                soft_wrap=True,
            )
        _warn(e)
    else:
        out_console.print("no estimate: the bundle has no calibration and no --reference was given")
    if method in s["adapted_before"]:
        err_console.print(
            f"note: {model} had already been through {method} (its bundle's adaptation record, e.g. "
            "train's default stage); this adapted it again",
            highlight=False,
            soft_wrap=True,
        )
    verdict = (
        "kept the ORIGINAL model: adaptation is expected to hurt"
        if s["kept"] == "original"
        else "kept the adapted model"
    )
    out_console.print(f"{s['clips']} target windows from {s['files']} files; {verdict} -> {s['out']}")


@app.command()
def estimate(
    model: Path = typer.Argument(..., help="model.pt bundle."),
    target: list[Path] = typer.Argument(..., help="Unlabelled target folder(s) or manifest(s); labels are not read."),
    reference: Optional[list[Path]] = ReferenceOpt,
    label_shift: bool = LabelShiftOpt,
    max_clips: int = typer.Option(20000, "--max-clips", help="At most this many target windows (a seeded choice)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the estimate and every figure as JSON."),
    workers: Optional[int] = WorkersOpt,
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Estimate a model's accuracy on unlabelled target audio (no label read, nothing adapted)."""
    with _guard():
        from .adaptation.estimate import estimate_accuracy
        from .data.audio import AUDIO_EXTENSIONS
        from .data.scan import read_paths
        from .files import check_output_file, write_json

        if json_out:
            given = read_paths([model, *(reference or []), *target])
            check_output_file(json_out, "--json", inputs=given, audio_suffixes=AUDIO_EXTENSIONS)
        with _bar(quiet, "estimate") as update:
            e = estimate_accuracy(
                model,
                target,
                reference=reference,
                label_shift=label_shift,
                max_clips=max_clips,
                workers=workers,
                device=device,
                progress=update,
            )
        if json_out:
            write_json(json_out, e)
        noise = 1.96 * (e["value"] * (1 - e["value"]) / max(e["windows"], 1)) ** 0.5
        out_console.print(
            escape(
                f"estimated accuracy ({_limited(e)}): {e['value']:.3f} (+-{noise:.3f} from sampling "
                f"{e['windows']} windows alone){_lower_text(e)}"
                f"{_bound_text(e.get('prior_bound'), e.get('label_shift'))}"
                f"; {e['on']}"
            ),
            highlight=False,
            soft_wrap=True,
        )
        _uncertain(e["value"], e.get("lower_bound"))
        top = sorted(e["predicted_share"].items(), key=lambda kv: -kv[1])[:3]
        out_console.print(
            escape("most predicted: " + ", ".join(f"{c} {v:.0%}" for c, v in top)), highlight=False, soft_wrap=True
        )
        _warn(e, list(e["predicted_share"]))
        for s in e["skipped"][:5]:
            err_console.print(escape(f"skipped {s['file']}: {s['reason']}"), highlight=False, soft_wrap=True)
        if e["files_skipped"] > 5:
            err_console.print(
                f"... {e['files_skipped']} files skipped in all"
                + (f" (every one in {json_out})" if json_out else " (--json lists every one)"),
                highlight=False,
                soft_wrap=True,
            )


@app.command()
def export(
    model: Path = typer.Argument(..., help="model.pt bundle."),
    out: str = typer.Option(..., "--out", "-o", help="ONNX file to write."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (11-21)."),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", help="int8: onnxruntime dynamic quantization (top-1 agreement and speed-up are reported)."
    ),
    check: Optional[Path] = typer.Option(
        None, "--check", help="Folder of audio to check the export on (default: synthetic windows)."
    ),
    check_windows: int = typer.Option(64, "--check-windows", help="Windows to check on."),
) -> None:
    """Export to ONNX: raw mono waveforms -> class probabilities, log-mel frontend inside; checked against PyTorch."""
    with _guard():
        from .deploy.onnx_export import export as run_export

        if check_windows < 1:
            raise OptionError(f"--check-windows must be >= 1, got {check_windows}")
        r = run_export(model, out, opset=opset, quantize=quantize, check=check, check_windows_n=check_windows)
        out_console.print(
            f"checked on {r['windows']} windows ({r['checked_on']}): largest probability difference "
            f"from PyTorch {r['max_abs_prob_diff']:.1e} (limit {r['tolerance']:g}), top-1 agreement "
            f"{r['top1_agreement']:.3f}"
        )
        if "int8" in r:
            q = r["int8"]
            out_console.print(
                f"int8: top-1 agreement with float32 {q['top1_agreement_with_float32']:.3f}, largest "
                f"probability difference {q['max_abs_prob_diff']:.3f}, speed {q['speedup']:.2f}x float32 "
                f"on this machine, {q['int8_bytes'] / 1e6:.2f} MB vs {q['float32_bytes'] / 1e6:.2f} MB"
            )
        out_console.print(f"-> {out} ({r['bytes'] / 1e6:.2f} MB, opset {r['opset']})")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for data, runs and demo_results.json."),
    quick: bool = _flag("--quick", help="A seconds-long smoke version (tiny data, few steps)."),
    data_only: bool = _flag("--data-only", help="Only write the synthetic data (studio/, field/, field_test.csv)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Synthetic studio -> field shift: prepare, train source-only, DANN and the default; compare on the field."""
    with _guard():
        from .demo import run_demo

        with _bar(quiet, "demo", unit="steps") as update:
            results = run_demo(
                out,
                quick=quick,
                seed=seed,
                device=device,
                log=lambda m: err_console.print(m) if not quiet else None,
                progress=lambda name, s, t: update(s, t, name),
                data_only=data_only,
            )
        if data_only:
            out_console.print(
                f"synthetic data -> {out / 'data'}: studio/ (labelled), field/ (unlabelled), field_test.csv"
            )
            return
        table = Table(
            "method",
            "studio test acc",
            "field test acc (report only)",
            "95% CI",
            "train s",
            title="studio -> field (synthetic)",
        )
        for key, name in (
            ("source_only", "source-only"),
            ("dann", "DANN (--method dann)"),
            ("auto", "source-only + latent-bn (default, auto)"),
        ):
            r = results[key]
            lo, hi = r["target_accuracy_ci95"]
            table.add_row(
                name,
                f"{r['source_accuracy']:.3f}",
                f"{r['target_accuracy']:.3f}",
                f"{lo:.3f}-{hi:.3f}",
                f"{r['train_seconds']:.0f}",
            )
        out_console.print(table)
        out_console.print(
            f"DANN - source-only on field: {results['gain'] * 100:+.1f} points; default (auto) - "
            f"source-only: {results['gain_auto'] * 100:+.1f} points; {results['note']}; "
            f"results -> {out / 'demo_results.json'}"
        )


@app.command()
def manifest(
    root: Path = typer.Argument(..., help="Folder of audio files (searched recursively)."),
    pattern: str = typer.Option(
        ..., "--pattern", "-p", help='File-name pattern, e.g. "{label}_{speaker}_{index}.wav".'
    ),
    out: str = typer.Option(..., "--out", "-o", help="CSV manifest to write."),
    where: list[str] = typer.Option(
        None, "--where", help='Keep rows where e.g. "speaker in a,b" or "index>=5" (repeatable).'
    ),
    domain: Optional[str] = typer.Option(
        None, "--domain", help="Field naming the recording condition (domain column)."
    ),
    label: str = typer.Option("label", "--label", help="Field holding the class label."),
    val_where: Optional[str] = typer.Option(
        None, "--val-where", help='Mark matching rows split=val, the rest train, e.g. "index<5".'
    ),
) -> None:
    """Write a path,label,domain[,split] manifest from labels and domains held in file names."""
    with _guard():
        from .data.audio import AUDIO_EXTENSIONS
        from .data.manifest import build_manifest, write_manifest
        from .files import check_output_file

        check_output_file(out, inputs=[root], audio_suffixes=AUDIO_EXTENSIONS)
        rows, unmatched = build_manifest(root, pattern, where or [], domain, label, val_where)
        write_manifest(rows, out)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["domain"] or "-"] = counts.get(r["domain"] or "-", 0) + 1
        out_console.print(
            f"{len(rows)} files -> {out} ({len({r['label'] for r in rows})} labels; "
            f"domains: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
            f"{unmatched} files did not match the pattern"
        )


@app.command()
def report(
    run: Path = typer.Argument(..., help="A finished run folder."),
    prepared: Optional[Path] = typer.Option(
        None, "--prepared", help="Prepared folder (default: the one the run used)."
    ),
    tsne: bool = typer.Option(True, "--tsne/--no-tsne", help="Also t-SNE maps (slower).", metavar=" "),
) -> None:
    """Write RUN/report.md: curves, embedding maps before/after, A-distance, confusion, selection table."""
    with _guard():
        from .report.run_report import make_report

        out_console.print(f"report -> {make_report(run, prepared, tsne=tsne)}")


@app.command()
def select(
    runs: list[Path] = typer.Argument(..., help="Finished run folders to rank."),
    criterion: str = typer.Option("dev", "--criterion", help="source-val | dev | snd | rv"),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the table as JSON."),
) -> None:
    """Rank finished runs by a label-free criterion (target accuracy shown as report only)."""
    with _guard():
        from .report.ranking import rank_runs
        from .training.criteria import CRITERIA

        if criterion not in CRITERIA:
            raise OptionError(f"--criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        if json_out:
            from .files import check_output_file

            check_output_file(json_out, "--json", inputs=runs)
        result = rank_runs(runs, criterion)
        keys = list(CRITERIA)
        table = Table("rank", "run", *keys, "target test acc (report only)", title=f"ranked by {criterion}")
        for i, r in enumerate(result["runs"], start=1):
            table.add_row(
                str(i),
                r["run"],
                *[("-" if r[k] is None else f"{r[k]:.4f}") for k in keys],
                "-" if r["target_test_acc"] is None else f"{r['target_test_acc']:.4f}",
            )
        out_console.print(table)
        if result.get("spearman") is not None:
            out_console.print(
                f"Spearman rank correlation of {criterion} (higher = better) with target test accuracy "
                f"(report only): {result['spearman']:+.3f}; the pick leaves "
                f"{result['regret']:.4f} accuracy on the table vs the best-on-target run"
            )
        out_console.print("Selection used no target labels; target accuracy is shown for reporting only.")
        if json_out:
            from .files import write_json

            write_json(json_out, result)


def _terminate(signum, _frame) -> None:
    err_console.print("terminated; run the same command again (with --resume for train) to continue")
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: temp files removed, locks released


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(prog_name="audio-dann", standalone_mode=False)
    except Exception as exc:  # the parser's own errors (unknown option, missing argument): one line, exit 2
        if type(exc).__name__ == "Abort":  # Ctrl-C outside a command's own handling
            err_console.print("interrupted")
            raise SystemExit(130) from None
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        message = exc.format_message()
        if message:  # an empty one: the help was shown (a command given no arguments)
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "audio-dann"
            err_console.print(
                f"[red]error:[/red] {escape(message)} (see {where} --help)", highlight=False, soft_wrap=True
            )
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
