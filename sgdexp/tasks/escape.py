"""`task=escape`: first-passage times out of a minimum θ* for R replicas of a noise mode.

θ* is a finished `task=train` run (`task.init_from`), `task.pretrain_steps` of GD run first in this
run directory (under `pretrain/`, by the training task itself), or a landscape's known minimum.
Replicas run batched (`sgdexp.replicas`) in chunks of `task.replica_chunk`; each replica's first
step meeting `task.criterion` (checked every `task.check_every` steps, on the device, without a
host sync) is its escape step; replicas still inside at `task.max_steps` are censored. Outputs:
`escape.csv`, summary.json (`escape/*`, `sharpness/*`), W&B summary, table and survival plot.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sgdexp.checkpoint import LAST, load_checkpoint, save_checkpoint
from sgdexp.errors import ConfigError
from sgdexp.models import model_key
from sgdexp.models.landscapes import Landscape, build_landscape
from sgdexp.optim import build_optimizer
from sgdexp.replicas import LandscapeObjective, NetworkObjective, ReplicaNoise, StackedObjective
from sgdexp.rundir import config_differences, difference, load_checkpoint_checked, read_checkpoint_config
from sgdexp.schedules import constant_lr, lr_factor_fn
from sgdexp.seeding import derive_seed
from sgdexp.tasks import TASKS
from sgdexp.tasks.setup import Setup, build_setup, resolve_device
from sgdexp.tracking import Tracker

log = logging.getLogger(__name__)

ESCAPE_CSV = "escape.csv"
NO_SAMPLE_MODES = ("sgd", "gd_sgdcov")


# ----------------------------------------------------------------------------- θ*
def _checkpoint_path(init_from: str) -> Path:
    path = Path(init_from).expanduser()
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise ConfigError("task.init_from", init_from, "a task=train run directory (with checkpoints/last.pt) or a checkpoint file that exists")
    return path


def load_minimum(cfg: DictConfig, setup: Setup) -> None:
    """Load θ* from `task.init_from` into `setup.model`: a run of another model or dataset is a
    ConfigError (its config is read first), the tensors then go through the shape check every
    checkpoint load shares (`sgdexp.rundir.load_checkpoint_checked`, weights_only)."""
    path = _checkpoint_path(cfg.task.init_from)
    try:
        saved, _ = read_checkpoint_config(path)
    except Exception as err:  # a file that is not a checkpoint
        raise ConfigError("task.init_from", cfg.task.init_from, f"a checkpoint written by sgdexp ({type(err).__name__})") from None
    for group in ("model", "dataset"):
        ours = OmegaConf.to_container(cfg[group], resolve=True)
        theirs = saved.get(group) or {}
        if theirs != ours:
            differ = (f"has {group}={theirs.get('name', '?')}, not {group}={ours.get('name')}"
                      if theirs.get("name") != ours.get("name") else "differs in " + "; ".join(
                          difference(*d, "there", "here") for d in config_differences({group: ours}, {group: theirs})))
            raise ConfigError("task.init_from", cfg.task.init_from, f"a run with the same {group} as configured; "
                                                                    f"this one {differ}")
    load_checkpoint_checked(path, setup.model, key="task.init_from", map_location=setup.device)


def pretrain_config(cfg: DictConfig) -> Dict[str, Any]:
    """The training run that descends to θ*: `task.pretrain_steps` of full-batch GD at
    `task.pretrain_lr`, everything else (model, data, seed, optimizer) the job's. Nothing of the job's
    noise mode or escape settings is in it, so the jobs of one minimum have the same one."""
    pre = OmegaConf.to_container(cfg, resolve=True)
    pre["task"] = {"name": "train"}
    # GD uses no batches: a fixed batch_size keeps the jobs of a sweep over B on one pretraining
    pre["noise"] = {"name": "gd", "batch_size": 1, "sampler": "epoch"}
    pre["analysis"] = {}
    pre["logger"] = {"name": "none"}
    pre["trainer"].update(steps=cfg.task.pretrain_steps, resume=True, lr_schedule="constant", warmup_steps=0,
                          checkpoint_every=0)
    if cfg.task.pretrain_lr is not None:  # GD settles where λ_max < 2/η: the pretraining lr picks the minimum's sharpness
        pre["optimizer"]["lr"] = cfg.task.pretrain_lr
    return pre


def shared_pretrain_dir(cfg: DictConfig, pre: Dict[str, Any]) -> Optional[Path]:
    """`<sweep dir>/.pretrain/<key>` in a multirun with `task.share_pretrain` (key: a hash of the
    pretraining's config), else None (the job pretrains in its own `pretrain/`). Report readers skip
    hidden folders, so a shared pretraining is not taken for a job."""
    from sgdexp.app import sweep_dir

    root = sweep_dir() if cfg.task.share_pretrain else None
    if root is None:
        return None
    text = json.dumps(pre, sort_keys=True, default=str)
    return root / ".pretrain" / hashlib.sha256(text.encode()).hexdigest()[:12]


def pretrain(cfg: DictConfig, out_dir: Path, group: Optional[str]) -> Setup:
    """`task.pretrain_steps` of full-batch GD by the training task (resumed there if killed): the
    returned setup holds θ*. In its own `out_dir/pretrain`, or in a multirun once for all the jobs
    that share it (`shared_pretrain_dir`): the first job to take the folder's lock runs it, the
    others wait on the lock and then load its θ* (a killed job releases the lock, and the next one
    runs the pretraining again: it checkpoints at its end only)."""
    from sgdexp.tasks.train import Training

    pre = pretrain_config(cfg)
    shared = shared_pretrain_dir(cfg, pre)
    directory = shared or out_dir / "pretrain"
    lock = None
    if shared is not None:
        shared.parent.mkdir(parents=True, exist_ok=True)
        lock = open(shared.parent / f"{shared.name}.lock", "a")
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another job of this minimum pretrains
    try:
        summary_file = directory / "summary.json"
        status = json.loads(summary_file.read_text()).get("status") if summary_file.exists() else None
        if status == "completed" and shared is not None:  # pretrained by another job of the sweep: load θ*
            setup = build_setup(OmegaConf.create(pre))
            load_checkpoint_checked(directory / LAST, setup.model, key="task.pretrain_steps", map_location=setup.device)
            log.info("θ* from the shared pretraining in %s", directory)
            return setup
        if status != "diverged":
            training = Training(OmegaConf.create(pre), directory, group)
            if math.isfinite(training.run()):
                log.info("Pretrained θ* by %d full-batch steps of optimizer=%s in %s", cfg.task.pretrain_steps,
                         cfg.optimizer.name, directory)
                return training.setup
        # diverged (now, or in another job of the sweep): there is no minimum to escape from
        key = "task.pretrain_lr" if cfg.task.pretrain_lr is not None else "optimizer.lr"
        summary = json.loads(summary_file.read_text())
        raise ConfigError(key, pre["optimizer"]["lr"], f"a smaller one (the pretraining GD {summary.get('status')} "
                          f"at step {summary.get('diverged_step', summary.get('step'))}: no minimum θ* to escape "
                          f"from; its record is in {directory})")
    finally:
        if lock is not None:
            lock.close()  # releases the flock


def check_escape_config(cfg: DictConfig, landscape: Optional[Landscape]) -> None:
    """Everything that is wrong with an escape config, as a ConfigError, before anything is written."""
    task, noise = cfg.task, cfg.noise
    if cfg.get("analysis"):  # else they would be ignored without a word (the pretraining runs none either)
        raise ConfigError("analysis", list(cfg.analysis), "[] with task=escape, which runs no analyses: its measurements "
                          "at θ* are task.sharpness_probes and task.tail_batches (for the analyses of θ*'s training, "
                          "train it with task=train and pass that run as task.init_from)")
    if landscape is not None:
        where = f"landscape={cfg.landscape.name} has no samples"
        if noise.name in NO_SAMPLE_MODES:
            raise ConfigError("noise", noise.name, f"gd, gd_white, gd_fbm, gd_levy or gd_anticorrelated: {where}")
        if noise.get("sigma") == "matched":
            raise ConfigError("noise.sigma", "matched", f"a number: {where} to match")
        if task.init_from is not None:
            raise ConfigError("task.init_from", task.init_from, f"null: landscape={cfg.landscape.name} starts at its known minimum")
        if task.pretrain_steps:
            raise ConfigError("task.pretrain_steps", task.pretrain_steps, f"0: landscape={cfg.landscape.name} starts at its known minimum")
    else:
        if task.init_from is None and not task.pretrain_steps:
            raise ConfigError("task.init_from", None, "a task=train run directory or checkpoint, or task.pretrain_steps > 0, or a landscape")
        if task.init_from is not None and task.pretrain_steps:
            raise ConfigError("task.pretrain_steps", task.pretrain_steps, "0 when task.init_from is given (one θ*)")
        if task.init_from is not None:
            _checkpoint_path(task.init_from)
    if task.criterion in ("transition", "saddle") and (landscape is None or landscape.saddle is None):
        raise ConfigError("task.criterion", task.criterion, "loss or distance: transition and saddle need landscape=double_well or styblinski_tang")


# ----------------------------------------------------------------------------- measurements at θ*
def layer_tail_indices(cfg: DictConfig, setup: Setup) -> Dict[str, float]:
    """Each parameter tensor's median SαS tail index of the SGN at θ* (`task.tail_batches` minibatch
    gradients against the full one, on `task.tail_params` sampled coordinates)."""
    from sgdexp.analysis.base import CoordinateSample
    from sgdexp.data import random_batches
    from sgdexp.stats import tail_index

    if cfg.task.tail_batches < 8:
        return {}
    source = setup.source
    generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "escape/tail"))
    coords = CoordinateSample(source, cfg.task.tail_params, generator)
    full = source.full_grad_vector(eval_mode=True)
    batches = random_batches(source.n_train, cfg.noise.batch_size, cfg.task.tail_batches, generator, setup.device)
    xi = torch.cat([(g - full)[:, coords.index].double().cpu() for g in source.minibatch_grads(batches)]).numpy()
    alpha = np.asarray(tail_index(xi, dim=0), dtype=float).reshape(-1)
    return {layer: float(np.nanmedian(alpha[i])) for layer, i in coords.layers.items()}


def check_sharpness(cfg: DictConfig, setup: Setup) -> None:
    """Stop before any work where `sharpness_at_minimum` could not take the Hessian through the model."""
    from sgdexp.curvature import check_second_order  # scipy's eigensolvers: imported where used, as below

    if cfg.task.sharpness_probes >= 2:
        check_second_order(setup.source, *model_key(cfg.model), f"the sharpness at the minimum "
                           f"(task.sharpness_probes={cfg.task.sharpness_probes}; 0 skips it)")


def sharpness_at_minimum(cfg: DictConfig, setup: Optional[Setup], landscape: Optional[Landscape],
                         theta_star: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Top Hessian eigenvalue and trace at θ* (sgdexp.curvature). A small landscape's Hessian is
    formed exactly instead (Lanczos needs dim > k)."""
    from sgdexp.curvature import eigenpairs_and_trace, sharpness

    probes = cfg.task.sharpness_probes
    if probes < 2:
        return {}
    generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "escape/sharpness"))
    if landscape is None:
        return sharpness(setup.source, probes=probes, generator=generator)
    theta = theta_star["theta"]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        vs = v.reshape(-1, landscape.dim).to(theta)
        h = torch.func.vmap(lambda t: torch.func.jvp(torch.func.grad(lambda x: landscape.loss(x[None])[0]), (theta,), (t,))[1])(vs)
        return h.reshape(v.shape)

    if landscape.dim <= 256:
        hessian = hvp(torch.eye(landscape.dim, device=theta.device)).double()
        values = torch.linalg.eigvalsh(hessian)
        return {"top_eigenvalue": float(values[-1]), "trace": float(hessian.trace()), "trace_se": 0.0}
    values, _, trace, trace_se = eigenpairs_and_trace(hvp, landscape.dim, probes=probes, generator=generator,
                                                      device=theta.device)
    return {"top_eigenvalue": float(values[0]), "trace": trace, "trace_se": trace_se}


