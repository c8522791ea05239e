"""Checkpoints: tensors and plain values only, written atomically, read with `weights_only=True`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

LAST = Path("checkpoints") / "last.pt"


def save_checkpoint(out_dir: Path, state: Dict[str, Any]) -> Path:
    path = Path(out_dir) / LAST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(state, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half file beside the intact last one
        raise
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact
    return path


def load_checkpoint(out_dir: Path, map_location: Optional[torch.device] = None) -> Optional[Dict[str, Any]]:
    path = Path(out_dir) / LAST
    if not path.exists():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)
