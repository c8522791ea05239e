"""`torch.compile` for the few hot kernels that gain from it, with a safe fallback.

`trainer.compile=true` turns it on (see README, "Compiled kernels"). Compiling needs a C++
compiler on CPU; where it fails, the kernel runs eagerly after one warning, with the same
results up to float rounding. The first call, which compiles, is logged with its duration, and
with one line naming the operators that vmap had no batching rule for while torch traced the kernel
(eval-mode batch norm, the pooling of a ResNet's head): torch warns of each, once per tracing pass,
and bakes a loop over the samples into the compiled kernel there, which is then no faster than eager.
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from typing import Callable

import torch

log = logging.getLogger(__name__)

# torch's warning for an operator that vmap runs one sample at a time (functorch's BatchedFallback)
BATCHING_FALLBACK = re.compile(r"have not yet implemented the batching rule for (\S+?)\.")


def _first_call(compiled: Callable, name: str, args) -> object:
    """Compile and run, logging the time and, in one line, the operators traced without a batching
    rule; other warnings pass through, each once."""
    start = time.perf_counter()
    looped = set()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = compiled(*args)
    finally:  # also when compiling fails: its other warnings are the user's to see, each once
        passed = set()
        for w in caught:
            match = BATCHING_FALLBACK.search(str(w.message))
            if match:
                looped.add(match.group(1))
            elif (str(w.message), w.category, w.filename, w.lineno) not in passed:
                passed.add((str(w.message), w.category, w.filename, w.lineno))
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    log.info("torch.compile of %s: first call (compiling) %.1f s", name, time.perf_counter() - start)
    if looped:
        log.warning("torch.compile of %s: vmap has no batching rule for %s, so the compiled kernel loops over "
                    "samples there and may be no faster than eager (trainer.compile=false)", name, ", ".join(sorted(looped)))
    return out


def compile_or_eager(fn: Callable, name: str, **options) -> Callable:
    """`torch.compile(fn, **options)`, falling back to `fn` itself (with one warning) if compiling fails."""
    compiled = torch.compile(fn, **options)
    failed, first = False, True

    def call(*args):
        nonlocal failed, first
        if not failed:
            try:
                if first:
                    first = False
                    return _first_call(compiled, name, args)
                return compiled(*args)
            except Exception as error:  # a missing or broken C++ toolchain surfaces on the first call
                failed = True
                first_line = str(error).splitlines()[0] if str(error) else ""
                warnings.warn(f"torch.compile of {name} failed ({type(error).__name__}: {first_line}); running it eagerly")
        return fn(*args)

    call.compiled = lambda: not failed
    return call
