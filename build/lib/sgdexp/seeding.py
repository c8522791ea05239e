"""Independent random streams from one seed: `seed` alone makes a run reproducible."""
from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named stream (sampler, noise, ...), independent across streams and seeds."""
    return int(np.random.SeedSequence([seed, zlib.crc32(stream.encode())]).generate_state(2, np.uint64)[0] >> np.uint64(1))
