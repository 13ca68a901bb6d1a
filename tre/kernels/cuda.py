"""The same passes as `tre.kernels.cpu`, as Numba CUDA kernels (``numba-cuda`` package).

One thread per output voxel (pass 1: per column of ZPT voxels along z); trilinear sampling
straight from the int16 input in device memory -- the GPU has bandwidth to spare, so there
is no slice cache here. The nine interpolation tables travel packed in one int32 and one
float32 array: Numba's per-launch argument handling costs tens of microseconds per array,
which matters against a 10 ms budget. Reductions are deterministic: each block reduces in shared memory with a
fixed tree, writes one partial row, and a one-block kernel sums the partial rows with a
fixed stride and tree; counts, bounding boxes and value ranges use integer or min/max
atomics, which are order-free. Percentile gathering uses an atomic cursor, and the host
sorts what was gathered, so the order of arrival does not matter.

Tested on the CPU under ``NUMBA_ENABLE_CUDASIM=1`` (set before Numba is imported); the
simulator runs every thread as a Python thread, hence its smaller blocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda as _cuda
from numba.cuda import config as _cuda_config

from tre.kernels.grid import GridTables
from tre.kernels.stats import Stats

# numba.cuda's stubs do not describe kernel-side intrinsics; treat the module dynamically.
cuda: Any = _cuda

_SIM = bool(getattr(_cuda_config, "ENABLE_CUDASIM", 0))
BX, BY = (8, 4) if _SIM else (32, 8)
TPB = BX * BY  # threads per block: a power of two, for the reduction trees
FIN = 32 if _SIM else 1024  # threads of the final one-block reduction
ZPT = 2 if _SIM else 8  # output slices per thread in the stats pass
NPART = 4  # partial row: selected count, sum(d), sum(d^2), foreground count
BIG = 3.0e38
IBIG = 2**30
Q_MAX = 32767.0  # int16 outputs are clamped to +-Q_MAX (see normalize_int16_kernel)


@cuda.jit(device=True, inline=True)
def _clip(h, clip_lo, clip_hi):
    """clip(h, lo, hi); the CPU twin is `tre.kernels.cpu.clip_value`."""
    return min(max(h, clip_lo), clip_hi)


@cuda.jit(device=True, inline=True)
def _window(h, clip_lo, clip_hi, shift, scale):
    """v = (clip(h) - shift) * scale; the CPU twin is `tre.kernels.cpu.window_value`."""
    return (_clip(h, clip_lo, clip_hi) - shift) * scale


@cuda.jit(device=True, inline=True)
def _bin(v, vmin, bin_scale, nbins):
    """Histogram bin clamped to [0, nbins); the CPU twin is `tre.kernels.cpu.histogram_bin`."""
    return min(max(int((v - vmin) * bin_scale), 0), nbins - 1)


@cuda.jit(device=True, inline=True)
def _hu(raw, sl, ic, ti, tw, nz, ny, nx, k, j, i):
    """Trilinear sample of the rescaled input at output voxel (k, j, i), in float32.

    ti = [z.i0 | z.i1 | y.i0 | y.i1 | x.i0 | x.i1], tw = [z.w | y.w | x.w] (full grid).
    """
    z0 = ti[k]
    z1 = ti[nz + k]
    ya = ti[2 * nz + j]
    yb = ti[2 * nz + ny + j]
    xa = ti[2 * nz + 2 * ny + i]
    xb = ti[2 * nz + 2 * ny + nx + i]
    wz = tw[k]
    wy = tw[nz + j]
    wx = tw[nz + ny + i]
    p = np.float32(raw[z0, ya, xa]) + wx * (np.float32(raw[z0, ya, xb]) - np.float32(raw[z0, ya, xa]))
    q = np.float32(raw[z0, yb, xa]) + wx * (np.float32(raw[z0, yb, xb]) - np.float32(raw[z0, yb, xa]))
    u = np.float32(raw[z1, ya, xa]) + wx * (np.float32(raw[z1, ya, xb]) - np.float32(raw[z1, ya, xa]))
    t = np.float32(raw[z1, yb, xa]) + wx * (np.float32(raw[z1, yb, xb]) - np.float32(raw[z1, yb, xa]))
    h0 = (p + wy * (q - p)) * sl[z0] + ic[z0]
    h1 = (u + wy * (t - u)) * sl[z1] + ic[z1]
    return h0 + wz * (h1 - h0)


@cuda.jit
def stats_kernel(
    raw,
    sl,
    ic,
    ti,
    tw,
    nz,
    ny,
    nx,
    clip_lo,
    clip_hi,
    shift,
    scale,
    fg_thr,
    stat_shift,
    fg_only,
    part,
    box,
    vrange,
):
    """Per block: partial sums into part[block]; bbox (box) and fg value range via atomics.

    Each thread walks ZPT consecutive output slices (sequential float64 sums: fixed order),
    which amortises the block reduction.
    """
    s_sum = cuda.shared.array(TPB, dtype=np.float64)
    s_sq = cuda.shared.array(TPB, dtype=np.float64)
    s_cnt = cuda.shared.array(TPB, dtype=np.float64)
    s_fg = cuda.shared.array(TPB, dtype=np.float64)
    s_i = cuda.shared.array((6, TPB), dtype=np.int32)  # kmin, kmax, ymin, ymax, xmin, xmax
    s_v = cuda.shared.array((2, TPB), dtype=np.float32)  # vmin, vmax
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    t = cuda.threadIdx.y * BX + cuda.threadIdx.x
    acc = 0.0
    acc2 = 0.0
    sel = 0.0
    fg = 0.0
    kmin = IBIG
    kmax = -1
    vmin = np.float32(BIG)
    vmax = np.float32(-BIG)
    if i < nx and j < ny:
        k0 = cuda.blockIdx.z * ZPT
        k1 = min(k0 + ZPT, nz)
        for k in range(k0, k1):
            h = _hu(raw, sl, ic, ti, tw, nz, ny, nx, k, j, i)
            v = _window(h, clip_lo, clip_hi, shift, scale)
            f = h > fg_thr
            if f:
                fg += 1.0
                kmin = min(kmin, k)
                kmax = k
                vmin = min(vmin, v)
                vmax = max(vmax, v)
            if fg_only == 0 or f:
                d = np.float64(v) - stat_shift
                sel += 1.0
                acc += d
                acc2 += d * d
    s_sum[t] = acc
    s_sq[t] = acc2
    s_cnt[t] = sel
    s_fg[t] = fg
    has = fg > 0.0
    s_i[0, t] = kmin
    s_i[1, t] = kmax
    s_i[2, t] = j if has else IBIG
    s_i[3, t] = j if has else -1
    s_i[4, t] = i if has else IBIG
    s_i[5, t] = i if has else -1
    s_v[0, t] = vmin
    s_v[1, t] = vmax
    cuda.syncthreads()
    step = TPB // 2
    while step > 0:
        if t < step:
            o = t + step
            s_sum[t] += s_sum[o]
            s_sq[t] += s_sq[o]
            s_cnt[t] += s_cnt[o]
            s_fg[t] += s_fg[o]
            for q in range(0, 6, 2):
                s_i[q, t] = min(s_i[q, t], s_i[q, o])
                s_i[q + 1, t] = max(s_i[q + 1, t], s_i[q + 1, o])
            s_v[0, t] = min(s_v[0, t], s_v[0, o])
            s_v[1, t] = max(s_v[1, t], s_v[1, o])
        cuda.syncthreads()
        step //= 2
    if t == 0:
        b = (cuda.blockIdx.z * cuda.gridDim.y + cuda.blockIdx.y) * cuda.gridDim.x + cuda.blockIdx.x
        part[b, 0] = s_cnt[0]
        part[b, 1] = s_sum[0]
        part[b, 2] = s_sq[0]
        part[b, 3] = s_fg[0]
        if s_fg[0] > 0.0:
            for q in range(0, 6, 2):
                cuda.atomic.min(box, q, s_i[q, 0])
                cuda.atomic.max(box, q + 1, s_i[q + 1, 0])
            cuda.atomic.min(vrange, 0, s_v[0, 0])
            cuda.atomic.max(vrange, 1, s_v[1, 0])


@cuda.jit
def finalize_kernel(part, box, vrange, out):
    """One block: out[0:4] = column sums of part (fixed order: stride, then tree);
    out[4:10] = box, out[10:12] = vrange, so the host needs one small copy."""
    acc = cuda.shared.array((NPART, FIN), dtype=np.float64)
    t = cuda.threadIdx.x
    for c in range(NPART):
        s = 0.0
        r = t
        while r < part.shape[0]:
            s += part[r, c]
            r += FIN
        acc[c, t] = s
    cuda.syncthreads()
    step = FIN // 2
    while step > 0:
        if t < step:
            for c in range(NPART):
                acc[c, t] += acc[c, t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        for c in range(NPART):
            out[c] = acc[c, 0]
        for c in range(6):
            out[NPART + c] = box[c]
        out[NPART + 6] = vrange[0]
        out[NPART + 7] = vrange[1]
        # Re-arm the atomics' targets for the next pass (no host upload needed).
        for c in range(0, 6, 2):
            box[c] = IBIG
            box[c + 1] = -1
        vrange[0] = BIG
        vrange[1] = -BIG


@cuda.jit
def normalize_kernel(
    raw, sl, ic, ti, tw, nz, ny, nx, k0, j0, i0, clip_lo, clip_hi, shift, scale, mean, inv, out
):
    """out[k, j, i] = ((clip(hu) - shift) * scale - mean) * inv at grid voxel (k0+k, j0+j, i0+i)."""
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    k = cuda.blockIdx.z
    if i < out.shape[2] and j < out.shape[1]:
        h = _hu(raw, sl, ic, ti, tw, nz, ny, nx, k0 + k, j0 + j, i0 + i)
        out[k, j, i] = (_window(h, clip_lo, clip_hi, shift, scale) - mean) * inv


@cuda.jit
def normalize_int16_kernel(
    raw, sl, ic, ti, tw, nz, ny, nx, k0, j0, i0, clip_lo, clip_hi, shift, scale, mean, inv, qa, qb, out
):
    """out[k, j, i] = int16 rint(x * qa + qb) of the x `normalize_kernel` writes, clamped to
    +-32767 (never reached: `tre.kernels.quantise`); the CPU twin is
    `tre.kernels.cpu.normalize_int16_pass`."""
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    k = cuda.blockIdx.z
    if i < out.shape[2] and j < out.shape[1]:
        h = _hu(raw, sl, ic, ti, tw, nz, ny, nx, k0 + k, j0 + j, i0 + i)
        x = (_window(h, clip_lo, clip_hi, shift, scale) - mean) * inv
        t = min(max(x * qa + qb, -Q_MAX), Q_MAX)
        out[k, j, i] = math.floor(t + 0.5)


@cuda.jit
def histogram_kernel(raw, sl, ic, ti, tw, nz, ny, nx, clip_lo, clip_hi, fg_thr, vmin, bin_scale, hist):
    """Global histogram of foreground v = clip(hu) (integer atomics: exact, order-free)."""
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    k = cuda.blockIdx.z
    if i < nx and j < ny:
        h = _hu(raw, sl, ic, ti, tw, nz, ny, nx, k, j, i)
        if h > fg_thr:
            v = _clip(h, clip_lo, clip_hi)
            cuda.atomic.add(hist, _bin(v, vmin, bin_scale, hist.shape[0]), 1)


@cuda.jit
def gather_kernel(
    raw, sl, ic, ti, tw, nz, ny, nx, clip_lo, clip_hi, fg_thr, vmin, bin_scale, wanted, cursor, values
):
    """Append foreground v whose bin is wanted to ``values`` (atomic cursor; host sorts)."""
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    k = cuda.blockIdx.z
    if i < nx and j < ny:
        h = _hu(raw, sl, ic, ti, tw, nz, ny, nx, k, j, i)
        if h > fg_thr:
            v = _clip(h, clip_lo, clip_hi)
            if wanted[_bin(v, vmin, bin_scale, wanted.shape[0])]:
                values[cuda.atomic.add(cursor, 0, 1)] = v


def _grid(nz: int, ny: int, nx: int) -> tuple[tuple[int, int, int], tuple[int, int]]:
    return (math.ceil(nx / BX), math.ceil(ny / BY), nz), (BX, BY)


class Workspace:
    """Device buffers (and optionally page-locked host buffers) reused across volumes.

    cudaMalloc/cudaHostAlloc of hundreds of MB costs more than the whole 10 ms budget of a
    volume, so a long-lived job or the benchmark keeps one workspace; buffers grow on
    demand and are handed out as reshaped views. With ``pinned_results`` the image that
    `CudaBackend.normalize` returns is a view into a reused pinned buffer: copy it if you
    keep it past the next volume.
    """

    def __init__(self, stream: Any | None = None, pinned_results: bool = False) -> None:
        self.stream = stream if stream is not None else cuda.stream()
        self.pinned_results = pinned_results
        self._dev: dict[str, Any] = {}
        self._views: dict[tuple[str, tuple[int, ...], str], Any] = {}
        self._host: dict[str, np.ndarray] = {}

    def device(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        key = (name, tuple(shape), np.dtype(dtype).str)
        view = self._views.get(key)
        if view is not None:
            return view
        n = max(1, int(np.prod(shape)))
        buf = self._dev.get(name)
        if buf is None or buf.dtype != np.dtype(dtype) or buf.size < n:
            buf = cuda.device_array(n, dtype=dtype, stream=self.stream)
            self._dev[name] = buf
            self._views = {k: v for k, v in self._views.items() if k[0] != name}
        view = buf[:n].reshape(shape) if shape else buf[:1]
        self._views[key] = view
        return view

    def pinned(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        n = max(1, int(np.prod(shape)))
        buf = self._host.get(name)
        if buf is None or buf.dtype != np.dtype(dtype) or buf.size < n:
            buf = cuda.pinned_array(n, dtype=dtype)
            self._host[name] = buf
        return buf[:n].reshape(shape)

    def upload(self, name: str, host: np.ndarray) -> Any:
        """Copy ``host`` into the named device buffer (async on the workspace stream)."""
        host = np.ascontiguousarray(host)
        dev = self.device(name, host.shape, host.dtype)
        dev.copy_to_device(host, stream=self.stream)
        return dev


class CudaBackend:
    """Device-resident copy of one volume and its tables; runs the CUDA passes on demand."""

    name = "cuda"

    def __init__(
        self,
        raw: np.ndarray,
        slopes: np.ndarray,
        intercepts: np.ndarray,
        tables: GridTables,
        workspace: Workspace | None = None,
    ) -> None:
        self.tables = tables
        self.ws = workspace if workspace is not None else Workspace()
        self.stream = self.ws.stream
        ws = self.ws
        t = tables
        self.raw = ws.upload("raw", raw)
        self.sl = ws.upload("slopes", np.asarray(slopes, dtype=np.float32))
        self.ic = ws.upload("intercepts", np.asarray(intercepts, dtype=np.float32))
        self.ti = ws.upload(
            "ti", np.concatenate([t.z.i0, t.z.i1, t.y.i0, t.y.i1, t.x.i0, t.x.i1]).astype(np.int32)
        )
        self.tw = ws.upload("tw", np.concatenate([t.z.w, t.y.w, t.x.w]).astype(np.float32))
        self.dims = tuple(np.int32(n) for n in t.shape)
        nz, ny, nx = t.shape
        self._stats_grid = (math.ceil(nx / BX), math.ceil(ny / BY), math.ceil(nz / ZPT))
        nblocks = int(np.prod(self._stats_grid))
        self.part = ws.device("part", (nblocks, NPART), np.float64)
        self.box = ws.device("box", (6,), np.int32)
        self.vrange = ws.device("vrange", (2,), np.float32)
        self.summary = ws.device("summary", (NPART + 8,), np.float64)
        self.summary_host = ws.pinned("summary", (NPART + 8,), np.float64)
        self.box.copy_to_device(np.array([IBIG, -1, IBIG, -1, IBIG, -1], dtype=np.int32), stream=self.stream)
        self.vrange.copy_to_device(np.array([BIG, -BIG], dtype=np.float32), stream=self.stream)
        self._last_hist: np.ndarray | None = None

    def _args(self) -> tuple[object, ...]:
        return (self.raw, self.sl, self.ic, self.ti, self.tw, *self.dims)

    def stats(
        self,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        fg_thr: float,
        stat_shift: float,
        fg_only: bool,
    ) -> Stats:
        s = self.stream
        stats_kernel[self._stats_grid, (BX, BY), s](
            *self._args(),
            np.float32(clip[0]),
            np.float32(clip[1]),
            np.float32(shift),
            np.float32(scale),
            np.float32(fg_thr),
            np.float64(stat_shift),
            np.int32(1 if fg_only else 0),
            self.part,
            self.box,
            self.vrange,
        )
        finalize_kernel[1, FIN, s](self.part, self.box, self.vrange, self.summary)
        self.summary.copy_to_host(self.summary_host, stream=s)
        s.synchronize()
        tot = self.summary_host
        fg = int(round(tot[3]))
        bbox = None
        if fg > 0:
            b = [int(v) for v in tot[NPART : NPART + 6]]
            bbox = (b[0], b[1] + 1, b[2], b[3] + 1, b[4], b[5] + 1)
        vmin, vmax = (float(tot[NPART + 6]), float(tot[NPART + 7])) if fg > 0 else (0.0, 0.0)
        return Stats.from_sums(tot[0], tot[1], tot[2], stat_shift, fg, bbox, vmin, vmax)

    def histogram(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, nbins: int
    ) -> np.ndarray:
        grid, block = _grid(*self.tables.shape)
        s = self.stream
        hist = self.ws.upload("hist", np.zeros(nbins, dtype=np.int64))
        histogram_kernel[grid, block, s](
            *self._args(),
            np.float32(clip[0]),
            np.float32(clip[1]),
            np.float32(fg_thr),
            np.float64(vmin),
            np.float64(bin_scale),
            hist,
        )
        out = hist.copy_to_host(stream=s)
        s.synchronize()
        self._last_hist = out
        return out

    def gather(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, wanted: np.ndarray
    ) -> np.ndarray:
        if self._last_hist is None or self._last_hist.shape[0] != wanted.shape[0]:
            raise RuntimeError("gather needs the histogram of the same bins first")
        n = int(self._last_hist[wanted].sum())
        grid, block = _grid(*self.tables.shape)
        s = self.stream
        values = self.ws.device("values", (max(n, 1),), np.float32)
        cursor = self.ws.upload("cursor", np.zeros(1, dtype=np.int64))
        wanted_d = self.ws.upload("wanted", wanted.astype(np.uint8))
        gather_kernel[grid, block, s](
            *self._args(),
            np.float32(clip[0]),
            np.float32(clip[1]),
            np.float32(fg_thr),
            np.float64(vmin),
            np.float64(bin_scale),
            wanted_d,
            cursor,
            values,
        )
        out = values.copy_to_host(stream=s)[:n]
        s.synchronize()
        return out

    def normalize_device(
        self,
        bbox: tuple[int, int, int, int, int, int] | None,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        mean: float,
        inv_std: float,
        quant: tuple[float, float] | None = None,
    ) -> Any:
        """Pass 2 into a workspace device array (for callers that keep results on the GPU):
        float32, or int16 rint(x * qa + qb) with ``quant`` = (qa, qb)."""
        t = self.tables
        z0, z1, y0, y1, x0, x1 = bbox if bbox is not None else (0, t.shape[0], 0, t.shape[1], 0, t.shape[2])
        shape = (z1 - z0, y1 - y0, x1 - x0)
        args = (
            *self._args(),
            np.int32(z0),
            np.int32(y0),
            np.int32(x0),
            np.float32(clip[0]),
            np.float32(clip[1]),
            np.float32(shift),
            np.float32(scale),
            np.float32(mean),
            np.float32(inv_std),
        )
        grid, block = _grid(*shape)
        if quant is None:
            out = self.ws.device("out", shape, np.float32)
            normalize_kernel[grid, block, self.stream](*args, out)
        else:
            out = self.ws.device("out16", shape, np.int16)
            normalize_int16_kernel[grid, block, self.stream](
                *args, np.float32(quant[0]), np.float32(quant[1]), out
            )
        return out

    def normalize(
        self,
        bbox: tuple[int, int, int, int, int, int] | None,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        mean: float,
        inv_std: float,
        out: np.ndarray | None = None,
        quant: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Pass 2, copied into ``out`` when given (C-contiguous, the crop's shape; float32,
        or int16 with ``quant``), else into the workspace's pinned result buffer or a fresh
        array."""
        dev = self.normalize_device(bbox, clip, shift, scale, mean, inv_std, quant)
        shape = tuple(dev.shape)
        kind = np.dtype(np.int16 if quant is not None else np.float32)
        if out is not None:
            if out.shape != shape or out.dtype != kind or not out.flags.c_contiguous:
                raise ValueError(f"out must be C-contiguous {kind} of shape {shape}")
            dest = out
        elif self.ws.pinned_results:
            dest = self.ws.pinned("out" if quant is None else "out16", shape, kind)
        else:
            dest = np.empty(shape, dtype=kind)
        dev.copy_to_host(dest, stream=self.stream)
        self.stream.synchronize()
        return dest
