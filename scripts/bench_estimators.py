"""Accuracy and speed of the sgdexp.stats estimators against exact ground truth and reference packages.

    python scripts/bench_estimators.py            # full run (~9.5 minutes, 6 of them levy_stable.fit)
    python scripts/bench_estimators.py --quick    # fewer series, no scipy MLE fit (~1 minute)

Ground truth comes from sgdexp.noise.generators: exact symmetric alpha-stable samples (CMS) for
alpha in {1.2, 1.5, 1.8, 2.0} and exact fractional Gaussian noise (Davies-Harte) for
H in {0.2, 0.35, 0.5, 0.65, 0.8}, series lengths 1024, 4096, 16384, float64.

For every (truth, n) cell and every method: bias, RMSE and wall time per series. Our estimators
run on all series at once; reference packages run one series at a time (that is their API), on
FEWER series where they are slow (the count is printed in the "series" column):

* tail index: ``scipy.stats.levy_stable.fit`` (maximum likelihood; 30-80 s per series even with
  beta = 0 and loc = 0 fixed, so only 2 series per alpha at n = 1024 (``--mle-series``), skipped
  with --quick), and
  scipy's McCulloch quantile estimator ``levy_stable._fitstart`` (private, fast; the starting
  point of ``fit``).
* Hurst: ``nolds.dfa`` (slow: ~0.2 s per series at n = 4096, 1.3 s at 16384), ``nolds.hurst_rs``
  and ``hurst.compute_Hc(kind="change")``.

Finally each Hurst method's answer on AR(1) with phi = 0.5 (true H = 0.5: short memory only) at
n = 16384, and a check of the targets (default tail_index RMSE <= 0.05 and default
hurst_exponent RMSE <= 0.015 at n = 4096; no worse than the best reference; faster per series
than every reference package).
"""

from __future__ import annotations

import os

# one thread everywhere: the reference packages are single-threaded, and on a shared 2-core
# machine multi-threaded BLAS timings are dominated by contention
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.signal import lfilter  # noqa: E402

from sgdexp.noise.generators import fractional_gaussian_noise, symmetric_alpha_stable  # noqa: E402
from sgdexp.stats import (  # noqa: E402
    DEFAULT_HURST_METHOD,
    DEFAULT_TAIL_METHOD,
    HURST_METHODS,
    TAIL_METHODS,
    hurst_exponent,
    tail_index,
)

ALPHAS = (1.2, 1.5, 1.8, 2.0)
HURSTS = (0.2, 0.35, 0.5, 0.65, 0.8)
LENGTHS = (1024, 4096, 16384)


def _refs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import hurst as hurst_pkg
        import nolds
        from scipy.stats import levy_stable
    return nolds, hurst_pkg, levy_stable


class Table:
    def __init__(self, title, truth_name):
        self.title, self.truth_name, self.rows = title, truth_name, []

    def add(self, truth, n, method, est, seconds):
        est = np.asarray(est, dtype=float)
        err = est - truth
        self.rows.append(dict(truth=truth, n=n, method=method, count=len(est), bias=float(np.mean(err)),
                              rmse=float(np.sqrt(np.mean(err ** 2))), ms=1e3 * seconds / len(est)))

    def show(self):
        print(f"\n== {self.title} ==")
        print(f"{self.truth_name:>6} {'n':>6}  {'method':<34} {'series':>6} {'bias':>8} {'RMSE':>7} {'ms/series':>10}")
        for r in self.rows:
            print(f"{r['truth']:>6} {r['n']:>6}  {r['method']:<34} {r['count']:>6} {r['bias']:>+8.4f} "
                  f"{r['rmse']:>7.4f} {r['ms']:>10.3f}")

    def get(self, truth, n, prefix):
        return [r for r in self.rows if r["truth"] == truth and r["n"] == n and r["method"].startswith(prefix)]


