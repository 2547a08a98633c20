"""Manifests from file names: ``{label}_{speaker}_{index}.wav`` -> ``path,label,domain,split`` CSV.

For any dataset whose labels and recording conditions live in file names.
``--where`` filters keep rows (``speaker in a,b``, ``index>=5``, ``device!=a``);
``--domain FIELD`` makes a field the domain column; ``--val-where COND`` marks
matching rows ``val`` and the rest ``train``.
"""

from __future__ import annotations

import csv
import operator
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ManifestError, ScanError
from ..files import atomic_path
from .scan import find_audio

__all__ = ["compile_pattern", "parse_condition", "build_manifest", "write_manifest"]


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "==": operator.eq,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}


def compile_pattern(pattern: str) -> tuple[re.Pattern, list[str]]:
    """``"{label}_{speaker}_{index}.wav"`` -> a regex over paths relative to the root, and its fields."""
    fields, parts, pos = [], [], 0
    for m in _FIELD.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        name = m.group(1)
        if name in fields:
            raise ManifestError(f"--pattern {pattern!r}: field {{{name}}} appears twice")
        fields.append(name)
        parts.append(f"(?P<{name}>[^/]+?)")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    if not fields:
        raise ManifestError(f"--pattern {pattern!r}: no {{field}} in it")
    return re.compile("".join(parts) + r"\Z"), fields


def _value(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def parse_condition(text: str, fields: Sequence[str]) -> Callable[[dict[str, str]], bool]:
    """``"speaker in a,b"``, ``"speaker not in a"``, ``"index>=5"``, ``"device==a"`` -> a predicate."""
    m = re.fullmatch(r"\s*(\w+)\s+(not\s+in|in)\s+(.+?)\s*", text)
    if m:
        field, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        negate = op.startswith("not")
        check = lambda row: (row[field] in values) != negate  # noqa: E731
    else:
        m = re.fullmatch(r"\s*(\w+)\s*(>=|<=|!=|==|=|>|<)\s*(.+?)\s*", text)
        if not m:
            raise ManifestError(f"condition {text!r}: expected 'FIELD in a,b', 'FIELD not in a,b' or 'FIELD>=N'")
        field, op, raw = m.group(1), _OPS[m.group(2)], m.group(3)
        target = _value(raw)

        def check(row):
            have = _value(row[field])
            if isinstance(have, float) != isinstance(target, float):
                have, want = str(row[field]), raw
            else:
                want = target
            return op(have, want)

    if field not in fields:
        raise ManifestError(f"condition {text!r}: unknown field {field!r} (pattern has {', '.join(fields)})")
    return check


def build_manifest(
    root: str | Path,
    pattern: str,
    where: Sequence[str] = (),
    domain: str | None = None,
    label: str = "label",
    val_where: str | None = None,
) -> tuple[list[dict[str, str]], int]:
    """Rows ``path,label,domain[,split],<fields>`` for matching files; returns ``(rows, n_unmatched)``."""
    root = Path(root)
    if not root.is_dir():
        raise ScanError(f"{root}: no such folder")
    regex, fields = compile_pattern(pattern)
    for name, what in ((label, "--label"), (domain, "--domain")):
        if name is not None and name not in fields:
            raise ManifestError(f"{what} {name!r}: not a field of --pattern {pattern!r}")
    keep = [parse_condition(w, fields) for w in where]
    is_val = parse_condition(val_where, fields) if val_where else None
    rows, unmatched = [], 0
    for path in find_audio(root):
        rel = path.relative_to(root).as_posix()
        m = regex.fullmatch(rel) or regex.fullmatch(path.name)
        if not m:
            unmatched += 1
            continue
        values = m.groupdict()
        if not all(k(values) for k in keep):
            continue
        row = {"path": str(path.resolve()), "label": values[label], "domain": values[domain] if domain else ""}
        if is_val is not None:
            row["split"] = "val" if is_val(values) else "train"
        row.update({f: values[f] for f in fields if f not in ("path", "label", "domain", "split")})
        rows.append(row)
    return rows, unmatched


def write_manifest(rows: list[dict[str, str]], out: str | Path) -> None:
    if not rows:
        raise ManifestError(f"{out}: no file matched the pattern and conditions; nothing written")
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
