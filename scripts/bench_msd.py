"""Speed of `sgdexp.stats.msd` against a plain numpy loop over lags and the old implementation.

    python scripts/bench_msd.py            # a (10^4 steps x 10^3 coordinates) float64 trajectory
    python scripts/bench_msd.py --quick    # (2000 x 200)

At 30 log-spaced lags and at all T - 1 lags: `msd` (its own choice), each of its two algorithms
forced (direct: one BLAS dot per lag; FFT: Calandrini et al.), the numpy loop
``((x[tau:] - x[:-tau])**2).sum() / (T - tau)`` and the old `mean_squared_displacement` (a torch loop
over lags in chunks of 256 rows, copied here from before this change). At all lags the two loops would
take minutes: they are timed on 30 evenly spaced lags and scaled by (T - 1)/30 (printed as "~").
Also the largest relative difference between `msd` and the loop. Timings are best of `--repeat`
(minimum: the least disturbed by other processes on a shared machine), after one untimed call.
"""
from __future__ import annotations

import os

# one thread: BLAS and FFT timings on a shared 2-core machine are otherwise dominated by contention
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sgdexp.stats import log_lags, msd  # noqa: E402
from sgdexp.stats.diffusion import _msd_direct, _msd_fft, _trajectory  # noqa: E402

torch.set_num_threads(1)


def numpy_loop(x: np.ndarray, lags) -> np.ndarray:
    return np.array([((x[t:] - x[: len(x) - t]) ** 2).sum() / (len(x) - t) for t in lags])


def old_msd(x: np.ndarray, lags) -> np.ndarray:
    """`stats.mean_squared_displacement` before `msd` (its MSD part, without the fit)."""
    th = torch.from_numpy(x)
    T = th.shape[0]
    out = np.empty(len(lags))
    for i, tau in enumerate(lags):
        tot = 0.0
        for s in range(0, T - tau, 256):
            e = min(s + 256, T - tau)
            d = th[s + tau: e + tau].to(torch.float64) - th[s:e].to(torch.float64)
            tot += float((d * d).sum())
        out[i] = tot / (T - tau)
    return out


def best(fn, repeat: int) -> float:
    # one untimed call first: a cold first call pays the page faults of its fresh arrays (msd at all
    # lags, 10^4 x 10^3: 0.235 s cold against 0.12 s warm), which is not the algorithm's cost
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    T, d = (2000, 200) if args.quick else (10_000, 1000)
    x = np.cumsum(np.random.default_rng(0).standard_normal((T, d)), axis=0)
    X = _trajectory(x)
    print(f"trajectory {T} x {d} float64, torch threads {torch.get_num_threads()}; seconds (best of {args.repeat})")
    sample = np.linspace(1, T - 1, 30).astype(int)
    for name, lags in (("30 log-spaced lags", log_lags(T - 1, 30)), (f"all {T - 1} lags", np.arange(1, T))):
        scale = 1.0 if len(lags) <= 30 else (T - 1) / len(sample)
        loop_lags = lags if len(lags) <= 30 else sample
        t_loop = best(lambda: numpy_loop(x, loop_lags), args.repeat) * scale
        t_old = best(lambda: old_msd(x, loop_lags), 1) * scale
        t_msd = best(lambda: msd(x, lags), args.repeat)
        t_direct = best(lambda: _msd_direct(X, lags), 1 if len(lags) > 30 else args.repeat) if len(lags) <= 30 or args.quick else float("nan")
        t_fft = best(lambda: _msd_fft(X, lags), args.repeat)
        ref = numpy_loop(x, loop_lags)
        got = msd(x, lags)[np.searchsorted(lags, loop_lags)]
        approx = "~" if scale > 1 else " "
        print(f"{name:>20}: msd {t_msd:.3f} | direct {t_direct:.3f} | fft {t_fft:.3f} | numpy loop {approx}{t_loop:.3f} "
              f"| old {approx}{t_old:.3f} | loop/msd {t_loop / t_msd:.1f}x, old/msd {t_old / t_msd:.1f}x "
              f"| max rel diff {np.max(np.abs(got / ref - 1)):.1e}")


if __name__ == "__main__":
    main()
