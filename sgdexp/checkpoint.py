"""Checkpoints: tensors and plain values only, written atomically, read with `weights_only=True`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

LAST = Path("checkpoints") / "last.pt"


def compact(state: Any) -> Any:
    """`state` with every tensor that is a view into a larger storage copied out of it: `torch.save`
    writes a tensor's whole storage, so a row of an analysis' buffer (diffusion's last record is a
    row of its 65-row block) would put the whole buffer into every checkpoint (1.4 MB where 0.3 MB
    is the state, for the default diffusion analysis)."""
    if isinstance(state, torch.Tensor):
        if state.untyped_storage().nbytes() > state.numel() * state.element_size():
            return state.clone(memory_format=torch.contiguous_format)
        return state
    if isinstance(state, dict):
        return {k: compact(v) for k, v in state.items()}
    if isinstance(state, list):
        return [compact(v) for v in state]
    if type(state) is tuple:
        return tuple(compact(v) for v in state)
    return state


def save_checkpoint(out_dir: Path, state: Dict[str, Any]) -> Path:
    path = Path(out_dir) / LAST
    state = compact(state)
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
