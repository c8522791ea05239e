"""Command-line mistakes Hydra answers with a screenful, answered here in one line.

- an unknown key (`optimizer.lrr=0.1`): the closest existing keys (difflib), or the group member the
  key belongs to when it exists only there (`noise.hurst` without `noise=gd_fbm`);
- a value Hydra cannot merge (`trainer.steps=abc`): the key, the value and the reason;
- `hydra/launcher=submitit_slurm` on a machine without SLURM: said before a sweep directory is made;
- a value out of range in any job of a sweep (`optimizer.lr=0.1,-1`): said before the first job runs.
"""
from __future__ import annotations

import difflib
import re
import shutil
from typing import Dict, List, Optional, Sequence, Set

from omegaconf import DictConfig, OmegaConf, open_dict

SLURM_LAUNCHERS = ("submitit_slurm",)


def check_launcher(argv: Sequence[str]) -> Optional[str]:
    """The one-line error for a SLURM launcher where SLURM's commands are missing, else None.
    submitit needs `srun` and `sbatch` and otherwise fails after Hydra made the sweep directory."""
    for arg in argv:
        match = re.fullmatch(r"hydra/launcher=(\w+)", arg)
        if match and match[1].startswith("submitit"):
            from importlib.util import find_spec

            if find_spec("hydra_plugins.hydra_submitit_launcher") is None:
                return (f"hydra/launcher={match[1]} is not allowed: the submitit launcher is an optional extra "
                        f"(pip install 'sgdexp[slurm]')")
        if match and match[1] in SLURM_LAUNCHERS:
            missing = [cmd for cmd in ("srun", "sbatch") if shutil.which(cmd) is None]
            if missing:
                return (f"hydra/launcher={match[1]} is not allowed: SLURM is not available here "
                        f"({', '.join(missing)} not found on PATH); use hydra/launcher=submitit_local or joblib "
                        f"on this machine")
    return None


def unmakeable_dir(path) -> Optional[str]:
    """Why no directory can be made or written at `path` (a file in its place or above it, a folder
    not writable, one that cannot be made), else None."""
    import os
    from pathlib import Path

    chain = [Path(path), *Path(path).parents]
    i = next((i for i, p in enumerate(chain) if p.exists()), None)
    if i is None:
        return None
    first = chain[i]
    if not first.is_dir():
        return "it is a file" if i == 0 else f"{first} is a file"
    if i == 0:
        return None if os.access(first, os.W_OK | os.X_OK) else f"{first} is not writable"
    try:  # the first folder to make, made and removed at once: a check that also holds for root and /proc
        chain[i - 1].mkdir()
        chain[i - 1].rmdir()
    except OSError as err:
        return f"cannot make {chain[i - 1]}: {err.strerror}"
    return None


def check_output_dirs(argv: Sequence[str]) -> Optional[str]:
    """The one-line error for `hydra.run.dir`/`hydra.sweep.dir` where no directory can be made, else
    None: Hydra's own mkdir fails with a traceback."""
    from pathlib import Path

    for arg in argv:
        match = re.fullmatch(r"(hydra\.(?:run|sweep)\.dir)=(.+)", arg)
        if match and "${" not in match[2]:
            why = unmakeable_dir(Path(match[2].strip("'\"")).expanduser())
            if why:
                return f"{match[1]}={match[2]} is not allowed: a directory sgdexp can make or write ({why})"
    return None


def check_every_job_first() -> None:
    """Make a sweep check every job's ranges and choices (`sgdexp.config.validate`) before its first job
    runs: a job checks only its own, so `optimizer.lr=0.1,-1` would train job #0 before job #1 stopped
    the sweep. Hydra's sweepers compose every job's config of a batch before launching it
    (`Sweeper.validate_batch_is_legal`, which catches composition errors early); this validates each
    config there too, and a bad one stops the sweep as a composition error does (one line, and the
    sweep directory removed). Checks that need the data or the model (a batch larger than the
    dataset) still run in each job."""
    from hydra.errors import ConfigCompositionException
    from hydra.plugins.sweeper import Sweeper

    from sgdexp.config import validate
    from sgdexp.errors import ConfigError

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        # Hydra's own body (hydra/plugins/sweeper.py), with the validation of each composed config
        context = getattr(self, "hydra_context", None)
        loader = context.config_loader if context is not None else self.config_loader
        first = (getattr(self, "batch_index", 1) - 1) * (getattr(self, "max_batch_size", None) or 0)
        for i, overrides in enumerate(batch):
            cfg = loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
            with open_dict(cfg):
                cfg.pop("hydra", None)  # the job's task function sees the config without it
            try:
                validate(cfg)
            except ConfigError as err:
                raise ConfigCompositionException(f"{err} (sweep job #{first + i})") from None

    Sweeper.validate_batch_is_legal = validate_batch_is_legal


