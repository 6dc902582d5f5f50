"""Bootstrap replicates of merged statistics: the released replicate counts, or, where a silo added noise and
released none, Poisson draws around the noised counts plus fresh draws of each silo's noise (audit/noise.py)."""

from __future__ import annotations

import hashlib

import numpy as np

from audit.mergeable import AuditStats, GroupConfusion


class Replicates:
    """(1 + R, ...) matrices of each table: released replicate counts, or, from noised counts, Poisson draws
    around the (clipped) counts plus fresh draws of the noise each silo added."""

    def __init__(self, stats: AuditStats, noise_scales: list[float], seed: int):
        self.stats, self.scales = stats, noise_scales
        self.R = stats.grid.replicates
        self.seed = int(seed)
        self.noised = bool(noise_scales)
        self._drawn_cache: dict[tuple[str, bytes], np.ndarray] = {}

    def _rng(self, what: str, point: np.ndarray) -> np.random.Generator:
        """A generator of its own for each table: its draws do not depend on which other tables were drawn before
        it (adding a check to a policy leaves every other interval as it was), and a table drawn twice is drawn
        the same (two checks that read one table see one set of replicates)."""
        digest = hashlib.sha256(what.encode() + repr(point.shape).encode() + np.ascontiguousarray(point).tobytes())
        return np.random.default_rng([self.seed, 7, int.from_bytes(digest.digest()[:8], "little")])

    def _drawn(self, point: np.ndarray, what: str = "table") -> np.ndarray:
        # the point, plus a Poisson-bootstrap deviation of each cell (its resampled count is Poisson(count)), plus
        # a fresh draw of each silo's noise; cells are not clipped (clipping noised zeros at 0 would bias sums)
        point = np.asarray(point, dtype=float)
        key = (what, hashlib.sha256(np.ascontiguousarray(point).tobytes() + repr(point.shape).encode()).digest())
        if key not in self._drawn_cache:
            rng = self._rng(what, point)
            c = np.clip(point, 0, None)
            reps = point[None] + (rng.poisson(c, size=(self.R, *point.shape)) - c[None])
            for b in self.scales:
                reps += rng.laplace(0.0, b, size=reps.shape)
            self._drawn_cache[key] = np.concatenate([point[None], reps])
        return self._drawn_cache[key].copy()

    def scores(self) -> np.ndarray:
        c = self.stats.scores.counts
        return self._drawn(c.point, "scores") if self.noised or c.reps is None else self.stats.scores.matrix()

    def calibration(self) -> np.ndarray:
        c = self.stats.calibration.sums
        if not (self.noised or c.reps is None):
            return self.stats.calibration.matrix()
        # a replicate rescales each bin's sums by its drawn row count (the rows of a bin resampled together)
        bins = self.stats.calibration.bins
        t = np.clip(c.point[: 3 * bins].reshape(bins, 3), 0, None)
        n = t[:, 0]
        rng = self._rng("calibration", np.asarray(c.point, dtype=float))
        drawn = rng.poisson(n, size=(self.R, bins)).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(n > 0, drawn / np.where(n > 0, n, 1), 0.0)
        reps = np.empty((self.R, 3 * bins + 1))
        reps[:, : 3 * bins] = (t[None] * f[:, :, None]).reshape(self.R, -1)
        reps[:, 3 * bins] = max(c.point[-1], 0) * drawn.sum(axis=1) / max(n.sum(), 1)
        for b in self.scales:
            reps += rng.laplace(0.0, b, size=reps.shape)
        return np.concatenate([c.point[None], reps])

    def groups(self, g: GroupConfusion) -> np.ndarray:
        c = g.counts
        return self._drawn(c.point, "groups " + "|".join(map(str, g.groups))) if self.noised or c.reps is None \
            else g.matrix()

    def table(self, counts) -> np.ndarray:
        """(1 + R, *shape) of a silo statistic's count table (audit.mergeable.SiloStat): its released
        replicate sums, or, noised or without them, Poisson draws around its (noised) point plus fresh noise. A
        table of sums of values other than 1 (sums of |score change|) is drawn as if its cells were counts: an
        approximation, said where such a measurement is noised."""
        if not self.noised and counts.reps is not None and counts.reps.shape[0] == self.R:
            return np.concatenate([counts.point[None], counts.reps])
        return self._drawn(counts.point)
