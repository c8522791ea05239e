"""Where measurements go: the run's output directory (metrics.jsonl, summary.json) and W&B."""
from sgdexp.tracking.store import ARRAYS, METRICS, SUMMARY, MetricsStore, read_metrics
from sgdexp.tracking.tracker import Tracker

__all__ = ["ARRAYS", "METRICS", "SUMMARY", "MetricsStore", "Tracker", "read_metrics"]
