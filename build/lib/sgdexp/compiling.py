"""`torch.compile` for the few hot kernels that gain from it, with a safe fallback.

`trainer.compile=true` turns it on (see README, "Compiled kernels"). Compiling needs a C++
compiler on CPU; where it fails, the kernel runs eagerly after one warning, with the same
results up to float rounding. The first call, which compiles, is logged with its duration.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Callable

import torch

log = logging.getLogger(__name__)


def compile_or_eager(fn: Callable, name: str, **options) -> Callable:
    """`torch.compile(fn, **options)`, falling back to `fn` itself (with one warning) if compiling fails."""
    compiled = torch.compile(fn, **options)
    failed, first = False, True

    def call(*args):
        nonlocal failed, first
        if not failed:
            try:
                start = time.perf_counter()
                out = compiled(*args)
                if first:
                    first = False
                    log.info("torch.compile of %s: first call (compiling) %.1f s", name, time.perf_counter() - start)
                return out
            except Exception as error:  # a missing or broken C++ toolchain surfaces on the first call
                failed = True
                first_line = str(error).splitlines()[0] if str(error) else ""
                warnings.warn(f"torch.compile of {name} failed ({type(error).__name__}: {first_line}); running it eagerly")
        return fn(*args)

    call.compiled = lambda: not failed
    return call
