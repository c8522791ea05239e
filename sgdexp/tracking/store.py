"""The local store: every run's metrics live in its output directory, W&B or not."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List

METRICS = "metrics.jsonl"
ARRAYS = "arrays.jsonl"
SUMMARY = "summary.json"


def jsonable(value: Any) -> Any:
    """Plain JSON: numbers as floats or ints, non-finite numbers as null, tensors as lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json_atomic(path: Path, obj: Dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class MetricsStore:
    """`metrics.jsonl` (scalars: one object per logged step, with `step`), `arrays.jsonl`
    (analyses' per-coordinate values and curves, with `step`) and `summary.json`."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.summary_path = self.out_dir / SUMMARY
        self._files: Dict[str, Any] = {}
        self._flushed = time.monotonic()

    def open(self, resume_step: int | None) -> None:
        """Start appending; on resume, first drop rows logged after the checkpoint being resumed."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in (METRICS, ARRAYS):
            path = self.out_dir / name
            if resume_step is not None and path.exists():
                kept = [r for r in read_metrics(path) if r["step"] <= resume_step]
                tmp = path.with_suffix(path.suffix + ".tmp")
                with open(tmp, "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in kept)
                os.replace(tmp, path)  # a kill while dropping rows must not lose the ones kept
            elif path.exists():
                path.unlink()
            self._files[name] = open(path, "a")

    def _append(self, name: str, row: Dict[str, Any]) -> None:
        self._files[name].write(json.dumps(jsonable(row)) + "\n")
        # Flushed at most once a second (a flush per row is a system call on the hot path); a killed
        # run loses at most that, and a resumed run recomputes everything after its checkpoint anyway.
        if time.monotonic() - self._flushed > 1.0:
            self.flush()

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()
        self._flushed = time.monotonic()

    def log(self, row: Dict[str, Any]) -> None:
        self._append(METRICS, row)

    def log_arrays(self, step: int, arrays: Dict[str, Any]) -> None:
        self._append(ARRAYS, {"step": step, **arrays})

    def write_summary(self, summary: Dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}


def read_metrics(path: Path) -> List[Dict[str, Any]]:
    """All rows of a `metrics.jsonl` (a torn last line from a killed run is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
