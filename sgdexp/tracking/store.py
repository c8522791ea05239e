"""The local store: every run's metrics live in its output directory, W&B or not."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List

METRICS = "metrics.jsonl"
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
    """`metrics.jsonl` (one object per logged step, with `step`) and `summary.json`."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.metrics_path = self.out_dir / METRICS
        self.summary_path = self.out_dir / SUMMARY

    def open(self, resume_step: int | None) -> None:
        """Start appending; on resume, first drop rows logged after the checkpoint being resumed."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.metrics_path.exists():
            kept = [r for r in read_metrics(self.metrics_path) if r["step"] <= resume_step]
            with open(self.metrics_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
        elif self.metrics_path.exists():
            self.metrics_path.unlink()
        self._file = open(self.metrics_path, "a")

    def log(self, row: Dict[str, Any]) -> None:
        self._file.write(json.dumps(jsonable(row)) + "\n")
        self._file.flush()

    def write_summary(self, summary: Dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None


def read_metrics(path: Path) -> List[Dict[str, Any]]:
    """All rows of a `metrics.jsonl` (a torn last line from a killed run is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