def matched_sigma(cfg: DictConfig, setup: Setup) -> float:
    """σ matched once at θ* by the single-model noise mode's own code (sgdexp.noise.modes)."""
    from sgdexp.noise.modes import make_noise_mode

    mode = make_noise_mode(cfg.noise, setup.source, cfg.seed, setup.device)
    if mode.sigma is not None:  # gd_sgdcov: σ = 1 is SGD's covariance exactly
        return float(mode.sigma)
    setup.source.backward_full()
    return mode.matched_sigma()


# ----------------------------------------------------------------------------- the run
class Escape:
    def __init__(self, cfg: DictConfig, out_dir: Path, group: Optional[str] = None):
        self.cfg, self.out_dir, self.group = cfg, Path(out_dir), group
        self.landscape = build_landscape(cfg.landscape)
        check_escape_config(cfg, self.landscape)
        self.device = resolve_device(cfg.device)
        self.setup: Optional[Setup] = None
        if self.landscape is not None:
            log.info("landscape=%s: dataset=%s and model=%s are unused (no samples, one parameter vector)",
                     cfg.landscape.name, cfg.dataset.name, cfg.model.name)
            self.objective: StackedObjective = LandscapeObjective(self.landscape)
            self.theta_star = {"theta": self.landscape.minimum().to(self.device)}
            self.n_train = 0
        else:
            if cfg.task.init_from is not None:
                self.setup = build_setup(cfg)
                check_sharpness(cfg, self.setup)
                load_minimum(cfg, self.setup)
            else:  # ConfigErrors of the setup are raised inside, before the pretrain writes anything
                check_sharpness(cfg, build_setup(cfg))
                self.setup = pretrain(cfg, self.out_dir, group)
            s = self.setup
            s.model.eval()  # BatchNorm at θ*'s statistics
            self.objective = NetworkObjective(s.model, s.data.x_train, s.data.y_train, s.source.loss_fn,
                                              s.source.per_sample_loss, cfg.trainer.chunk_size)
            self.theta_star = {k: p.detach().clone() for k, p in s.model.named_parameters() if p.requires_grad}
            self.n_train = s.data.n_train

    # ------------------------------------------------------------------ per chunk
    def _stack(self, r: int) -> Dict[str, torch.Tensor]:
        return {k: v.unsqueeze(0).repeat(r, *([1] * v.dim())) for k, v in self.theta_star.items()}

    def _measure(self, params) -> tuple:
        """(loss, distance, per-tensor squared displacement (T, R), progress or None) of every replica."""
        sq = torch.stack([(params[k] - v).flatten(1).square().sum(dim=1) for k, v in self.theta_star.items()])
        loss = self.objective.loss(params)
        progress = self.landscape.progress(params["theta"]) if self.criterion in ("transition", "saddle") else None
        return loss, sq.sum(dim=0).sqrt(), sq, progress

    def _escaped(self, loss, distance, progress) -> torch.Tensor:
        task = self.cfg.task
        if self.criterion == "loss":
            out = loss - self.loss_star > task.loss_barrier
        elif self.criterion == "distance":
            out = distance > task.radius
        else:
            out = progress >= (self.landscape.transition if self.criterion == "transition" else self.landscape.saddle)
        return out | ~torch.isfinite(loss) | ~torch.isfinite(distance)  # a diverged replica has left

    def run_chunk(self, chunk: int, lo: int, hi: int, state: Optional[Dict] = None) -> Dict[str, torch.Tensor]:
        cfg, task = self.cfg, self.cfg.task
        r, max_steps, check_every = hi - lo, int(task.max_steps), int(task.check_every)
        ids = torch.arange(lo, hi, device=self.device)
        params = self._stack(r)
        optimizer = build_optimizer(cfg.optimizer, list(params.values()))
        noise = ReplicaNoise(cfg.noise, self.objective, self.sigma, cfg.seed, ids, self.n_train)
        t = len(self.theta_star)
        rec = {"step": torch.full((r,), -1, dtype=torch.long, device=self.device),
               "loss": torch.full((r,), math.nan, device=self.device),
               "distance": torch.full((r,), math.nan, device=self.device),
               "shares": torch.full((r, t), math.nan, device=self.device)}
        start = 0
        if state is not None:
            for k in params:
                params[k].copy_(state["params"][k])
            optimizer.load_state_dict(state["optimizer"])
            noise.load_state_dict(state["noise"])
            rec = {k: v.to(self.device) for k, v in state["records"].items()}
            start = state["step"]
        lr_factor = lr_factor_fn(cfg.trainer, max_steps)
        base_lr, constant_rate = cfg.optimizer.lr, constant_lr(cfg.trainer)
        sync_every, checkpoint_every = int(cfg.trainer.log_every), int(cfg.trainer.checkpoint_every)
        step = start
        for step in range(start + 1, max_steps + 1):
            if not constant_rate:
                for g in optimizer.param_groups:
                    g["lr"] = base_lr * lr_factor(step - 1)
            _, grads = noise.signal(params, step)
            for k, p in params.items():
                p.grad = grads[k]
            optimizer.step()
            if step % check_every == 0 or step == max_steps:  # the budget's last step too: else one out there is censored
                loss, distance, sq, progress = self._measure(params)
                new = self._escaped(loss, distance, progress) & (rec["step"] < 0)
                rec["step"] = torch.where(new, step, rec["step"])
                rec["loss"] = torch.where(new, loss, rec["loss"])
                rec["distance"] = torch.where(new, distance, rec["distance"])
                rec["shares"] = torch.where(new[:, None], (sq / sq.sum(dim=0)).T, rec["shares"])
            if step % sync_every == 0 or step == max_steps:
                inside = int((rec["step"] < 0).sum())
                self.bar.set_postfix(chunk=chunk, step=step, inside=inside, refresh=False)
                self.bar.update(self.escaped_before + (r - inside) - self.bar.n)
                self.logged_step = self.metrics_step(chunk, step)
                self.tracker.log({"step": self.logged_step, "escape/inside": inside, "escape/chunk": chunk})
                if inside == 0:
                    break
            if checkpoint_every and step % checkpoint_every == 0 and step < max_steps:
                self.checkpoint(chunk, step, params, optimizer, noise, rec)
        inside = rec["step"] < 0  # censored: their values at the last step
        if bool(inside.any()):
            loss, distance, sq, _ = self._measure(params)
            rec["loss"] = torch.where(inside, loss, rec["loss"])
            rec["distance"] = torch.where(inside, distance, rec["distance"])
            rec["shares"] = torch.where(inside[:, None], (sq / sq.sum(dim=0)).T, rec["shares"])
        return rec

    def checkpoint(self, chunk, step, params, optimizer, noise, rec) -> None:
        self.tracker.store.flush()
        save_checkpoint(self.out_dir, {
            "chunk": chunk, "step": step, "wall_time_s": self.wall_time(),
            "params": {k: v.cpu() for k, v in params.items()},
            "optimizer": optimizer.state_dict(), "noise": noise.state_dict(),
            "records": {k: v.cpu() for k, v in rec.items()},
            "done": [{k: v.cpu() for k, v in d.items()} for d in self.done],
            "at_minimum": self.at_minimum,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        })
        self.checkpoint_step = self.metrics_step(chunk, step)

    def metrics_step(self, chunk: int, step: int) -> int:
        """Step `step` of replica chunk `chunk` as metrics.jsonl numbers it: the chunks one after another."""
        return chunk * int(self.cfg.task.max_steps) + step

    def wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def run(self) -> float:
        cfg, task = self.cfg, self.cfg.task
        self.criterion = task.criterion
        self.t0, self.wall_before = time.perf_counter(), 0.0
        state = load_checkpoint(self.out_dir, map_location=torch.device("cpu")) if cfg.trainer.resume else None
        if state is not None and "chunk" not in state:
            state = None  # the pretrain's checkpoint lives in pretrain/, never here
        if state is not None:
            self.at_minimum = state["at_minimum"]
            self.done = [{k: v.to(self.device) for k, v in d.items()} for d in state["done"]]
            self.wall_before = state["wall_time_s"]
            log.info("Resuming escape at chunk %d step %d of %s", state["chunk"], state["step"], self.out_dir)
        else:
            self.done = []
            self.at_minimum = self._at_minimum()
        self.sigma, self.loss_star = self.at_minimum["sigma"], self.at_minimum["loss_star"]
        self._warn_if_unstable()
        chunk_size = task.replica_chunk or task.replicas
        resume_step = self.metrics_step(state["chunk"], state["step"]) if state is not None else None
        self.logged_step = self.checkpoint_step = resume_step or 0
        self.tracker = Tracker(cfg, self.out_dir, group=self.group, resume_step=resume_step)
        summary: Dict[str, Any] = {"status": "failed"}
        self.bar = tqdm(total=task.replicas, disable=not cfg.trainer.progress, mininterval=1.0, dynamic_ncols=True,
                        desc=f"escaped ({cfg.noise.name})")
        try:
            for chunk, lo in enumerate(range(0, task.replicas, chunk_size)):
                if chunk < len(self.done):
                    continue
                self.escaped_before = sum(int((d["step"] >= 0).sum()) for d in self.done)
                resume = state if state is not None and state["chunk"] == chunk else None
                self.done.append(self.run_chunk(chunk, lo, min(lo + chunk_size, task.replicas), resume))
            summary = self.outputs()
        except KeyboardInterrupt:
            summary.update(status="interrupted", step=max(self.logged_step, self.checkpoint_step),
                           checkpoint_step=self.checkpoint_step)
            raise
        except Exception as err:
            summary["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            self.bar.close()
            summary["wall_time_s"] = self.wall_time()
            self.tracker.finish(summary)
        return float(summary.get("escape/mean_steps", math.inf))

    def _warn_if_unstable(self) -> None:
        """One warning where θ* is unstable under the optimizer itself (η λ_max > 2(1 + μ) for SGD with
        momentum μ): replicas then leave by the instability, whatever the noise, and their escape
        times say nothing about it."""
        opt, top = self.cfg.optimizer, self.at_minimum["sharpness"].get("top_eigenvalue")
        if opt.name != "sgd" or top is None or not math.isfinite(top) or top <= 0:
            return
        bound = 2 * (1 + float(opt.get("momentum", 0.0))) / top
        if float(opt.lr) > bound:
            log.warning("optimizer.lr=%g is past the stability bound 2(1+momentum)/λ_max = %.4g at θ* (λ_max %.4g): "
                        "replicas will leave by the instability of the descent itself, not by the noise", opt.lr,
                        bound, top)

    def _at_minimum(self) -> Dict[str, Any]:
        """σ (matched at θ* if asked), L(θ*), each layer's tail index and the sharpness at θ*."""
        cfg = self.cfg
        sigma = cfg.noise.get("sigma")
        if sigma == "matched":
            sigma = matched_sigma(cfg, self.setup)
        at = {"sigma": None if sigma is None else float(sigma),
              "loss_star": float(self.objective.loss(self._stack(1))[0]),
              "tail_index": layer_tail_indices(cfg, self.setup) if self.setup is not None else {},
              "sharpness": sharpness_at_minimum(cfg, self.setup, self.landscape, self.theta_star)}
        if cfg.noise.get("sigma") == "matched":
            log.info("σ matched at θ*: %.4g", at["sigma"])
        return at

    # ------------------------------------------------------------------ outputs
    def outputs(self) -> Dict[str, Any]:
        from sgdexp.escape_sweeps import survival_figure
        from sgdexp.stats.survival import escape_time_summary, kaplan_meier

        task = self.cfg.task
        rec = {k: torch.cat([d[k] for d in self.done]).cpu() for k in self.done[0]}
        escaped = (rec["step"] >= 0).numpy()
        # left with a non-finite loss or distance: counted as out (they left), but said apart
        diverged = escaped & ~(np.isfinite(rec["loss"].numpy()) & np.isfinite(rec["distance"].numpy()))
        steps = np.where(escaped, rec["step"].numpy(), task.max_steps)
        names = list(self.theta_star)
        alphas = self.at_minimum["tail_index"]
        columns = ["replica", "escaped", "step", "loss", "distance"] + [f"share/{n}" for n in names] \
            + [f"alpha/{n}" for n in alphas] + ["diverged"]
        rows: List[List[Any]] = []
        for i in range(len(steps)):
            rows.append([i, int(escaped[i]), int(steps[i]), float(rec["loss"][i]), float(rec["distance"][i])]
                        + [float(x) for x in rec["shares"][i]] + [alphas[n] for n in alphas] + [int(diverged[i])])
        with open(self.out_dir / ESCAPE_CSV, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        stats = escape_time_summary(steps, escaped, task.max_steps)
        summary: Dict[str, Any] = {"status": "completed", **{f"escape/{k}": v for k, v in stats.items()},
                                   "escape/criterion": task.criterion, "escape/loss_star": self.loss_star,
                                   "escape/sigma": self.sigma, "escape/diverged": int(diverged.sum())}
        if diverged.any():
            log.warning("escape: %d of %d replicas diverged (non-finite loss or distance at their exit): counted as "
                        "escaped, and marked in escape.csv's diverged column", int(diverged.sum()), len(steps))
        summary.update({f"sharpness/{k}": v for k, v in self.at_minimum["sharpness"].items()})
        summary.update({f"escape/tail_index/{k}": v for k, v in alphas.items()})
        if escaped.any():
            shares = rec["shares"].numpy()[escaped]
            summary.update({f"escape/exit_share/{n}": float(np.nanmean(shares[:, j])) for j, n in enumerate(names)})
        self.tracker.log_table("escape/replicas", columns, rows)
        curve = kaplan_meier(steps, escaped)
        self.tracker.log_figure("escape/survival", survival_figure({self.cfg.noise.name: curve}, budget=task.max_steps))
        if escaped.any():
            log.info("escape: %d of %d replicas escaped within %d steps; mean %.4g steps [%.4g, %.4g]",
                     int(escaped.sum()), len(steps), task.max_steps, summary.get("escape/mean_steps", math.nan),
                     summary.get("escape/mean_steps_low", math.nan), summary.get("escape/mean_steps_high", math.nan))
        else:  # the mean is NaN then: its lower bound is the number
            log.info("escape: none of %d replicas escaped within %d steps; mean escape time > %.4g steps (95%% lower "
                     "bound)", len(steps), task.max_steps, summary.get("escape/mean_steps_low", math.nan))
        return summary


@TASKS.register("escape")
def escape(cfg: DictConfig, out_dir: Path, group: Optional[str] = None) -> float:
    """Escape times of `task.replicas` replicas of `cfg.noise` from θ*; return the mean escape time."""
    return Escape(cfg, out_dir, group).run()
