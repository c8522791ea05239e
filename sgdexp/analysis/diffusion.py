"""`analysis=[diffusion]`: how the weights move through training (Chen et al., anomalous diffusion).

The weights are recorded every `every` steps (after the update, and step 0) as a vector of D numbers:
the parameters themselves when the model has at most `dims` of them, otherwise a fixed seeded
random projection to D numbers, D the largest prime ≤ `dims` (4093 for 4096). The projection is a
signed fold: coordinate i is added with a random sign s_i to bucket i mod D. With random signs
E‖Pv‖² = ‖v‖² for every v and any assignment of coordinates to buckets; the relative error of one
squared distance has standard deviation about √(2/D) (2% at D = 4093) as long as no bucket collects
much more of the displacement than others, which a prime D ensures: no period of a parameter layout
(widths, channels, kernel sizes) lines up with it. Measured on the default MLP's displacements over
1000 steps: 1.9% at D = 4093, where a count sketch with random buckets gives 2.2% and a fold at the
power of two 1024 gives 5.2% against 4.0%. A fold is a reshape and a sum (11 µs per record for the
MLP's 26k weights on a CPU core, against 37 µs for a count sketch's scatter), and needs d signs of
memory, where a dense Gaussian projection would need D·d numbers.

What is kept, and so the memory bound (none of it grows with the run's length, and a checkpoint of
the default analysis is ~0.5 MB):
- the time-averaged MSD(τ) over consecutive windows of `buffer` records (origins every
  buffer // 64 records, lags up to buffer // 4: `sgdexp.stats.WindowedMSD`, fed each block of 64
  records), whose exponent γ_window is "γ in windows through training": it keeps the origins that
  later records can still reach (about 25 records by default), not the window. A completed window
  is logged at the first measurement after its block of records reached the window MSD (within 64
  records of its end), and the end of the run logs the window in progress if none completed since
  the last one;
- for each waiting time t_w in `waiting_times`, the record at t_w (D float64 numbers) and the squared
  distances ‖θ_{t_w+τ} − θ_{t_w}‖² at `lags` log-spaced lags τ up to the end of the run, taken as the
  weights pass those steps (a few scalars each): MSD(t_w, τ) on a log grid from one trajectory (the
  average ⟨·⟩ over runs is a sweep over seeds). t_w = 0 is the distance from initialisation.
- the path length Σ‖θ_t − θ_{t−every}‖ (between records; exact or projected like the rest);
- up to 8 staged records not yet folded (the raw weights, at most 2^22 numbers), and a block of up to
  64 folded records (see `__init__`).

The end of the run is measured on its weights even where it is not a recorded step (`every` does not
divide it or exceeds it, a stopping rule): the distance from init and the path length's last move
reach it, while the records stay `every` steps apart (the MSDs' lag grids; a checkpoint holds no
record of the end).

Each measurement (every `log_every` steps and at the end) logs the distance from init, path length,
γ_window, the persistence (the cosine between the move since the last measurement and the one before
it: a drift or a random walk, which the MSD's exponent alone does not tell apart; taken between the
records at the measurements, and left out where there is no new record since the last), and for each t_w
the fitted γ, the local exponent γ(τ) = d log MSD / d log τ at the latest lag, and the crossover
step t_w + τ_c where γ(τ) first falls from above 1 to below 1 (super- to sub-diffusion; NaN while it
has not). For the first waiting time these are also `diffusion/gamma_early` and
`diffusion/gamma_late` (fits below and above the crossover, or below and above the log-midpoint of
the lags measured when there is none) and `diffusion/crossover_step`. The curves go to arrays.jsonl
(a waiting time's when it gained points since it was last logged), from which the report (and the
run, at its end) draws MSD(t_w, τ) log–log with the fitted slopes and γ(τ)
(`sgdexp.report.figures.msd_curves`: one drawing for a run and for a sweep). The summary holds the
latest value of each key logged (a measurement that leaves out the persistence or γ_window keeps the
one before).
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from sgdexp.analysis.base import Analysis, Measurement
from sgdexp.stats import WindowedMSD, cosine, crossover, local_exponents, log_lags, power_law_fit

log = logging.getLogger(__name__)

PREFIX = "diffusion"
WINDOW_ORIGINS = 64  # time origins per lag of the window MSD
STAGE_RECORDS = 8  # raw records folded together
STAGE_NUMBERS = 1 << 22  # and at most this many staged numbers (16 MB in float32)
BLOCK_RECORDS = 64  # folded records whose moves and window pairs are taken together


def early_late(lags: np.ndarray, values: np.ndarray, cross: float) -> Tuple[float, float]:
    """Power-law exponents below and above `cross` (or the log-midpoint of `lags` when it is NaN)."""
    split = cross if np.isfinite(cross) else float(np.sqrt(lags[0] * lags[-1]))
    early, late = lags <= split, lags >= split
    return power_law_fit(lags[early], values[early])[0], power_law_fit(lags[late], values[late])[0]


def largest_prime_at_most(n: int) -> int:
    """The largest prime ≤ n (n itself below 2): the projection's width (trial division: n is a
    dimension count, and this runs once per run)."""
    for m in range(n, 1, -1):
        if all(m % k for k in range(2, int(m ** 0.5) + 1)):
            return m
    return n


class Diffusion(Analysis):
    records_weights = True

    def __init__(self, cfg, source, noise_cfg, seed, steps):
        super().__init__(cfg, source, noise_cfg, seed, steps)
        self.log_every, self.buffer = int(cfg.log_every), int(cfg.buffer)
        d, dims = source.dim, int(cfg.dims)
        self.projected = d > dims
        self.D = largest_prime_at_most(dims) if self.projected else d
        device = source.data.x_train.device
        dtype = source.params[0].dtype
        self.folds = -(-d // self.D)  # rows of D in the zero-padded parameter vector (1 when exact)
        # Two buffers, so that the training loop pays one copy of the weights per record and the
        # rest runs a few torch calls per many records (a call's dispatch costs as much as its
        # arithmetic on these sizes):
        # - `stage`: up to 8 raw records (zero-padded), folded together. Small enough to stay in
        #   cache between the copies: a 64-record stage (7 MB for the default MLP) is written to
        #   memory and read back, which cost the training loop more than the fold;
        # - `block`: up to 64 folded records after a row 0 that holds the record before them (the
        #   first record itself at the start), so that each row's move is one subtraction from the
        #   row above. The path length's moves and the window MSD's pairs are taken from a full
        #   block, or from its rows so far when a measurement or a checkpoint asks.
        self.stage_size = max(1, min(STAGE_RECORDS, STAGE_NUMBERS // (self.folds * self.D)))
        self.stage = torch.zeros(self.stage_size, self.folds * self.D, dtype=dtype, device=device)
        self.stage_rows = [row[:d] for row in self.stage.unbind(0)]  # the parameters of each staged record
        self.staged: List[int] = []  # steps of the records in `stage`, oldest first
        self._params: Optional[List[torch.Tensor]] = None  # flat views of the parameters (`_flat_params`)
        self._pointers: List[int] = []
        if self.projected:
            # signs for the padding too: it stays zero, so the fold is one multiply and one sum
            self.sign = (torch.randint(2, (self.folds * self.D,), generator=self.generator) * 2 - 1).to(dtype).to(device)
            log.info("diffusion: %d parameters > dims=%d: recording a seeded random projection to %d dimensions",
                     d, dims, self.D)
        else:
            self.sign = None
            log.info("diffusion: %d parameters <= dims=%d: recording the weights exactly", d, dims)
        self.block = torch.zeros(1 + BLOCK_RECORDS, self.D, dtype=torch.float32, device=device)  # folded records
        self.moves = torch.zeros(BLOCK_RECORDS, self.D, dtype=torch.float32, device=device)  # into each of them
        self.in_block = 0  # records in `block` (rows 1 … in_block)
        self.moved = 0  # of them, those whose move is in the path length
        self.windowed = 0  # of them, those given to the window MSD
        self.count = 0  # records folded so far
        # time-averaged MSD over consecutive windows of `buffer` records, origins every
        # buffer // WINDOW_ORIGINS records: a record's squared displacement already sums D coordinates,
        # so 64 origins per lag lose little, and the window costs ~1/8 of all pairs
        self.windows = WindowedMSD(log_lags(self.buffer // 4, int(cfg.lags)), window=self.buffer,
                                   stride=max(1, self.buffer // WINDOW_ORIGINS), dim=self.D,
                                   dtype=torch.float32, device=device)
        self.window_done: Optional[np.ndarray] = None  # the last window completed and not yet logged
        self.origin = torch.zeros(self.D, dtype=torch.float64, device=device)
        self.path_length = 0.0
        # persistence: the record at the last measurement (the origin before the first) and the move
        # into it from the one before (zero until the first measurement)
        self.mark = torch.zeros(self.D, dtype=torch.float64, device=device)
        self.mark_move = torch.zeros(self.D, dtype=torch.float64, device=device)
        # Waiting times snapped to recorded steps; per t_w its lag grid (multiples of `every`).
        # A t_w needs 3 lags for an exponent: one closer to the run's end gives no MSD curve.
        snapped = {int(w): self._next_recorded(int(w)) for w in cfg.waiting_times}
        grids = {w: log_lags((steps - w) // self.every, int(cfg.lags)) * self.every for w in set(snapped.values())}
        self.waiting = sorted(w for w, lags in grids.items() if len(lags) >= 3)
        moved = {w: recorded for w, recorded in snapped.items() if recorded != w and recorded in self.waiting}
        if moved:
            log.info("diffusion: analysis.diffusion.waiting_times move to the next recorded step (every %d from "
                     "step %d): %s", self.every, self.start, ", ".join(f"{w} -> {r}" for w, r in moved.items()))
        late = [w for w, recorded in snapped.items() if recorded not in self.waiting]
        if late:  # not an error: the defaults (up to 1000) and a sweep's runs of several lengths share them
            log.info("diffusion: analysis.diffusion.waiting_times %s leave fewer than 3 recorded lags before "
                     "the run's last step %d: no MSD from them", late, steps)
        self.lags: List[np.ndarray] = [grids[w] for w in self.waiting]
        self.refs = torch.zeros(len(self.waiting), self.D, dtype=torch.float64, device=device)
        self.reference_at = {w: k for k, w in enumerate(self.waiting)}  # step -> its row of refs
        self.curves = [np.full(len(l), np.nan) for l in self.lags]
        self._fitted: Dict[int, Tuple[int, Tuple[Dict[str, float], Dict[str, np.ndarray]]]] = {}  # k -> (points, fit)
        # k -> the points of curve k when its arrays were last logged: a curve's arrays are logged
        # again only when it gained points (JSON of ~10 arrays at each measurement was half its time)
        self.logged_points: Dict[int, int] = {}
        self.targets: Dict[int, List[Tuple[int, int]]] = {}
        for k, (w, lags) in enumerate(zip(self.waiting, self.lags)):
            for j, tau in enumerate(lags):
                self.targets.setdefault(w + int(tau), []).append((k, j))

    def _next_recorded(self, step: int) -> int:
        if step <= self.start:
            return self.start
        return self.start + -(-(step - self.start) // self.every) * self.every

    # ------------------------------------------------------------------ recording
    def _flat_params(self) -> List[torch.Tensor]:
        """The parameters as flat views, built once: a view follows the optimizer's in-place updates,
        and `torch.cat` of six prepared views costs 5 µs against 12 µs with a reshape per call. Rebuilt
        when a parameter's storage changes, which is checked at the first record of each stage (the
        check costs 2 µs, and within a stage the weights only see optimizer steps, which update them
        in place); a non-contiguous parameter is reshaped (copied) per call."""
        if self._params is not None and self.staged:
            return self._params
        pointers = [p.data_ptr() for p in self.source.params]
        if pointers != self._pointers or self._params is None:
            self._pointers = pointers
            views = all(p.is_contiguous() for p in self.source.params)
            self._params = [p.detach().view(-1) for p in self.source.params] if views else None
        return self._params or [p.detach().reshape(-1) for p in self.source.params]

    def flush(self, read: bool = True, window: bool = False) -> None:
        """Fold the staged records (exact: copy them) into the block, oldest first, taking the
        waiting-time references and MSD(t_w, τ) points from them. When the block is full, or with
        `read` (whoever reads the path length), add the moves of its rows to the path length, and with
        `window` or a full block give them to the window MSD.
        Everything that reads records flushes first. A record's numbers do not depend on how records
        were grouped; the window MSD's float32 sums per group do, in the last digits, and groups
        follow the steps at which a run measures and checkpoints (so a resumed run's match)."""
        if self.staged:
            k, n = len(self.staged), self.in_block  # k <= BLOCK_RECORDS - n: `record` sees to it
            records = self.block[1 + n: 1 + n + k]
            self._fold(k, records)
            if self.count == 0:  # the first record: the origin (and first mark), and no move into it
                self.origin.copy_(records[0])
                self.mark.copy_(records[0])
                self.block[0] = records[0]
            for i, step in enumerate(self.staged):  # waiting-time references and MSD(t_w, τ) points
                if step in self.reference_at:
                    self.refs[self.reference_at[step]] = records[i]
                for w, j in self.targets.get(step, ()):
                    self.curves[w][j] = float((records[i].double() - self.refs[w]).square().sum())
            self.in_block += k
            self.count += k
            self.staged.clear()
        if self.in_block == BLOCK_RECORDS or read:
            self._consume(window or self.in_block == BLOCK_RECORDS)

    def _fold(self, k: int, out: torch.Tensor) -> None:
        """The first `k` staged rows folded into `out` (k, D) (exact: copied); the stage rows are spent."""
        staged = self.stage[:k]
        if not self.projected:
            out.copy_(staged)
        else:
            staged = staged.mul_(self.sign).view(k, self.folds, self.D)
            if staged.dtype == out.dtype:
                torch.sum(staged, dim=1, out=out)
            else:  # float64 weights: folded in their precision, then rounded like every record
                out.copy_(staged.sum(dim=1))

    def _consume(self, window: bool) -> None:
        """The path length of the block's rows not yet in it, and with `window` the window MSD of the
        rows not yet given to it; a block fully consumed starts again empty."""
        n, a = self.in_block, self.moved
        if a < n:
            moves = torch.sub(self.block[1 + a: 1 + n], self.block[a: n], out=self.moves[a:n])
            self.path_length += float(torch.linalg.vector_norm(moves, dim=1).double().sum())
            self.moved = n
        if window and self.windowed < n:
            for _, values in self.windows.update(self.block[1 + self.windowed: 1 + n]):
                self.window_done = values
            self.windowed = n
        if self.windowed == n == BLOCK_RECORDS:
            self._end_block()

    def _end_block(self) -> None:
        if self.in_block:
            self.block[0] = self.block[self.in_block]
            self.in_block = self.moved = self.windowed = 0

    def latest(self) -> torch.Tensor:
        self.flush()
        return self.block[self.in_block]

    def recording(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.every == 0

    def record(self, step: int) -> None:
        """Stage a copy of the weights (the fold waits for a full stage or a measurement)."""
        torch.cat(self._flat_params(), out=self.stage_rows[len(self.staged)])
        self.staged.append(step)
        if len(self.staged) == self.stage_size or self.in_block + len(self.staged) == BLOCK_RECORDS:
            self.flush(read=False)

    def end_record(self) -> torch.Tensor:
        """The weights now (the end of the run, between recorded steps), folded like a record but kept
        out of the records: those stay `every` steps apart for the MSDs (window and t_w lag grids), and a
        checkpoint holds none of it."""
        self.flush()  # the stage is empty: its first row takes the weights
        torch.cat(self._flat_params(), out=self.stage_rows[0])
        end = torch.empty(1, self.D, dtype=self.block.dtype, device=self.block.device)
        self._fold(1, end)
        return end[0]

    # ------------------------------------------------------------------ measurements
    def due(self, step: int) -> bool:
        return step > self.start and (step % self.log_every == 0 or step == self.steps)

    def window(self, final: bool) -> Optional[Tuple[np.ndarray, np.ndarray, float]]:
        """The time-averaged MSD of the last window completed since the last call, or at the end of
        the run (`final`) of the window in progress when none has: (lags in steps, MSD, γ); None
        when there is neither, or fewer than 3 lags."""
        if self.window_done is not None:
            lags, values = self.windows.lags, self.window_done
        elif final:
            lags, values = self.windows.current()
        else:
            return None
        self.window_done = None
        if len(lags) < 3:
            return None
        return lags * self.every, values, power_law_fit(lags, values)[0]

    def curve(self, k: int) -> Tuple[np.ndarray, np.ndarray]:
        done = np.isfinite(self.curves[k])
        return self.lags[k][done], self.curves[k][done]

    def fitted_curve(self, k: int, w: int, lags: np.ndarray, values: np.ndarray):
        """The scalars and arrays of waiting time t_w = `w` (curve `k`): fitted γ, local exponents,
        crossover, and for the first one γ early/late."""
        local = local_exponents(lags, values)
        cross = crossover(lags, local)
        key = f"{PREFIX}/tw{w}"
        s = {f"{key}/gamma": power_law_fit(lags, values)[0], f"{key}/gamma_local": float(local[-1]),
             f"{key}/crossover_step": w + cross}
        arrays = {f"{key}/lags": lags.astype(float), f"{key}/msd": values, f"{key}/gamma_local": local}
        if k == 0:
            s[f"{PREFIX}/gamma_early"], s[f"{PREFIX}/gamma_late"] = early_late(lags, values, cross)
            s[f"{PREFIX}/crossover_step"] = w + cross
        return s, arrays

    def mark_persistence(self, latest: torch.Tensor) -> Optional[float]:
        """cos(θ_t − θ_{t'}, θ_{t'} − θ_{t''}) for the `latest` record t (float64) and the records t',
        t'' of the two measurements before (the origin before the first) that had moved; then t becomes
        the mark. Called once per measurement. ≈ 1 a drift along a fixed direction (ballistic, MSD ∝
        τ²), ≈ 0 a free random walk (by chance ±1/√D for isotropic steps), and -(1 - a^Δ)/2 for a walk
        held in a basin, θ ← aθ + noise with Δ steps between measurements (-1/2 when it relaxes within
        Δ). A γ > 1 alone does not tell a drift from super-diffusion; this does. None at the first
        measurement (no move before it), and None with the mark and its move left as they are when the
        record has not moved since the mark: no record since the last measurement (`log_every` not a
        multiple of `every`, or the end of the run between records), or weights that did not move."""
        move = latest - self.mark
        if not bool(move.any()):
            return None
        value = cosine(move, self.mark_move)
        self.mark_move.copy_(move)
        self.mark.copy_(latest)
        return value if np.isfinite(value) else None

    def compute(self, step: int) -> Optional[Measurement]:
        final = step == self.steps
        self.flush(window=final)
        record, path_length = self.latest(), self.path_length
        persistence = self.mark_persistence(record.double())  # between records: moves of whole `every`s
        latest = record
        if final and not self.recording(step):
            # the end of the run between recorded steps (`every` not dividing it or past the run's end,
            # a stopping rule): the distance and the path length's last move are taken to its weights;
            # the records (and the MSDs, window and t_w, on their grid of `every` steps) do not change
            latest = self.end_record()
            path_length += float(torch.linalg.vector_norm(latest - record).double())
        latest = latest.double()  # ‖θ − θ_0‖² is taken when logged
        s: Dict[str, float] = {f"{PREFIX}/distance_sq": float((latest - self.origin).square().sum()),
                               f"{PREFIX}/path_length": path_length,
                               f"{PREFIX}/dims": float(self.D), f"{PREFIX}/projected": float(self.projected)}
        if persistence is not None:
            s[f"{PREFIX}/persistence"] = persistence
        arrays: Dict[str, np.ndarray] = {}
        win = self.window(final=final)
        if win is not None:
            s[f"{PREFIX}/window_gamma"] = win[2]
            arrays[f"{PREFIX}/window_lags"] = win[0].astype(float)
            arrays[f"{PREFIX}/window_msd"] = win[1]
        for k, w in enumerate(self.waiting):
            lags, values = self.curve(k)
            if len(lags) < 3:
                continue
            # a curve only gains points (log-spaced: rarely, late in a run): fitted again only then
            if self._fitted.get(k, (0,))[0] != len(lags):
                self._fitted[k] = (len(lags), self.fitted_curve(k, w, lags, values))
            fitted_s, fitted_arrays = self._fitted[k][1]
            s.update(fitted_s)
            if self.logged_points.get(k) != len(lags):
                arrays.update(fitted_arrays)
                self.logged_points[k] = len(lags)
        # the summary holds the latest value of every key logged, also of those that a measurement
        # may leave out (persistence, window_gamma)
        self.last.update(s)
        return Measurement(s, arrays)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> Dict:
        # a checkpoint holds no staged records and ends the block: a resumed run groups the
        # records that follow as this one does
        self.flush(window=True)
        self._end_block()
        pending = self.window_done if self.window_done is not None else np.zeros(0)
        return {**super().state_dict(), "previous": self.block[0].cpu(), "count": self.count,
                "origin": self.origin.cpu(), "path_length": self.path_length,
                "mark": self.mark.cpu(), "mark_move": self.mark_move.cpu(),
                "refs": self.refs.cpu(), "curves": [torch.from_numpy(c) for c in self.curves],
                "windows": self.windows.state_dict(), "window_done": torch.from_numpy(pending),
                "logged_points": dict(self.logged_points)}

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        self.block[0].copy_(state["previous"])  # the latest record: a checkpoint ends the block
        self.origin.copy_(state["origin"])
        self.refs.copy_(state["refs"])
        self.count, self.path_length = state["count"], state["path_length"]
        self.mark.copy_(state["mark"])
        self.mark_move.copy_(state["mark_move"])
        self.curves = [c.numpy().copy() for c in state["curves"]]
        self._fitted = {}
        self.logged_points = {int(k): int(v) for k, v in state["logged_points"].items()}
        self.windows.load_state_dict(state["windows"])
        pending = state["window_done"].numpy()
        self.window_done = pending.copy() if len(pending) else None
