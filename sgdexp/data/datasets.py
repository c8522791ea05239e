"""Datasets as tensors: small enough to live on the device and be batched by index.

Every loader returns a `Dataset` on the CPU with raw inputs; `load_dataset` takes the subset,
standardises inputs with training-set statistics (per channel for images, per feature for
vectors) and moves everything to the device once.
"""
from __future__ import annotations

import math
import pickle
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import numpy as np
import torch
from omegaconf import DictConfig

from sgdexp.errors import ConfigError
from sgdexp.registry import Registry


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_outputs: int  # classes, or regression targets
    task: str  # "classification" | "regression"
    standardise: bool = True  # False: inputs whose covariance is part of the design (linear_gaussian)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def check_samples(self, key: str, value: int, allowed: str = "") -> None:
        """A count of training samples that a config asks for (a batch, a subset) is at most N, else a
        ConfigError naming `key`; `allowed` starts the message with the key's other values ("0 (all) or ")."""
        if value > self.n_train:
            raise ConfigError(key, value, f"{allowed}at most the {self.n_train} training samples of dataset={self.name}")

    def to(self, device: torch.device) -> "Dataset":
        return replace(self, **{k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")})


DATASETS: Registry[Callable[[DictConfig], Dataset]] = Registry("dataset.name")


def load_dataset(cfg: DictConfig, device: torch.device) -> Dataset:
    try:
        data = DATASETS.get(cfg.name)(cfg)
    except MemoryError as err:  # numpy's _ArrayMemoryError names the size: a synthetic set too large
        sizes = ", ".join(f"dataset.{k}" for k in ("n_train", "n_test", "dim") if k in cfg) or "its size"
        raise ConfigError("dataset", cfg.name, f"a dataset that fits in memory: {err}; lower {sizes}") from None
    if cfg.subset is not None:
        data.check_samples("dataset.subset", cfg.subset)
        data = replace(data, x_train=data.x_train[: cfg.subset], y_train=data.y_train[: cfg.subset])
    return (_standardise(data) if data.standardise else data).to(device)


def _standardise(data: Dataset) -> Dataset:
    x = data.x_train.double()
    dims = (0, 2, 3) if data.is_image else (0,)
    shape = (1, -1, 1, 1) if data.is_image else (1, -1)
    mean = x.mean(dim=dims).view(shape)
    std = x.std(dim=dims).clamp_min(1e-8).view(shape)
    norm = lambda t: ((t.double() - mean) / std).float()  # noqa: E731
    return replace(data, x_train=norm(data.x_train), x_test=norm(data.x_test))


# ----------------------------------------------------------------------------- built in
@DATASETS.register("digits")
def digits(cfg: DictConfig) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None]  # (N, 1, 8, 8)
    n, classes = len(x), 10
    if not classes <= math.ceil(cfg.test_fraction * n) <= n - classes:  # sklearn's rounding of test_size
        raise ConfigError("dataset.test_fraction", cfg.test_fraction,
                          f"a split with a sample of each of the {classes} classes on both sides: between "
                          f"{math.ceil(classes / n * 1e4) / 1e4} and {math.floor((n - classes) / n * 1e4) / 1e4} "
                          f"for digits' {n} samples")
    xtr, xte, ytr, yte = train_test_split(
        x, bunch.target, test_size=cfg.test_fraction, random_state=cfg.split_seed, stratify=bunch.target
    )
    return Dataset("digits", torch.from_numpy(xtr), torch.from_numpy(ytr).long(),
                   torch.from_numpy(xte), torch.from_numpy(yte).long(), 10, "classification")


@DATASETS.register("gaussian_mixture")
def gaussian_mixture(cfg: DictConfig) -> Dataset:
    rng = np.random.default_rng(cfg.data_seed)
    means = rng.standard_normal((cfg.classes, cfg.dim))
    means *= cfg.separation / np.linalg.norm(means, axis=1, keepdims=True)

    def draw(n):
        y = rng.integers(0, cfg.classes, n)
        x = means[y] + rng.standard_normal((n, cfg.dim))
        return torch.from_numpy(x).float(), torch.from_numpy(y).long()

    (xtr, ytr), (xte, yte) = draw(cfg.n_train), draw(cfg.n_test)
    return Dataset("gaussian_mixture", xtr, ytr, xte, yte, cfg.classes, "classification")


@DATASETS.register("teacher_student")
def teacher_student(cfg: DictConfig) -> Dataset:
    rng = np.random.default_rng(cfg.data_seed)
    w1 = rng.standard_normal((cfg.dim, cfg.teacher_width)) / np.sqrt(cfg.dim)
    w2 = rng.standard_normal((cfg.teacher_width, 1)) / np.sqrt(cfg.teacher_width)

    def draw(n):
        x = rng.standard_normal((n, cfg.dim))
        y = np.tanh(x @ w1) @ w2 + cfg.label_noise * rng.standard_normal((n, 1))
        return torch.from_numpy(x).float(), torch.from_numpy(y).float()

    (xtr, ytr), (xte, yte) = draw(cfg.n_train), draw(cfg.n_test)
    return Dataset("teacher_student", xtr, ytr, xte, yte, 1, "regression")


def input_eigenvalues(cfg: DictConfig) -> np.ndarray:
    """The input covariance spectrum of `linear_gaussian`, largest first (see its docstring)."""
    if cfg.input_spectrum == "explicit":
        if len(cfg.eigenvalues) != cfg.dim:
            raise ConfigError("dataset.eigenvalues", list(cfg.eigenvalues), f"{cfg.dim} values (dataset.dim)")
        return np.sort(np.asarray(cfg.eigenvalues, dtype=float))[::-1]
    # power law λ_k = λ_1 k^(−p), p chosen so that λ_1/λ_d is the condition number
    k = np.arange(1, cfg.dim + 1)
    p = np.log(cfg.condition_number) / np.log(cfg.dim) if cfg.dim > 1 else 0.0
    return cfg.top_eigenvalue * k ** (-p)


@DATASETS.register("linear_gaussian")
def linear_gaussian(cfg: DictConfig) -> Dataset:
    """Linear regression with a chosen input covariance Σ: x ~ N(0, Σ), y = w*·x + `label_noise` ε.

    Σ = Q diag(λ) Qᵀ with λ from `input_eigenvalues` and Q a seeded random rotation (`rotate`; the
    identity otherwise), so the squared loss of `model=linear` (mean of (w·x + b − y)²) has the
    Hessian 2 E[x̃x̃ᵀ] = diag(2Σ, 2) in (w, b): eigenvalues 2λ_k and 2 for the bias. Inputs are not
    standardised (that would undo Σ). At the minimum the gradient-noise covariance is
    C ≈ 4 label_noise² E[x̃x̃ᵀ] = 2 label_noise² H: the noise is Hessian-aligned by construction.
    """
    rng = np.random.default_rng(cfg.data_seed)
    lam = input_eigenvalues(cfg)
    q = np.linalg.qr(rng.standard_normal((cfg.dim, cfg.dim)))[0] if cfg.rotate else np.eye(cfg.dim)
    root = q * np.sqrt(lam)  # Σ^{1/2} with Σ = root rootᵀ
    w = rng.standard_normal(cfg.dim) / np.sqrt(cfg.dim)

    def draw(n):
        x = rng.standard_normal((n, cfg.dim)) @ root.T
        y = x @ w + cfg.label_noise * rng.standard_normal(n)
        return torch.from_numpy(x).float(), torch.from_numpy(y[:, None]).float()

    (xtr, ytr), (xte, yte) = draw(cfg.n_train), draw(cfg.n_test)
    return Dataset("linear_gaussian", xtr, ytr, xte, yte, 1, "regression", standardise=False)


# ----------------------------------------------------------------------------- torchvision
def _require(root: Path, files: List[Path], name: str) -> None:
    missing = [str(f) for f in files if not (root / f).exists()]
    if missing:
        raise ConfigError(
            "dataset.root", str(root),
            f"{name} files missing there: {', '.join(missing)} (put them there, or set dataset.download=true)",
        )


def one_line(err: BaseException) -> str:
    """A library's error on one line (torchvision's span several), or its type where it says nothing."""
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def _downloading(root: Path, name: str) -> Iterator[None]:
    """torchvision's download without a network is an 85-line traceback and an empty folder left
    behind: turn it into one line, and remove what the attempt made (only folders that were not there)."""
    made = next((p for p in [root, *root.parents][::-1] if not p.exists()), None)
    before = set(root.iterdir()) if made is None else set()
    try:
        yield
    except Exception as err:  # noqa: BLE001 - URLError, RuntimeError("Error downloading ..."), checksum errors
        for path in [made] if made is not None else set(root.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        reason = one_line(err)
        raise ConfigError("dataset.download", True,
                          f"a reachable network: downloading {name} failed: {reason[:200]}; put the files "
                          f"under dataset.root={root} yourself and set dataset.download=false") from None


def _checked(data: Dataset, folder: Path) -> Dataset:
    """Files that read but do not fit together stop the run at load time with one line naming their
    folder, where they failed steps later inside the loss or the model (a traceback, and a run
    directory left with a failed run in it): a label per image, labels among the classes, test
    images of the training images' shape."""
    for split, x, y in (("training", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        problem = None
        if len(x) != len(y):
            problem = f"{len(y)} labels for {len(x)} images"
        elif len(y) and not (0 <= int(y.min()) and int(y.max()) < data.num_outputs):
            problem = f"labels in {int(y.min())}..{int(y.max())}, where {data.name} has classes 0..{data.num_outputs - 1}"
        elif split == "test" and x.shape[1:] != data.x_train.shape[1:]:
            problem = f"images of shape {tuple(x.shape[1:])}, where the training images are {tuple(data.x_train.shape[1:])}"
        if problem:
            raise ConfigError("dataset.root", str(folder), f"{data.name} files that fit together: its {split} "
                                                            f"files hold {problem}")
    return data


def _mnist_like(cls_name: str, name: str) -> Callable[[DictConfig], Dataset]:
    def load(cfg: DictConfig) -> Dataset:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        root = Path(cfg.root).expanduser()
        if not cfg.download:  # torchvision's own message names no file; ours names each
            raw = Path(cls.__name__) / "raw"
            _require(root, [raw / Path(url).name.removesuffix(".gz") for url, _ in cls.resources], name)
        if cfg.download:
            with _downloading(root, name):
                parts = [cls(str(root), train=train, download=True) for train in (True, False)]
        else:
            try:
                parts = [cls(str(root), train=train, download=False) for train in (True, False)]
            except Exception as err:  # noqa: BLE001 - torchvision's reader on damaged or foreign files
                raise ConfigError("dataset.root", str(root),
                                  f"{name} files that torchvision can read: reading {root / cls.__name__ / 'raw'} "
                                  f"failed ({one_line(err)[:200]}); replace them with the original files") from None
        (xtr, ytr), (xte, yte) = [(p.data[:, None].float(), p.targets.long()) for p in parts]
        return _checked(Dataset(name, xtr, ytr, xte, yte, len(parts[0].classes), "classification"),
                        root / cls.__name__ / "raw")

    return load


DATASETS.register("mnist")(_mnist_like("MNIST", "mnist"))
DATASETS.register("fashion_mnist")(_mnist_like("FashionMNIST", "fashion_mnist"))

# CIFAR's on-disk format (python pickles of uint8 rows). We read it ourselves because torchvision
# checks the md5 of every file on every load, which rejects any copy but the original archive.
_CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": ("CIFAR100", "cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles, and `pickle.load` runs whatever a crafted file names. This one admits
    only the globals a CIFAR batch holds (dicts, lists, bytes and numpy arrays: the array
    reconstructor, ndarray, dtype, numpy scalars, and `_codecs.encode`, which protocol 2 uses for
    bytes); any other global is refused before it is imported, so no code from the file runs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise ConfigError("dataset.root", str(self.path.parent),
                              f"CIFAR files holding only arrays, lists and bytes: {self.path.name} asks for "
                              f"{module}.{name} (refused, nothing from it was run)")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> dict:
    """One CIFAR batch through the restricted unpickler; a file that is not one is a one-line error."""
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, path).load()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - truncated or foreign file
        raise ConfigError("dataset.root", str(path.parent), f"CIFAR batches in python format: {path.name} "
                                                            f"cannot be read ({type(err).__name__})") from None
    if not isinstance(batch, dict):
        raise ConfigError("dataset.root", str(path.parent), f"CIFAR batches (dicts): {path.name} holds a "
                                                            f"{type(batch).__name__}")
    return batch


def _cifar(name: str) -> Callable[[DictConfig], Dataset]:
    cls_name, folder, train_files, test_files, label_key, classes = _CIFAR[name]

    def read(paths: List[Path]) -> Tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for path in paths:
            batch = _read_cifar_batch(path)
            # keys as the original (bytes) or as a batch written from Python 3 (str)
            data, labels = (batch.get(k, batch.get(k.decode())) for k in (b"data", label_key))
            data = None if data is None else np.asarray(data)
            if data is None or labels is None or data.dtype != np.uint8 or data.shape[1:] != (3072,):
                found = "no data" if data is None else f"data of shape {data.shape} and dtype {data.dtype}"
                raise ConfigError("dataset.root", str(path.parent),
                                  f"CIFAR batches holding {b'data'!r} (N x 3072 uint8) and {label_key!r}: "
                                  f"{path.name} has {found}" + ("" if labels is not None else ", no labels"))
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(np.asarray(labels, dtype=np.int64))
        return torch.from_numpy(np.concatenate(xs)).float(), torch.from_numpy(np.concatenate(ys))

    def load(cfg: DictConfig) -> Dataset:
        root = Path(cfg.root).expanduser()
        if cfg.download:
            import torchvision.datasets as tvd

            with _downloading(root, name):
                getattr(tvd, cls_name)(str(root), train=True, download=True)
        _require(root, [Path(folder) / f for f in train_files + test_files], name)
        xtr, ytr = read([root / folder / f for f in train_files])
        xte, yte = read([root / folder / f for f in test_files])
        return _checked(Dataset(name, xtr, ytr, xte, yte, classes, "classification"), root / folder)

    return load


DATASETS.register("cifar10")(_cifar("cifar10"))
DATASETS.register("cifar100")(_cifar("cifar100"))
