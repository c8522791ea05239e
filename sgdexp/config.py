"""Structured configs: every value has a type (checked by OmegaConf) and a range (checked here).

Each group member in `conf/<group>/<name>.yaml` starts from its schema
(`defaults: [/schema/<group>/<schema>@_here_]`), so a misspelt key or a value of the wrong type
fails at composition; `validate` then checks ranges and choices and raises `ConfigError` naming
the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from sgdexp.errors import ConfigError

# The estimator names of sgdexp.stats.hurst/tail, spelt out so that composing and validating a config
# imports neither torch nor scipy (2 s of start-up); tests/test_startup.py checks they agree.
HURST_METHODS = ("whittle", "local_whittle", "dfa", "rs")
TAIL_METHODS = ("ecf", "quantile", "block_sum", "hill")


def ranged(default=MISSING, *, ge=None, gt=None, le=None, lt=None, choices=None, or_words=None, factory=None):
    """A dataclass field with its allowed range or choices in the metadata.

    `or_words`: words allowed besides numbers in the range (e.g. `sigma: matched`).
    """
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, or_words=or_words).items()
            if v is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- top level
@dataclass
class TrainerConfig:
    steps: int = ranged(1000, ge=1)
    eval_every: int = ranged(100, ge=0)  # 0: evaluate at the end only
    log_every: int = ranged(10, ge=1)
    checkpoint_every: int = ranged(500, ge=0)  # 0: checkpoint at the end only
    resume: bool = False  # continue from checkpoints/last.pt of this output directory if present
    lr_schedule: str = ranged("constant", choices=("constant", "step", "cosine"))
    lr_milestones: List[int] = ranged(factory=list, ge=1)  # `step` schedule; empty: 50% and 75% of steps
    lr_gamma: float = ranged(0.1, gt=0.0, le=1.0)
    warmup_steps: int = ranged(0, ge=0)
    # end the run at the first evaluation whose train loss is at most this (None: run every step)
    stop_at_train_loss: Optional[float] = ranged(None, gt=0.0)
    # or whose train accuracy is at least this (classification); with both, whichever comes first
    stop_at_train_accuracy: Optional[float] = ranged(None, gt=0.0, le=1.0)
    chunk_size: int = ranged(2048, ge=1)  # most samples per forward pass in full-batch work
    # MiB of chunk gradient graphs that Hessian-vector products keep between products
    # (None: 1024 in main memory, a quarter of a CUDA device's free memory)
    hvp_graph_mib: Optional[int] = ranged(None, ge=0)
    compile: bool = False  # torch.compile per-sample gradient kernels and noise samplers (2-20 s once per process)
    progress: bool = True
    figures: bool = True  # the report's figures at the end: figures/*.png and W&B images


@dataclass
class Config:
    seed: int = ranged(0, ge=0, le=2**64 - 1)  # torch.Generator.manual_seed takes 64-bit seeds
    device: str = ranged("auto", choices=("auto", "cpu", "cuda"))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    noise: Any = MISSING
    analysis: Dict[str, Any] = field(default_factory=dict)
    task: Any = MISSING
    logger: Any = MISSING
    landscape: Any = MISSING  # an analytic loss for task=escape (`none`: the model on the dataset)


# ----------------------------------------------------------------------------- dataset
@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = "data"
    download: bool = False
    subset: Optional[int] = ranged(None, ge=1)  # keep the first n training samples


@dataclass
class DigitsConfig(DatasetConfig):
    test_fraction: float = ranged(MISSING, gt=0.0, lt=1.0)
    split_seed: int = ranged(MISSING, ge=0, le=2**32 - 1)  # sklearn's random_state


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    n_train: int = ranged(MISSING, ge=1)
    n_test: int = ranged(MISSING, ge=1)
    dim: int = ranged(MISSING, ge=1)
    data_seed: int = ranged(MISSING, ge=0)


@dataclass
class GaussianMixtureConfig(SyntheticDatasetConfig):
    classes: int = ranged(MISSING, ge=2)
    separation: float = ranged(MISSING, gt=0.0)


@dataclass
class TeacherStudentConfig(SyntheticDatasetConfig):
    teacher_width: int = ranged(MISSING, ge=1)
    label_noise: float = ranged(MISSING, ge=0.0)


@dataclass
class LinearGaussianConfig(SyntheticDatasetConfig):
    """Linear regression with a chosen input covariance spectrum (sgdexp/data/datasets.py:linear_gaussian)."""

    input_spectrum: str = ranged("power_law", choices=("power_law", "explicit"))
    condition_number: float = ranged(100.0, ge=1.0)  # power_law: λ_1/λ_dim
    top_eigenvalue: float = ranged(1.0, gt=0.0)  # power_law: λ_1
    eigenvalues: List[float] = ranged(factory=list, gt=0.0)  # explicit: dim values
    rotate: bool = True  # eigenvectors a seeded random rotation (False: the coordinate axes)
    label_noise: float = ranged(0.5, ge=0.0)


# ----------------------------------------------------------------------------- model
ACTIVATIONS = ("relu", "tanh", "gelu")
NORMS = ("none", "batch", "group")


@dataclass
class MLPConfig:
    name: str = MISSING
    widths: List[int] = ranged(MISSING, ge=1)
    activation: str = ranged(MISSING, choices=ACTIVATIONS)


@dataclass
class CNNConfig:
    name: str = MISSING
    channels: List[int] = ranged(MISSING, ge=1)
    hidden: int = ranged(MISSING, ge=1)
    activation: str = ranged(MISSING, choices=ACTIVATIONS)
    norm: str = ranged(MISSING, choices=NORMS)


@dataclass
class ResNetConfig:
    name: str = MISSING
    depth: int = ranged(MISSING, ge=8)  # 6n + 2
    width: int = ranged(MISSING, ge=1)
    norm: str = ranged(MISSING, choices=NORMS)


@dataclass
class VGGConfig:
    name: str = MISSING
    channels: List[int] = ranged(MISSING, ge=1)
    convs_per_stage: int = ranged(MISSING, ge=1)
    hidden: int = ranged(MISSING, ge=1)
    batch_norm: bool = MISSING


@dataclass
class TimmConfig:
    name: str = MISSING
    arch: str = MISSING  # any name of timm.list_models(), built with pretrained=False
    small_input_stem: bool = True  # images <= 64 px: 3x3 stride-1 first conv, no stem max-pool
    drop_rate: float = ranged(0.0, ge=0.0, lt=1.0)


@dataclass
class LinearConfig:
    name: str = MISSING
    bias: bool = True


# ----------------------------------------------------------------------------- optimizer
@dataclass
class SGDConfig:
    name: str = MISSING
    lr: float = ranged(MISSING, gt=0.0)
    momentum: float = ranged(0.0, ge=0.0, lt=1.0)
    weight_decay: float = ranged(0.0, ge=0.0)
    nesterov: bool = False


@dataclass
class AdamConfig:
    name: str = MISSING
    lr: float = ranged(MISSING, gt=0.0)
    beta1: float = ranged(0.9, ge=0.0, lt=1.0)
    beta2: float = ranged(0.999, ge=0.0, lt=1.0)
    eps: float = ranged(1e-8, gt=0.0)
    weight_decay: float = ranged(0.0, ge=0.0)


# ----------------------------------------------------------------------------- noise
@dataclass
class NoiseConfig:
    name: str = MISSING
    batch_size: int = ranged(MISSING, ge=1)  # SGD's batch size B (the reference for matched noise)
    sampler: str = ranged("epoch", choices=("epoch", "replacement"))


@dataclass
class InjectedNoiseConfig(NoiseConfig):
    """GD plus injected noise: θ ← θ − η(∇L + σ ζ_t)."""

    sigma: Any = ranged("matched", ge=0.0, or_words=("matched",))  # a number, or matched to SGD's tr(C)/B
    match_every: int = ranged(250, ge=1)  # steps between re-estimates of the matched σ
    match_samples: int = ranged(4096, ge=0)  # samples (in minibatches of batch_size) estimating the target; 0 or ≥ N: exact
    population: Optional[str] = ranged(None, choices=("epoch", "replacement"))  # whose batch noise; None: sampler's
    record_coords: int = ranged(16, ge=1)  # coordinates of ζ recorded for the mode's own statistics
    record_steps: int = ranged(256, ge=64)  # length of that record before it is summarised (4 windows in 1000 steps)


@dataclass
class FBMNoiseConfig(InjectedNoiseConfig):
    hurst: float = ranged(MISSING, gt=0.0, lt=1.0)
    n_factors: int = ranged(16, ge=1, le=32)  # Markov factors of the streaming fGn approximation


@dataclass
class LevyNoiseConfig(InjectedNoiseConfig):
    alpha: float = ranged(MISSING, gt=0.0, le=2.0)


# ----------------------------------------------------------------------------- analysis
@dataclass
class AnalysisConfig:
    """Members of the `analysis` list group sit under `analysis.<name>`; each runs on its own schedule."""

    name: str = MISSING
    every: int = ranged(MISSING, ge=1)  # steps between measurements (windows start this often)
    start: int = ranged(0, ge=0)  # first step measured


@dataclass
class NoiseStatsConfig(AnalysisConfig):
    batches: int = ranged(MISSING, ge=8)  # M minibatch gradients against one full gradient
    params: int = ranged(MISSING, ge=0)  # coordinates sampled (seeded) for per-parameter statistics; 0: all
    min_per_layer: int = ranged(16, ge=1)  # each layer keeps at least this many sampled coordinates (all if fewer)
    tail_method: str = ranged("ecf", choices=TAIL_METHODS)
    fdr_level: float = ranged(0.05, gt=0.0, lt=1.0)


@dataclass
class NoiseMemoryConfig(AnalysisConfig):
    window: int = ranged(MISSING, ge=64)  # W consecutive steps recorded per window; at most `every` (no overlap)
    params: int = ranged(MISSING, ge=0)  # fixed coordinates recorded (seeded); 0: none
    projections: int = ranged(MISSING, ge=0)  # random unit projections of the whole SGN vector
    max_lag: int = ranged(MISSING, ge=1)  # autocorrelation curve up to this lag
    hurst_methods: List[str] = ranged(factory=lambda: ["whittle", "local_whittle"], choices=HURST_METHODS)


@dataclass
class DiffusionConfig(AnalysisConfig):
    """`every`: steps between recorded weights; measurements every `log_every` steps (see analysis/diffusion.py)."""

    log_every: int = ranged(MISSING, ge=1)  # steps between logged measurements (and the end)
    # models with more parameters are recorded through a seeded projection to the largest prime <= dims
    # numbers (so at least 2: a projection to 1 number makes every move parallel, persistence ±1)
    dims: int = ranged(MISSING, ge=2)
    buffer: int = ranged(MISSING, ge=8)  # records per window of the time-averaged window MSD (consecutive windows)
    waiting_times: List[int] = ranged(factory=lambda: [0], ge=0)  # t_w of MSD(t_w, τ); snapped to recorded steps
    lags: int = ranged(MISSING, ge=3)  # log-spaced lags per MSD curve


@dataclass
class CurvatureAnalysisConfig(AnalysisConfig):
    """`analysis=[curvature]` (sgdexp/analysis/curvature.py)."""

    top_k: int = ranged(MISSING, ge=1)  # largest Hessian eigenpairs
    bottom_k: int = ranged(MISSING, ge=0)  # smallest Hessian eigenpairs
    probes: int = ranged(MISSING, ge=2)  # Hutchinson probes off the Lanczos vectors for the trace (sgdexp.curvature)
    tol: float = ranged(1e-3, gt=0.0, lt=1.0)  # Lanczos relative tolerance
    window: int = ranged(MISSING, ge=0)  # updates whose weights are projected after each measurement; 0: none
    # models with at most this many parameters: dense Hessian, all eigenpairs. Bounded: the dense path
    # holds d² numbers in float64 (128 MiB at 4096) and takes d products and an O(d³) eigh; at the
    # default MLP's 26122 it would hold 5.5 GB and run for tens of minutes, where Lanczos takes 19 products
    exact_below: int = ranged(MISSING, ge=0, le=4096)
    noise_samples: int = ranged(MISSING, ge=0)  # samples whose gradients' covariance is taken; 0: all N
    hessian_samples: int = ranged(0, ge=0)  # the Hessian of the loss on a fixed seeded subset of this many samples; 0: all N
    noise_points: int = ranged(8, ge=0)  # fixed Hessian: points of each window averaging the noise variance
    # The optimizer, for the stationary-variance prediction (interpolated from `optimizer` in the yaml).
    optimizer: str = MISSING
    lr: float = ranged(MISSING, gt=0.0)
    momentum: float = ranged(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = ranged(0.0, ge=0.0)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    lr_milestones: List[int] = field(default_factory=list)
    lr_gamma: float = 0.1


@dataclass
class GeneralizationAnalysisConfig(AnalysisConfig):
    """`analysis=[generalization]` (sgdexp/analysis/generalization.py)."""

    # sharpness at its multiples from `start` on (and the end); 0: at the end only
    sharpness_every: int = ranged(0, ge=0)
    probes: int = ranged(MISSING, ge=2)  # Hutchinson probes off the Lanczos vectors for the trace (sgdexp.curvature)
    tol: float = ranged(1e-3, gt=0.0, lt=1.0)  # Lanczos relative tolerance


# ----------------------------------------------------------------------------- escape (task=escape, landscape)
ESCAPE_CRITERIA = ("loss", "distance", "transition", "saddle")


@dataclass
class EscapeTaskConfig:
    """`task=escape`: R replicas of the noise mode from a minimum θ*, until each escapes or `max_steps`."""

    name: str = MISSING
    init_from: Optional[str] = None  # θ* from a task=train run directory or checkpoint file
    pretrain_steps: int = ranged(0, ge=0)  # else: descend this many GD steps first (same run), then escape
    pretrain_lr: Optional[float] = ranged(None, gt=0.0)  # those GD steps' learning rate; None: optimizer.lr
    share_pretrain: bool = True  # in a multirun, jobs with the same pretraining run it once (<sweep>/.pretrain/<key>/)
    criterion: str = ranged("loss", choices=ESCAPE_CRITERIA)
    loss_barrier: float = ranged(0.5, gt=0.0)  # criterion=loss: L(θ) − L(θ*) > loss_barrier
    radius: float = ranged(1.0, gt=0.0)  # criterion=distance: |θ − θ*| > radius
    check_every: int = ranged(1, ge=1)  # steps between checks of the criterion (all replicas at once)
    max_steps: int = ranged(10000, ge=1)  # step budget: replicas still inside are censored here
    replicas: int = ranged(128, ge=1)
    replica_chunk: int = ranged(0, ge=0)  # replicas run together (bounds memory R × d); 0: all at once
    tail_batches: int = ranged(256, ge=0)  # minibatch gradients at θ* for each layer's tail index; 0: none
    tail_params: int = ranged(512, ge=1)  # coordinates sampled for those tail indices
    sharpness_probes: int = ranged(100, ge=0)  # Hutchinson probes for tr H at θ* beyond the Lanczos vectors; 0: none


@dataclass
class LandscapeConfig:
    name: str = MISSING


@dataclass
class DoubleWellConfig(LandscapeConfig):
    """U(θ) = ΔL (θ₁² − 1)² + ½ Σ_{j≥2} κ_j θ_j²: minima at θ₁ = ±1, saddle at θ₁ = 0."""

    dim: int = ranged(1, ge=1)
    barrier: float = ranged(1.0, gt=0.0)  # ΔL
    transverse: List[float] = ranged(factory=lambda: [1.0], gt=0.0)  # κ_2..κ_d: one value for all, or dim − 1


@dataclass
class StyblinskiTangConfig(LandscapeConfig):
    """U(θ) = ½ Σ_j (θ_j⁴ − 16 θ_j² + 5 θ_j), started in the shallower minimum θ_j ≈ 2.7468."""

    dim: int = ranged(2, ge=1)


@dataclass
class QuadraticConfig(LandscapeConfig):
    """U(θ) = ½ Σ_j λ_j θ_j²: `spectrum` (dim values), or log-spaced from `top` down to `bottom`."""

    dim: int = ranged(10, ge=1)
    spectrum: List[float] = ranged(factory=list, gt=0.0)
    top: float = ranged(1.0, gt=0.0)
    bottom: float = ranged(0.01, gt=0.0)


# ----------------------------------------------------------------------------- task, logger
@dataclass
class TaskConfig:
    name: str = MISSING


@dataclass
class WandbConfig:
    name: str = MISSING
    mode: str = ranged("offline", choices=("offline", "online", "disabled"))
    project: str = "sgdexp"
    entity: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    log_checkpoint: bool = True  # the final checkpoint as a W&B artifact (type "model")


@dataclass
class NoLoggerConfig:
    name: str = MISSING


SCHEMAS: Dict[str, Dict[str, type]] = {
    "dataset": {
        "digits": DigitsConfig,
        "vision": DatasetConfig,
        "gaussian_mixture": GaussianMixtureConfig,
        "teacher_student": TeacherStudentConfig,
        "linear_gaussian": LinearGaussianConfig,
    },
    "model": {"mlp": MLPConfig, "cnn": CNNConfig, "resnet": ResNetConfig, "vgg": VGGConfig, "linear": LinearConfig,
              "timm": TimmConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig},
    "noise": {"noise": NoiseConfig, "injected": InjectedNoiseConfig, "fbm": FBMNoiseConfig, "levy": LevyNoiseConfig},
    "analysis": {"noise_stats": NoiseStatsConfig, "noise_memory": NoiseMemoryConfig,
                 "diffusion": DiffusionConfig, "curvature": CurvatureAnalysisConfig,
                 "generalization": GeneralizationAnalysisConfig},
    "task": {"task": TaskConfig, "escape": EscapeTaskConfig},
    "landscape": {"none": LandscapeConfig, "double_well": DoubleWellConfig,
                  "styblinski_tang": StyblinskiTangConfig, "quadratic": QuadraticConfig},
    "logger": {"wandb": WandbConfig, "none": NoLoggerConfig},
}


def conf_dir() -> Path:
    """The config tree: `conf/` beside `sgdexp/` in a source checkout, else the copy installed with
    the package as `sgdexp.conf` (a wheel maps `conf/` there; see setup.py)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return checkout / "conf"
    import sgdexp.conf

    return Path(sgdexp.conf.__file__).resolve().parent


