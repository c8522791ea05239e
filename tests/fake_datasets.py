"""Tiny copies of the torchvision datasets, written in their real on-disk formats."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (MNIST): magic (0, 0, dtype 0x08 = uint8, ndim), big-endian int32 dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def write_cifar(root: Path, name: str = "cifar10", n_per_file: int = 20, seed: int = 0) -> None:
    """CIFAR's python format: pickled dicts with bytes keys, `data` as (n, 3072) uint8 rows."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, files, key, classes = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
    else:
        folder, files, key, classes = "cifar-100-python", ["train", "test"], b"fine_labels", 100
    out = Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        # The keys and types of the real batches: bytes keys, labels as a list of Python ints, a bytes
        # batch label and bytes file names (CIFAR-100 also has coarse labels).
        batch = {b"batch_label": f"{f} of {name}".encode(), b"data": rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8),
                 key: [int(i) % classes for i in range(n_per_file)],
                 b"filenames": [f"img_{i:05d}.png".encode() for i in range(n_per_file)]}
        if name == "cifar100":
            batch[b"coarse_labels"] = [int(i) % 20 for i in range(n_per_file)]
        with open(out / f, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