def timed(fn, *args, repeats=3, **kw):
    """Result and the median wall time of ``repeats`` calls (our vectorised calls are short, so
    one context switch on a shared machine would otherwise dominate)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def per_series(fn, X, count):
    """Run a one-series reference function on the first ``count`` columns of X (n, S)."""
    count = min(count, X.shape[1])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = [fn(np.ascontiguousarray(X[:, j])) for j in range(count)]
    return np.array(est, dtype=float), time.perf_counter() - t0


def bench_tail(args, gen, levy_stable):
    tab = Table("Tail index alpha: exact SaS (CMS)", "alpha")
    for alpha in ALPHAS:
        for n in args.lengths:
            X = symmetric_alpha_stable(alpha, (n, args.series), generator=gen, dtype=torch.float64).numpy()
            for m in TAIL_METHODS:
                tail_index(X[:, :2], method=m)  # warm-up
                est, sec = timed(tail_index, X, method=m)
                tab.add(alpha, n, m + (" (default)" if m == DEFAULT_TAIL_METHOD else ""), est, sec)
            est, sec = per_series(lambda x: levy_stable._fitstart(x)[0], X, args.series)
            tab.add(alpha, n, "ref scipy McCulloch (_fitstart)", np.clip(est, 0, 2), sec)
            if args.mle_series and n == 1024:
                est, sec = per_series(lambda x: levy_stable.fit(x, f1=0, floc=0)[0], X, args.mle_series)
                tab.add(alpha, n, "ref scipy levy_stable.fit (MLE)", est, sec)
            print(f"  tail alpha={alpha} n={n} done", flush=True)
    return tab


def bench_hurst(args, gen, nolds, hurst_pkg):
    refs = {
        "ref nolds.dfa": (lambda x: nolds.dfa(x), args.dfa_series),
        "ref nolds.hurst_rs": (lambda x: nolds.hurst_rs(x), args.rs_series),
        "ref hurst.compute_Hc(change)": (lambda x: hurst_pkg.compute_Hc(x, kind="change")[0], args.hc_series),
    }
    tab = Table("Hurst exponent H: exact fGn (Davies-Harte)", "H")
    for H in HURSTS:
        for n in args.lengths:
            X = fractional_gaussian_noise(n, H, args.series, generator=gen, dtype=torch.float64).numpy()
            for m in HURST_METHODS:
                hurst_exponent(X[:, :2], method=m)  # warm-up (Whittle caches its spectral table per n)
                est, sec = timed(hurst_exponent, X, method=m)
                tab.add(H, n, m + (" (default)" if m == DEFAULT_HURST_METHOD else ""), est, sec)
            for name, (fn, count) in refs.items():
                count = count if n < 16384 else max(1, count // 2) if name == "ref nolds.dfa" else count
                est, sec = per_series(fn, X, count)
                tab.add(H, n, name, est, sec)
            print(f"  hurst H={H} n={n} done", flush=True)
    return tab


def bench_ar1(args, nolds, hurst_pkg):
    n, S, phi = 16384, args.ar1_series, 0.5
    rng = np.random.default_rng(args.seed + 1)
    e = rng.standard_normal((n, S))
    e[0] /= np.sqrt(1 - phi ** 2)
    X = lfilter([1.0], [1.0, -phi], e, axis=0)
    print(f"\n== AR(1) phi = {phi}, n = {n} (true H = 0.5: short memory, no long memory) ==")
    print(f"{'method':<34} {'series':>6} {'mean H':>8} {'sd':>7} {'max |H-0.5|':>12}")

    def line(name, est):
        print(f"{name:<34} {len(est):>6} {np.mean(est):>8.4f} {np.std(est):>7.4f} {np.max(np.abs(est - 0.5)):>12.4f}")

    out = {}
    for m in HURST_METHODS:
        est = np.atleast_1d(hurst_exponent(X, method=m))
        out[m] = est
        line(m + (" (default)" if m == DEFAULT_HURST_METHOD else ""), est)
    line("ref nolds.dfa", per_series(lambda x: nolds.dfa(x), X, max(1, args.dfa_series // 2))[0])
    line("ref nolds.hurst_rs", per_series(lambda x: nolds.hurst_rs(x), X, args.rs_series)[0])
    line("ref hurst.compute_Hc(change)",
         per_series(lambda x: hurst_pkg.compute_Hc(x, kind="change")[0], X, args.hc_series)[0])
    return out


def check_targets(tail_tab, hurst_tab, ar1):
    print("\n== Targets (n = 4096) ==")
    ok_all = True

    def report(ok, text):
        nonlocal ok_all
        ok_all &= ok
        print(f"[{'PASS' if ok else 'FAIL'}] {text}")

    for tab, truths, default, target, kind in (
        (tail_tab, ALPHAS, DEFAULT_TAIL_METHOD, 0.05, "tail_index"),
        (hurst_tab, HURSTS, DEFAULT_HURST_METHOD, 0.015, "hurst_exponent"),
    ):
        if 4096 not in {r["n"] for r in tab.rows}:
            print(f"(n = 4096 not run: {kind} targets not checked)")
            continue
        worst = max(tab.get(t, 4096, default)[0]["rmse"] for t in truths)
        report(worst <= target, f"default {kind} ({default}) worst RMSE over the grid {worst:.4f} <= {target}")
        for t in truths:
            d = tab.get(t, 4096, default)[0]
            refs = tab.get(t, 4096, "ref ")
            best = min(refs, key=lambda r: r["rmse"])
            report(d["rmse"] <= best["rmse"] + 1e-12,
                   f"{kind} truth={t}: default RMSE {d['rmse']:.4f} <= best reference "
                   f"{best['method'][4:]} {best['rmse']:.4f} ({best['count']} series)")
        ours = max(r["ms"] for t in truths for r in tab.get(t, 4096, default))
        for name in sorted({r["method"] for r in tab.rows if r["method"].startswith("ref ")}):
            rows = [r for r in tab.rows if r["method"] == name and r["n"] == 4096]
            if rows:
                theirs = min(r["ms"] for r in rows)
                report(ours < theirs, f"{kind}: default {ours:.3f} ms/series (slowest cell) faster than "
                                      f"{name[4:]} {theirs:.3f} ms/series (fastest cell)")
    if "local_whittle" in ar1:
        dev = np.max(np.abs(ar1["local_whittle"] - 0.5))
        report(dev <= 0.1, f"local_whittle on AR(1) phi=0.5, n=16384: every series within 0.1 of 0.5 (max {dev:.4f})")
    print("Note: scipy levy_stable.fit (MLE) is only run at n = 1024 on a couple of series (30-80 s each):"
          " it is the efficient estimator and may well beat the default there, at ~1e5-1e6 times the cost;"
          " the n = 4096 reference comparison above is against the references actually run at n = 4096.")
    print("all targets met" if ok_all else "SOME TARGETS MISSED")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer series, no scipy MLE fit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("tail", "hurst", "ar1"), default=None)
    p.add_argument("--mle-series", type=int, default=None,
                   help="series per alpha for scipy levy_stable.fit at n=1024 (default 2; 0 with --quick); "
                        "30-80 s each")
    args = p.parse_args(argv)
    args.lengths = LENGTHS
    if args.quick:
        args.series = 40
        args.dfa_series, args.rs_series, args.hc_series, args.ar1_series = 4, 20, 10, 20
    else:
        args.series = 200
        args.dfa_series, args.rs_series, args.hc_series, args.ar1_series = 20, 200, 50, 50
    if args.mle_series is not None:
        args.mle_series = max(0, args.mle_series)
    else:
        args.mle_series = 0 if args.quick else 2
    torch.set_num_threads(1)
    nolds, hurst_pkg, levy_stable = _refs()
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    print(f"sgdexp.stats benchmark: {args.series} series per cell for our estimators; reference packages "
          f"one series at a time on fewer series: levy_stable.fit {args.mle_series} (n=1024 only"
          f"{', skipped' if not args.mle_series else ''}), nolds.dfa {args.dfa_series} "
          f"({max(1, args.dfa_series // 2)} at n=16384), nolds.hurst_rs {args.rs_series}, "
          f"hurst.compute_Hc {args.hc_series}. Times: wall clock, one thread; ours = median of 3 calls on "
          f"all series after a warm-up call, references = one pass over their series.")
    tail_tab = hurst_tab = None
    ar1 = {}
    if args.only in (None, "tail"):
        tail_tab = bench_tail(args, gen, levy_stable)
        tail_tab.show()
    if args.only in (None, "hurst"):
        hurst_tab = bench_hurst(args, gen, nolds, hurst_pkg)
        hurst_tab.show()
    if args.only in (None, "ar1"):
        ar1 = bench_ar1(args, nolds, hurst_pkg)
    if tail_tab is not None and hurst_tab is not None:
        check_targets(tail_tab, hurst_tab, ar1)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