def _flat_keys(node, prefix: str = "") -> Set[str]:
    keys: Set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(f"{prefix}{key}")
            keys |= _flat_keys(value, f"{prefix}{key}.")
    return keys


def member_keys(conf_dir, group: str) -> Dict[str, Set[str]]:
    """{member: its dotted keys under `group`}: the member's YAML keys and its schema's fields."""
    from sgdexp.config import SCHEMAS

    members: Dict[str, Set[str]] = {}
    for path in sorted((conf_dir / group).glob("*.yaml")):
        raw = OmegaConf.to_container(OmegaConf.load(path)) or {}
        keys = _flat_keys({k: v for k, v in raw.items() if k != "defaults"})
        for entry in raw.get("defaults", []) or []:
            match = re.fullmatch(rf"/schema/{group}/(\w+)@(\w+)", str(entry))
            if match and match[1] in SCHEMAS.get(group, {}):
                schema = OmegaConf.to_container(OmegaConf.structured(SCHEMAS[group][match[1]]))
                keys |= _flat_keys(schema, "" if match[2] == "_here_" else f"{match[2]}.")
        members[path.stem] = {f"{group}.{k}" for k in keys}
    return members


def unknown_key_line(key: str, value: str, cfg: DictConfig, conf_dir) -> str:
    """`key` is not in the composed `cfg`: say where it exists, or what is close to it."""
    group = key.split(".")[0]
    if (conf_dir / group).is_dir():
        owners = [m for m, keys in member_keys(conf_dir, group).items() if key in keys]
        if owners:
            chosen = cfg.get(group, {})
            chosen_name = chosen.get("name") if isinstance(chosen, DictConfig) and group != "analysis" else None
            choice = (f"{group}=[{','.join(owners)}]" if group == "analysis"
                      else " or ".join(f"{group}={m}" for m in owners))
            if chosen_name in owners:  # the key is there without the sweep: a swept member lacks it
                return (f"{key}={value} is not allowed: {key} belongs to {choice}, and this sweep also runs "
                        f"another {group} (swept on the command line or by the preset); add {group}={chosen_name} "
                        f"to run that one only, or leave {key} out")
            now = f" (this run has {group}={chosen_name})" if chosen_name else ""
            return f"{key}={value} is not allowed: {key} belongs to {choice}{now}; choose it first"
    known = {k for k in _flat_keys(OmegaConf.to_container(cfg)) if k.count(".") == key.count(".")}
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.8)
    hint = f"did you mean {' or '.join(close)}?" if close else f"no key of that name (see `python -m sgdexp --cfg job`)"
    return f"{key}={value} is not allowed: {hint}"


def composition_error_line(err: Exception, argv: Sequence[str], conf_dir) -> str:
    """One line for Hydra's composition errors (unknown key, unmergeable value, anything else)."""
    text = str(err)
    cause = str(err.__cause__ or "").strip().splitlines()
    match = re.match(r"Could not override '([^']+)'", text)
    if match:
        from sgdexp.errors import shown

        key = match[1]
        value = shown(key, next((a.split("=", 1)[1] for a in argv if a.split("=", 1)[0] == key), ""))
        try:
            from sgdexp.config import compose_config

            rest = [a for a in argv if a.split("=", 1)[0] != key and not a.startswith(("hydra", "-"))
                    and "," not in a.split("=", 1)[-1]]
            cfg = compose_config(rest)
        except Exception:  # noqa: BLE001 - another mistake in the rest: name this one plainly
            return f"{key}={value} is not allowed: no key of that name"
        return unknown_key_line(key, value, cfg, conf_dir)
    match = re.match(r"Error merging override (\S+?)=(.*)", text)
    if match:
        from sgdexp.errors import shown

        reason = cause[0] if cause else "a value of the key's type"
        return f"{match[1]}={shown(match[1], match[2])!r} is not allowed: {reason}"
    lines: List[str] = [line.strip() for line in text.splitlines() + cause if line.strip()]
    return " ".join(lines[:3])
