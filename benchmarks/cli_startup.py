"""How long a user waits for ``audio-dann --help`` (and each ``COMMAND --help``), next to ``import torch``.

    python benchmarks/cli_startup.py [--repeats 5]

Each command runs as a fresh process, alternating with the reference so machine load hits both
alike; medians are printed with their ratio. The CLI imports nothing heavy until a command runs,
so its help should take well under half of what ``import torch`` takes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = ["prepare", "train", "evaluate", "predict", "demo", "manifest", "report", "select"]


def _seconds(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    exe = shutil.which("audio-dann")
    cli = [exe] if exe else [sys.executable, "-m", "audio_dann.cli"]
    torch_cmd = [sys.executable, "-c", "import torch"]
    _seconds(torch_cmd), _seconds(cli + ["--help"])  # warm the file cache
    ref, top = [], []
    per_command = {c: [] for c in COMMANDS}
    for _ in range(args.repeats):
        ref.append(_seconds(torch_cmd))
        top.append(_seconds(cli + ["--help"]))
        for c in COMMANDS:
            per_command[c].append(_seconds(cli + [c, "--help"]))
    t_ref = statistics.median(ref)
    print(f"python -c 'import torch'      {t_ref:6.3f} s (median of {args.repeats})")
    print(f"audio-dann --help             {statistics.median(top):6.3f} s   ratio {statistics.median(top) / t_ref:.2f}")
    for c, times in per_command.items():
        t = statistics.median(times)
        print(f"audio-dann {c + ' --help':<18} {t:6.3f} s   ratio {t / t_ref:.2f}")


if __name__ == "__main__":
    main()
