"""Fused, parallel CPU kernels (Numba) for resample + rescale + window + stats + crop.

Why this shape: the grid is axis-aligned, so trilinear interpolation is separable and each
output row needs only four input rows (two slices x two rows) that stay in cache. A kernel
never materialises the full-resolution float image: pass 1 (`stats_pass`) resamples and
reduces (sums, foreground count, min/max, bounding box) without storing anything; pass 2
(`normalize_pass`) resamples again, only inside the bounding box, and writes the z-scored
float32 result. Recomputing is cheaper than a second trip through memory, and peak extra
memory is the output alone.

Determinism: ``prange`` runs over output slices (or fixed slice chunks); every partial
result lands in its own row of a partial array, and the host combines rows in index order.
The thread count or scheduling therefore never changes a result. Sums are float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from tre.kernels.grid import GridTables
from tre.kernels.stats import Stats

# Allow SIMD reductions inside a row (fixed by the compiled code, so still reproducible).
_FM = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=_FM, inline="always")
def _resample_row(raw, z0, z1, wz, s0, b0, s1, b1, ya, yb, wy, xa, xb, wx, buf):  # type: ignore[no-untyped-def]
    """Write one output row of rescaled (e.g. HU) values into ``buf`` (float32)."""
    r00 = raw[z0, ya]
    r01 = raw[z0, yb]
    r10 = raw[z1, ya]
    r11 = raw[z1, yb]
    for i in range(buf.shape[0]):
        a = xa[i]
        b = xb[i]
        w = wx[i]
        p = np.float32(r00[a]) + w * (np.float32(r00[b]) - np.float32(r00[a]))
        q = np.float32(r01[a]) + w * (np.float32(r01[b]) - np.float32(r01[a]))
        u = np.float32(r10[a]) + w * (np.float32(r10[b]) - np.float32(r10[a]))
        t = np.float32(r11[a]) + w * (np.float32(r11[b]) - np.float32(r11[a]))
        h0 = (p + wy * (q - p)) * s0 + b0
        h1 = (u + wy * (t - u)) * s1 + b1
        buf[i] = h0 + wz * (h1 - h0)


@njit(parallel=True, cache=True, fastmath=_FM)
def stats_pass(  # type: ignore[no-untyped-def]
    raw, slopes, intercepts, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw,
    clip_lo, clip_hi, shift, scale, fg_thr, stat_shift, fg_only, sums, ibox, vrange,
):
    """Pass 1: per output slice k, reduce without storing.

    sums[k] = (count, sum(v - stat_shift), sum((v - stat_shift)^2)) over all voxels, or over
    foreground only when ``fg_only``; ibox[k] = (fg count, ymin, ymax, xmin, xmax) with
    ymin > ymax when the slice has no foreground; vrange[k] = (min, max) of v over foreground.
    """
    nzo = zi0.shape[0]
    nyo = yi0.shape[0]
    nxo = xi0.shape[0]
    for k in prange(nzo):
        buf = np.empty(nxo, dtype=np.float32)
        z0 = zi0[k]
        z1 = zi1[k]
        wz = np.float32(zw[k])
        s0 = np.float32(slopes[z0])
        b0 = np.float32(intercepts[z0])
        s1 = np.float32(slopes[z1])
        b1 = np.float32(intercepts[z1])
        cnt = 0
        acc = 0.0
        acc2 = 0.0
        fgn = 0
        ymin = nyo
        ymax = -1
        xmin = nxo
        xmax = -1
        vmin = np.float32(3.0e38)
        vmax = np.float32(-3.0e38)
        for j in range(nyo):
            _resample_row(raw, z0, z1, wz, s0, b0, s1, b1, yi0[j], yi1[j], np.float32(yw[j]), xi0, xi1, xw, buf)
            racc = 0.0
            racc2 = 0.0
            rfg = 0
            rmin = np.float32(3.0e38)
            rmax = np.float32(-3.0e38)
            for i in range(nxo):
                h = buf[i]
                v = (min(max(h, clip_lo), clip_hi) - shift) * scale
                f = h > fg_thr
                d = np.float64(v) - stat_shift
                m = 1.0 if (f or not fg_only) else 0.0
                racc += d * m
                racc2 += d * d * m
                rfg += 1 if f else 0
                rmin = min(rmin, v if f else np.float32(3.0e38))
                rmax = max(rmax, v if f else np.float32(-3.0e38))
            acc += racc
            acc2 += racc2
            cnt += rfg if fg_only else nxo
            if rfg > 0:
                fgn += rfg
                vmin = min(vmin, rmin)
                vmax = max(vmax, rmax)
                ymin = min(ymin, j)
                ymax = j
                first = 0
                while not buf[first] > fg_thr:
                    first += 1
                last = nxo - 1
                while not buf[last] > fg_thr:
                    last -= 1
                xmin = min(xmin, first)
                xmax = max(xmax, last)
        sums[k, 0] = cnt
        sums[k, 1] = acc
        sums[k, 2] = acc2
        ibox[k, 0] = fgn
        ibox[k, 1] = ymin
        ibox[k, 2] = ymax
        ibox[k, 3] = xmin
        ibox[k, 4] = xmax
        vrange[k, 0] = vmin
        vrange[k, 1] = vmax


@njit(parallel=True, cache=True, fastmath=_FM)
def normalize_pass(  # type: ignore[no-untyped-def]
    raw, slopes, intercepts, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw,
    clip_lo, clip_hi, shift, scale, mean, inv_std, out,
):
    """Pass 2: out = ((clip(hu) - shift) * scale - mean) * inv_std over the (cropped) tables."""
    nzo = zi0.shape[0]
    nyo = yi0.shape[0]
    nxo = xi0.shape[0]
    m = np.float32(mean)
    inv = np.float32(inv_std)
    for k in prange(nzo):
        z0 = zi0[k]
        z1 = zi1[k]
        wz = np.float32(zw[k])
        s0 = np.float32(slopes[z0])
        b0 = np.float32(intercepts[z0])
        s1 = np.float32(slopes[z1])
        b1 = np.float32(intercepts[z1])
        for j in range(nyo):
            row = out[k, j]
            _resample_row(raw, z0, z1, wz, s0, b0, s1, b1, yi0[j], yi1[j], np.float32(yw[j]), xi0, xi1, xw, row)
            for i in range(nxo):
                v = (min(max(row[i], clip_lo), clip_hi) - shift) * scale
                row[i] = (v - m) * inv


@njit(parallel=True, cache=True, fastmath=_FM)
def histogram_pass(  # type: ignore[no-untyped-def]
    raw, slopes, intercepts, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw,
    clip_lo, clip_hi, fg_thr, vmin, bin_scale, chunk_start, hist,
):
    """Histogram of foreground v = clip(hu); chunk c covers slices chunk_start[c]:[c+1].

    Integer counts per chunk row, summed by the host: exact and order-free.
    """
    nchunks = hist.shape[0]
    nbins = hist.shape[1]
    nxo = xi0.shape[0]
    nyo = yi0.shape[0]
    for c in prange(nchunks):
        buf = np.empty(nxo, dtype=np.float32)
        for k in range(chunk_start[c], chunk_start[c + 1]):
            z0 = zi0[k]
            z1 = zi1[k]
            wz = np.float32(zw[k])
            s0 = np.float32(slopes[z0])
            b0 = np.float32(intercepts[z0])
            s1 = np.float32(slopes[z1])
            b1 = np.float32(intercepts[z1])
            for j in range(nyo):
                _resample_row(raw, z0, z1, wz, s0, b0, s1, b1, yi0[j], yi1[j], np.float32(yw[j]), xi0, xi1, xw, buf)
                for i in range(nxo):
                    h = buf[i]
                    if h > fg_thr:
                        v = min(max(h, clip_lo), clip_hi)
                        b = min(max(np.int64((v - vmin) * bin_scale), 0), nbins - 1)
                        hist[c, b] += 1


@njit(parallel=True, cache=True, fastmath=_FM)
def gather_pass(  # type: ignore[no-untyped-def]
    raw, slopes, intercepts, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw,
    clip_lo, clip_hi, fg_thr, vmin, bin_scale, nbins, chunk_start, wanted, offsets, values,
):
    """Copy foreground v whose histogram bin is ``wanted`` into values[offsets[c]:...].

    Offsets come from the histogram counts, so each chunk owns a fixed slice of ``values``;
    the host sorts each bin's values, which makes the order of copying irrelevant.
    """
    nchunks = offsets.shape[0]
    nxo = xi0.shape[0]
    nyo = yi0.shape[0]
    for c in prange(nchunks):
        buf = np.empty(nxo, dtype=np.float32)
        pos = offsets[c]
        for k in range(chunk_start[c], chunk_start[c + 1]):
            z0 = zi0[k]
            z1 = zi1[k]
            wz = np.float32(zw[k])
            s0 = np.float32(slopes[z0])
            b0 = np.float32(intercepts[z0])
            s1 = np.float32(slopes[z1])
            b1 = np.float32(intercepts[z1])
            for j in range(nyo):
                _resample_row(raw, z0, z1, wz, s0, b0, s1, b1, yi0[j], yi1[j], np.float32(yw[j]), xi0, xi1, xw, buf)
                for i in range(nxo):
                    h = buf[i]
                    if h > fg_thr:
                        v = min(max(h, clip_lo), clip_hi)
                        b = min(max(np.int64((v - vmin) * bin_scale), 0), nbins - 1)
                        if wanted[b]:
                            values[pos] = v
                            pos += 1


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class CpuBackend:
    """Runs the passes above on one volume; see `tre.kernels.pipeline` for the recipe."""

    name = "cpu"

    def __init__(self, raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray, tables: GridTables) -> None:
        self.raw = np.ascontiguousarray(raw)
        self.slopes = np.ascontiguousarray(slopes, dtype=np.float64)
        self.intercepts = np.ascontiguousarray(intercepts, dtype=np.float64)
        self.tables = tables
        t = tables
        self._full = (t.z.i0, t.z.i1, t.z.w, t.y.i0, t.y.i1, _f32(t.y.w), t.x.i0, t.x.i1, _f32(t.x.w))
        nzo = t.shape[0]
        self._chunks = np.linspace(0, nzo, min(nzo, 64) + 1).astype(np.int64)

    def stats(
        self, clip: tuple[float, float], shift: float, scale: float, fg_thr: float, stat_shift: float, fg_only: bool
    ) -> Stats:
        nzo = self.tables.shape[0]
        sums = np.zeros((nzo, 3), dtype=np.float64)
        ibox = np.zeros((nzo, 5), dtype=np.int64)
        vrange = np.zeros((nzo, 2), dtype=np.float32)
        stats_pass(
            self.raw, self.slopes, self.intercepts, *self._full,
            np.float32(clip[0]), np.float32(clip[1]), np.float32(shift), np.float32(scale),
            np.float32(fg_thr), float(stat_shift), bool(fg_only), sums, ibox, vrange,
        )
        return Stats.from_slices(sums, ibox, vrange, stat_shift)

    def histogram(self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, nbins: int) -> np.ndarray:
        hist = np.zeros((len(self._chunks) - 1, nbins), dtype=np.int64)
        histogram_pass(
            self.raw, self.slopes, self.intercepts, *self._full,
            np.float32(clip[0]), np.float32(clip[1]), np.float32(fg_thr), float(vmin), float(bin_scale),
            self._chunks, hist,
        )
        self._last_hist = hist
        return hist.sum(axis=0)

    def gather(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, wanted: np.ndarray
    ) -> np.ndarray:
        per_chunk = self._last_hist[:, wanted].sum(axis=1)
        offsets = np.concatenate(([0], np.cumsum(per_chunk)[:-1])).astype(np.int64)
        values = np.empty(int(per_chunk.sum()), dtype=np.float32)
        gather_pass(
            self.raw, self.slopes, self.intercepts, *self._full,
            np.float32(clip[0]), np.float32(clip[1]), np.float32(fg_thr), float(vmin), float(bin_scale),
            int(wanted.shape[0]), self._chunks, wanted, offsets, values,
        )
        return values

    def normalize(
        self,
        bbox: tuple[int, int, int, int, int, int] | None,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        mean: float,
        inv_std: float,
    ) -> np.ndarray:
        t = self.tables
        z0, z1, y0, y1, x0, x1 = bbox if bbox is not None else (0, t.shape[0], 0, t.shape[1], 0, t.shape[2])
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), dtype=np.float32)
        normalize_pass(
            self.raw, self.slopes, self.intercepts,
            t.z.i0[z0:z1], t.z.i1[z0:z1], t.z.w[z0:z1],
            t.y.i0[y0:y1], t.y.i1[y0:y1], _f32(t.y.w[y0:y1]),
            t.x.i0[x0:x1], t.x.i1[x0:x1], _f32(t.x.w[x0:x1]),
            np.float32(clip[0]), np.float32(clip[1]), np.float32(shift), np.float32(scale),
            float(mean), float(inv_std), out,
        )
        return out
