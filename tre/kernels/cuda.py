"""The same passes as `tre.kernels.cpu`, as Numba CUDA kernels (``numba-cuda`` package).

One thread per output voxel; trilinear sampling straight from the int16 input in device
memory (it fits in L2-friendly slabs and the GPU has bandwidth to spare), so there is no
slice cache here. Reductions are deterministic: each block reduces in shared memory with a
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
SLABS = 8  # input upload slabs / pass-1 launches
ZPT = 2 if _SIM else 8  # output slices per thread in the stats pass
NPART = 4  # partial row: selected count, sum(d), sum(d^2), foreground count
BIG = 3.0e38
IBIG = 2**30


@cuda.jit(device=True, inline=True)
def _hu(raw, sl, ic, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw, k, j, i):
    """Trilinear sample of the rescaled input at output voxel (k, j, i), in float32."""
    z0 = zi0[k]
    z1 = zi1[k]
    ya = yi0[j]
    yb = yi1[j]
    xa = xi0[i]
    xb = xi1[i]
    wx = xw[i]
    wy = yw[j]
    wz = zw[k]
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
    zi0,
    zi1,
    zw,
    yi0,
    yi1,
    yw,
    xi0,
    xi1,
    xw,
    clip_lo,
    clip_hi,
    shift,
    scale,
    fg_thr,
    stat_shift,
    fg_only,
    k_base,
    part,
    box,
    vrange,
):
    """Per block: partial sums into part[block]; bbox (box) and fg value range via atomics.

    Each thread walks ZPT consecutive output slices (sequential float64 sums: fixed order),
    which amortises the block reduction; ``k_base`` is the global index of output slice 0
    of these (possibly chunked) tables, for the bounding box.
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
    if i < xi0.shape[0] and j < yi0.shape[0]:
        k0 = cuda.blockIdx.z * ZPT
        k1 = min(k0 + ZPT, zi0.shape[0])
        for k in range(k0, k1):
            h = _hu(raw, sl, ic, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw, k, j, i)
            v = (min(max(h, clip_lo), clip_hi) - shift) * scale
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
            cuda.atomic.min(box, 0, s_i[0, 0] + k_base)
            cuda.atomic.max(box, 1, s_i[1, 0] + k_base)
            cuda.atomic.min(box, 2, s_i[2, 0])
            cuda.atomic.max(box, 3, s_i[3, 0])
            cuda.atomic.min(box, 4, s_i[4, 0])
            cuda.atomic.max(box, 5, s_i[5, 0])
            cuda.atomic.min(vrange, 0, s_v[0, 0])
            cuda.atomic.max(vrange, 1, s_v[1, 0])


@cuda.jit
def finalize_kernel(part, out):
    """One block: out[c] = sum over rows of part[:, c], in a fixed order (stride, then tree)."""
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


@cuda.jit
def normalize_kernel(
    raw, sl, ic, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw, clip_lo, clip_hi, shift, scale, mean, inv, out
):
    """out[k, j, i] = ((clip(hu) - shift) * scale - mean) * inv over the (cropped) tables."""
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    k = cuda.blockIdx.z
    if i < out.shape[2] and j < out.shape[1]:
        h = _hu(raw, sl, ic, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw, k, j, i)
        out[k, j, i] = ((min(max(h, clip_lo), clip_hi) - shift) * scale - mean) * inv


@cuda.jit
def histogram_kernel(
    raw, sl, ic, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw, clip_lo, clip_hi, fg_thr, vmin, bin_scale, hist
):
    """Global histogram of foreground v = clip(hu) (integer atomics: exact, order-free)."""
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    k = cuda.blockIdx.z
    if i < xi0.shape[0] and j < yi0.shape[0]:
        h = _hu(raw, sl, ic, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw, k, j, i)
        if h > fg_thr:
            v = min(max(h, clip_lo), clip_hi)
            b = min(max(int((v - vmin) * bin_scale), 0), hist.shape[0] - 1)
            cuda.atomic.add(hist, b, 1)