_registered = False


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore as `schema/<group>/<name>` (members extend them).

    Idempotent: storing them again would only repeat the work."""
    global _registered
    if _registered:
        return
    _registered = True
    cs = ConfigStore.instance()
    cs.store(name="schema_config", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


def presets_as_choices(overrides: Sequence[str]) -> List[str]:
    """`+experiment=NAME` (the usual way to add a preset) as the group choice `experiment=NAME`: the
    primary config lists `experiment` so that `conf/experiment_scale/NAME_<scale>.yaml` applies after it."""
    return [a[1:] if a.startswith("+experiment=") else a for a in overrides]


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python -m sgdexp <overrides>` would run, composed without the CLI (for
    notebooks, tests and benchmarks): `run_task(compose_config([...]), out_dir)` runs it."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=presets_as_choices(overrides))


# ----------------------------------------------------------------------------- validation
def _check(key: str, value, meta: dict) -> None:
    if value is None or not meta:
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(f"{key}[{i}]", item, meta)
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(key, value, f"one of {', '.join(map(str, meta['choices']))}")
    if "or_words" in meta:
        if value in meta["or_words"]:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            words = " or ".join(meta["or_words"])
            raise ConfigError(key, value, f"a number or {words}")
    # nan passes every comparison's negation and inf every lower bound; neither is a setting
    bad = isinstance(value, float) and not math.isfinite(value)
    bounds = ["finite"] if bad else []
    for name, ok, text in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    ):
        if name in meta:
            bounds.append(f"{text} {meta[name]}")
            bad = bad or not ok(value, meta[name])
    if bad:
        raise ConfigError(key, value, f"must be {' and '.join(bounds)}")


def _walk(obj, prefix: str) -> None:
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            _check(key, value, dict(f.metadata))
            _walk(value, key + ".")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk(v, f"{prefix}{k}.")


def _unknown_keys(node: DictConfig, prefix: str) -> None:
    """A key that `+key=value` added to a node whose schema has no such field: `OmegaConf.to_object` drops
    it without a word, so a misspelt `+optimizer.lrr=0.5` would run at the default rate."""
    kind = OmegaConf.get_type(node)
    fields = sorted(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else None
    for key in node.keys():
        child = node._get_node(key)
        if fields is not None and key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3, cutoff=0.6)
            where = prefix.rstrip(".") or "the config"
            hint = (f"did you mean {' or '.join(prefix + c for c in close)}?" if close
                    else f"{where} has no key of that name (see `python -m sgdexp --cfg job`)")
            raise ConfigError(f"{prefix}{key}", child._value(), hint)
        if isinstance(child, DictConfig):
            _unknown_keys(child, f"{prefix}{key}.")


def validate(cfg: DictConfig) -> None:
    """Check every key, range and choice in the composed config; raise ConfigError on the first bad one."""
    _unknown_keys(cfg, "")
    _walk(OmegaConf.to_object(cfg), "")
