"""Speed and memory of the noise generators (sgdexp.noise.generators).

Run: ``python scripts/bench_generators.py [--device cpu] [--threads N] [--quick]``. Prints a small table:

* exact fGn (Davies--Harte), 10^4 streams x 4096 steps, float32: wall time (target <= 2 s on
  2 CPU cores). "first" includes the one-off eigenvalue computation (cached afterwards).
* per-step time of the stateful sources (eager, and ``compile=True``: torch.compile'd samplers
  on SplitMix64 words; compiling happens in the warm-up) and of ``symmetric_alpha_stable`` for
  d coordinates, and its ratio to a plain ``torch.randn(d)``.
* streaming fGn memory after 10^4 and 10^5 steps: the object's tensor bytes and the process
  resident set size (RSS), which stay flat (measured first, before the large allocations).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sgdexp.noise import (  # noqa: E402
    AntiCorrelatedNoise,
    StableNoise,
    StreamingFGN,
    WhiteNoise,
    fractional_gaussian_noise,
    symmetric_alpha_stable,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_call(fn, device, reps: int, warmup: int = 3) -> float:
    """Seconds per call: the fastest of 5 batches of ``reps // 5`` calls (robust to other load)."""
    for _ in range(warmup):
        fn()
    sync(device)
    batch = max(1, reps // 5)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        sync(device)
        times.append((time.perf_counter() - t) / batch)
    return min(times)


def rss_mib() -> float:
    """Current resident set size (VmRSS) in MiB; falls back to the peak (ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")

    # ---- streaming memory (first, so earlier big allocations do not mask the RSS) ---------------
    d = 10**4
    checkpoints = (10**3, 10**4) if args.quick else (10**4, 10**5)
    print(f"\nStreamingFGN(0.7, d={d}, K=16) memory vs steps drawn")
    print(f"{'steps':>8} {'tensor KiB':>11} {'RSS MiB':>8} {'peak RSS MiB':>13}")
    src = StreamingFGN(0.7, d, generator=g, device=device)
    src.sample()
    print(f"{src.steps:>8} {src.tensor_bytes() / 1024:>11.1f} {rss_mib():>8.1f} {peak_rss_mib():>13.1f}")
    for target in checkpoints:
        while src.steps < target:
            src.sample()
        print(f"{src.steps:>8} {src.tensor_bytes() / 1024:>11.1f} {rss_mib():>8.1f} {peak_rss_mib():>13.1f}")
    print(f"(state bound 32*d float32 = {32 * d * 4 / 1024:.0f} KiB)")
    del src

    # ---- per-step cost ---------------------------------------------------------------------------
    sizes = (10**4, 10**5) if args.quick else (10**5, 10**6)
    print("\nper-step time, float32, fastest of 5 batches (ratio = time / torch.randn(d) timed alongside)")
    print(f"{'source':<32} {'d':>8} {'ms/step':>9} {'ratio':>7}")
    for d in sizes:
        reps = 200 if d <= 10**5 else 50
        randn = lambda: torch.randn(d, generator=g, device=device)  # noqa: E731
        rows = [
            ("torch.randn(d)", None),
            ("WhiteNoise", WhiteNoise(d, generator=g, device=device).sample),
            ("WhiteNoise, compiled", WhiteNoise(d, generator=g, device=device, compile=True).sample),
            ("AntiCorrelatedNoise", AntiCorrelatedNoise(d, generator=g, device=device).sample),
            ("AntiCorrelatedNoise, compiled", AntiCorrelatedNoise(d, generator=g, device=device, compile=True).sample),
            ("symmetric_alpha_stable(1.5)", lambda: symmetric_alpha_stable(1.5, d, generator=g, device=device)),
            ("StableNoise(1.5)", StableNoise(1.5, d, generator=g, device=device).sample),
            ("StableNoise(1.5), compiled", StableNoise(1.5, d, generator=g, device=device, compile=True).sample),
            ("StreamingFGN(0.3, K=16)", StreamingFGN(0.3, d, generator=g, device=device).sample),
            ("StreamingFGN(0.7, K=16)", StreamingFGN(0.7, d, generator=g, device=device).sample),
            ("StreamingFGN(0.7, K=8)", StreamingFGN(0.7, d, generator=g, device=device, n_factors=8).sample),
            ("StreamingFGN(0.7, K=32)", StreamingFGN(0.7, d, generator=g, device=device, n_factors=32).sample),
        ]
        for name, fn in rows:  # the baseline is re-timed next to each row (paired ratio)
            base = per_call(randn, device, reps)
            t = base if fn is None else per_call(fn, device, reps)
            print(f"{name:<32} {d:>8} {1e3 * t:>9.3f} {t / base:>7.2f}")

    # ---- exact fGn -----------------------------------------------------------------------------
    streams, steps = (10**3, 4096) if args.quick else (10**4, 4096)
    print(f"\nexact fGn (Davies-Harte), {streams} streams x {steps} steps")
    print(f"{'dtype':<8} {'hurst':>5} {'first s':>8} {'median s':>9} {'target':>7}")
    for dtype in (torch.float32, torch.float64):
        for hurst in (0.3, 0.7):
            t = time.perf_counter()
            fractional_gaussian_noise(steps, hurst, streams, generator=g, dtype=dtype, device=device)
            sync(device)
            first = time.perf_counter() - t
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                fractional_gaussian_noise(steps, hurst, streams, generator=g, dtype=dtype, device=device)
                sync(device)
                runs.append(time.perf_counter() - t)
            target = "<= 2 s" if dtype == torch.float32 else ""
            print(f"{str(dtype)[6:]:<8} {hurst:>5} {first:>8.3f} {statistics.median(runs):>9.3f} {target:>7}")

if __name__ == "__main__":
    main()