@cuda.jit
def gather_kernel(
    raw,
    sl,
    ic,
    zi0,
    zi1,
    zw,
    yi0,
    yi1,
    yw,
    xi0,
    xi1,
    xw,
    clip_lo,
    clip_hi,
    fg_thr,
    vmin,
    bin_scale,
    wanted,
    cursor,
    values,
):
    """Append foreground v whose bin is wanted to ``values`` (atomic cursor; host sorts)."""
    i = cuda.blockIdx.x * BX + cuda.threadIdx.x
    j = cuda.blockIdx.y * BY + cuda.threadIdx.y
    k = cuda.blockIdx.z
    if i < xi0.shape[0] and j < yi0.shape[0]:
        h = _hu(raw, sl, ic, zi0, zi1, zw, yi0, yi1, yw, xi0, xi1, xw, k, j, i)
        if h > fg_thr:
            v = min(max(h, clip_lo), clip_hi)
            b = min(max(int((v - vmin) * bin_scale), 0), wanted.shape[0] - 1)
            if wanted[b]:
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
        self.copy_stream = cuda.stream()  # input slabs upload here, overlapping pass 1
        self.pinned_results = pinned_results
        self._dev: dict[str, Any] = {}
        self._host: dict[str, np.ndarray] = {}

    def device(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        n = max(1, int(np.prod(shape)))
        buf = self._dev.get(name)
        if buf is None or buf.dtype != np.dtype(dtype) or buf.size < n:
            buf = cuda.device_array(n, dtype=dtype, stream=self.stream)
            self._dev[name] = buf
        return buf[:n].reshape(shape) if shape else buf[:1]

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
        self.raw = self._upload_slabs(np.ascontiguousarray(raw))
        self.sl = ws.upload("slopes", np.asarray(slopes, dtype=np.float32))
        self.ic = ws.upload("intercepts", np.asarray(intercepts, dtype=np.float32))
        t = tables
        self._t = tuple(
            ws.upload(f"t{n}", np.asarray(a, dtype=dt))
            for n, (a, dt) in enumerate(
                (
                    (t.z.i0, np.int32),
                    (t.z.i1, np.int32),
                    (t.z.w, np.float32),
                    (t.y.i0, np.int32),
                    (t.y.i1, np.int32),
                    (t.y.w, np.float32),
                    (t.x.i0, np.int32),
                    (t.x.i1, np.int32),
                    (t.x.w, np.float32),
                )
            )
        )
        self._last_hist: np.ndarray | None = None

    def _upload_slabs(self, raw: np.ndarray) -> Any:
        """Copy the input in z-slabs on the copy stream, recording an event after each, so
        pass 1 can start on the first output slices while later slabs are in flight (from
        pinned memory the copies are truly asynchronous)."""
        dev = self.ws.device("raw", raw.shape, raw.dtype)
        nz = raw.shape[0]
        bounds = np.linspace(0, nz, min(SLABS, nz) + 1).round().astype(int)
        self._slabs: list[tuple[int, Any]] = []
        for z0, z1 in zip(bounds[:-1], bounds[1:], strict=True):
            dev[z0:z1].copy_to_device(raw[z0:z1], stream=self.ws.copy_stream)
            ev = cuda.event()
            ev.record(self.ws.copy_stream)
            self._slabs.append((int(z1), ev))
        return dev

    def _wait_for_input(self, last_slice: int) -> None:
        """Make the compute stream wait until input slices <= last_slice have arrived."""
        for z_end, ev in self._slabs:
            ev.wait(self.stream)
            if z_end > last_slice:
                break

    def _args(self) -> tuple[object, ...]:
        return (self.raw, self.sl, self.ic, *self._t)

    def stats(
        self,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        fg_thr: float,
        stat_shift: float,
        fg_only: bool,
    ) -> Stats:
        nz, ny, nx = self.tables.shape
        s = self.stream
        gx, gy = math.ceil(nx / BX), math.ceil(ny / BY)
        zblocks = math.ceil(nz / ZPT)
        # Chunk boundaries on multiples of ZPT: the same thread grouping as one launch, so
        # results do not depend on the chunking; chunks only let pass 1 follow the upload.
        cuts = [min(int(c) * ZPT, nz) for c in np.linspace(0, zblocks, min(SLABS, zblocks) + 1).round()]
        part = self.ws.device("part", (gx * gy * zblocks, NPART), np.float64)
        box = self.ws.upload("box", np.array([IBIG, -1, IBIG, -1, IBIG, -1], dtype=np.int32))
        vrange = self.ws.upload("vrange", np.array([BIG, -BIG], dtype=np.float32))
        total = self.ws.device("total", (NPART,), np.float64)
        tz0, tz1, tzw = self._t[0], self._t[1], self._t[2]
        row = 0
        for k0, k1 in zip(cuts[:-1], cuts[1:], strict=True):
            if k1 <= k0:
                continue
            self._wait_for_input(int(self.tables.z.i1[k1 - 1]))
            nb = gx * gy * math.ceil((k1 - k0) / ZPT)
            stats_kernel[(gx, gy, math.ceil((k1 - k0) / ZPT)), (BX, BY), s](
                self.raw,
                self.sl,
                self.ic,
                tz0[k0:k1],
                tz1[k0:k1],
                tzw[k0:k1],
                *self._t[3:],
                np.float32(clip[0]),
                np.float32(clip[1]),
                np.float32(shift),
                np.float32(scale),
                np.float32(fg_thr),
                np.float64(stat_shift),
                np.int32(1 if fg_only else 0),
                np.int32(k0),
                part[row : row + nb],
                box,
                vrange,
            )
            row += nb
        for _z_end, ev in self._slabs:  # later passes may read any input slice
            ev.wait(s)
        finalize_kernel[1, FIN, s](part, total)
        tot = total.copy_to_host(stream=s)
        hbox = box.copy_to_host(stream=s)
        hv = vrange.copy_to_host(stream=s)
        s.synchronize()
        fg = int(round(tot[3]))
        bbox = None
        if fg > 0:
            bbox = (
                int(hbox[0]),
                int(hbox[1]) + 1,
                int(hbox[2]),
                int(hbox[3]) + 1,
                int(hbox[4]),
                int(hbox[5]) + 1,
            )
        vmin, vmax = (float(hv[0]), float(hv[1])) if fg > 0 else (0.0, 0.0)
        return Stats.from_sums(tot[0], tot[1], tot[2], stat_shift, fg, bbox, vmin, vmax)

    def histogram(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, nbins: int
    ) -> np.ndarray:
        nz, ny, nx = self.tables.shape
        grid, block = _grid(nz, ny, nx)
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
        nz, ny, nx = self.tables.shape
        grid, block = _grid(nz, ny, nx)
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
        host: np.ndarray | None = None,
    ) -> Any:
        """Pass 2 into a device array (kept on the GPU) and, if ``host`` is given, copied
        there slab by slab on the copy stream while later slabs are still being computed."""
        t = self.tables
        z0, z1, y0, y1, x0, x1 = bbox if bbox is not None else (0, t.shape[0], 0, t.shape[1], 0, t.shape[2])
        s = self.stream
        out = self.ws.device("out", (z1 - z0, y1 - y0, x1 - x0), np.float32)
        tz0, tz1, tzw, ty0, ty1, tyw, tx0, tx1, txw = self._t
        nz = z1 - z0
        cuts = np.linspace(0, nz, min(SLABS, nz) + 1).round().astype(int)
        for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True):
            if c1 <= c0:
                continue
            grid, block = _grid(int(c1 - c0), y1 - y0, x1 - x0)
            normalize_kernel[grid, block, s](
                self.raw,
                self.sl,
                self.ic,
                tz0[z0 + c0 : z0 + c1],
                tz1[z0 + c0 : z0 + c1],
                tzw[z0 + c0 : z0 + c1],
                ty0[y0:y1],
                ty1[y0:y1],
                tyw[y0:y1],
                tx0[x0:x1],
                tx1[x0:x1],
                txw[x0:x1],
                np.float32(clip[0]),
                np.float32(clip[1]),
                np.float32(shift),
                np.float32(scale),
                np.float32(mean),
                np.float32(inv_std),
                out[c0:c1],
            )
            if host is not None:
                ev = cuda.event()
                ev.record(s)
                ev.wait(self.ws.copy_stream)
                out[c0:c1].copy_to_host(host[c0:c1], stream=self.ws.copy_stream)
        return out

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
        box = bbox if bbox is not None else (0, t.shape[0], 0, t.shape[1], 0, t.shape[2])
        shape = (box[1] - box[0], box[3] - box[2], box[5] - box[4])
        if self.ws.pinned_results:
            dest = self.ws.pinned("out", shape, np.float32)
        else:
            dest = np.empty(shape, dtype=np.float32)
        self.normalize_device(bbox, clip, shift, scale, mean, inv_std, host=dest)
        self.ws.copy_stream.synchronize()
        self.stream.synchronize()
        return dest
