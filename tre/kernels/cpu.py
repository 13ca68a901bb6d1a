"""Fused, parallel CPU kernels (Numba) for resample + rescale + window + stats + crop.

Why this shape: the grid is axis-aligned, so trilinear interpolation is separable. Each
thread walks a contiguous chunk of output slices and keeps the two input slices it needs
already resampled in-plane (y then x, rescale slope/intercept applied) in two small
thread-local buffers; moving to the next output slice usually reuses both, so every input
slice is resampled in-plane about once per pass and an output voxel costs one blend along
z plus its reduction or store -- all contiguous, SIMD-friendly loops.

No kernel materialises the full-resolution float image: pass 1 (`stats_pass`) reduces (sums,
foreground count, bounding box) without storing; pass 2 (`normalize_pass`) resamples again,
only inside the bounding box, and writes the z-scored float32 result (or, for ``--dtype
int16``, `normalize_int16_pass` stores it quantised: `tre.kernels.quantise`). Recomputing is
cheaper than a second trip through memory, and the peak extra memory is the output alone.

Determinism: partial results are kept per output slice (or per fixed chunk for integer
histograms) and combined by the host in index order; a voxel's value does not depend on
which thread computed it or on what its cache held. Sums are float64.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from tre.kernels.grid import GridTables
from tre.kernels.stats import Stats

# Allow SIMD reductions inside a row (fixed by the compiled code, so still reproducible).
_FM = {"reassoc", "contract", "nsz", "arcp"}


@njit(inline="always", fastmath=_FM)
def clip_value(h, clip_lo, clip_hi):
    """clip(h, lo, hi) as two branch-free min/max (vectorises)."""
    return min(max(h, clip_lo), clip_hi)


@njit(inline="always", fastmath=_FM)
def window_value(h, clip_lo, clip_hi, shift, scale):
    """First stage of every recipe: v = (clip(h, lo, hi) - shift) * scale."""
    return (clip_value(h, clip_lo, clip_hi) - shift) * scale


@njit(inline="always", fastmath=_FM)
def histogram_bin(v, vmin, bin_scale, nbins):
    """Histogram bin of ``v`` for the percentile passes, clamped to [0, nbins)."""
    return min(max(np.int64((v - vmin) * bin_scale), 0), nbins - 1)


@njit(inline="always", fastmath=_FM)
def z_blend(a, b, w):
    """Linear interpolation between two in-plane resampled values along z."""
    return a + w * (b - a)


ROWS = 4  # output rows blended before one shared x pass (tmp holds ROWS input-row blends)
STACK_COLS = 4096  # widest input row whose ROWS y-blends live on the stack (16 KiB per row)
PERM_LANES = 16  # output columns per permute block of the x step (one 512-bit vector)
PERM_SPAN = 2 * PERM_LANES  # input columns one block may read (two 512-bit vectors)


def _stack_scratch_typing(typingctx):
    """Pointer to ROWS x STACK_COLS float32 of scratch in the caller's stack frame.

    Why: LLVM vectorises the x gather (``vgatherdps``) only when it can prove that the rows
    it gathers from do not alias the output rows. A heap array passed around (Numba's arrays
    carry no ``noalias``) could be the output, so the loop stayed scalar; an ``alloca`` that
    never escapes its function provably is not. In-plane resampling of the benchmark's 300
    slices: 95-117 -> 41-53 ms on one core (interleaved).
    """

    def codegen(context, builder, sig, args):
        f32 = context.get_value_type(types.float32)
        # PERM_SPAN floats of slack: the permute x step loads PERM_SPAN values from a block's
        # first input column, which may run past the last row's end.
        return cgutils.alloca_once(builder, f32, size=ROWS * STACK_COLS + PERM_SPAN)

    return types.CPointer(types.float32)(), codegen


_stack_scratch: Any = intrinsic(_stack_scratch_typing)  # Any: called only from jitted code


@njit(inline="always", fastmath=_FM)
def _x_pass(t, xi0, xi1, xw, row):
    for i in range(xi0.shape[0]):
        a = t[xi0[i]]
        row[i] = a + xw[i] * (t[xi1[i]] - a)


@njit(inline="always", fastmath=_FM)
def _y_rows(raw, z, j0, nr, s, b, yi0, yi1, yw, tmp):
    """tmp[r, :nx] = rescaled blend of the two input rows around output row j0 + r.

    Always the whole row, even when the x table needs fewer columns (a crop): with a
    run-time start and end LLVM's code for this loop and the gather after it took twice as
    long (84-93 vs 41-44 ms for 300 slices, one core, interleaved).
    """
    one = np.float32(1.0)
    for r in range(nr):
        j = j0 + r
        wy = yw[j]
        ca = (one - wy) * s
        cb = wy * s
        ra = raw[z, yi0[j]]
        rb = raw[z, yi1[j]]
        t = tmp[r]
        for x in range(raw.shape[2]):
            t[x] = ca * np.float32(ra[x]) + cb * np.float32(rb[x]) + b


@njit(inline="always", fastmath=_FM)
def _x_rows4(tmp, xi0, xi1, xw, o0, o1, o2, o3):
    """The x step of four y-blended rows: one index and weight load feeds four gathers."""
    t0 = tmp[0]
    t1 = tmp[1]
    t2 = tmp[2]
    t3 = tmp[3]
    for i in range(xi0.shape[0]):
        k0 = xi0[i]
        k1 = xi1[i]
        w = xw[i]
        a = t0[k0]
        o0[i] = a + w * (t0[k1] - a)
        a = t1[k0]
        o1[i] = a + w * (t1[k1] - a)
        a = t2[k0]
        o2[i] = a + w * (t2[k1] - a)
        a = t3[k0]
        o3[i] = a + w * (t3[k1] - a)


def _target_has_avx512(context: Any) -> bool:
    """Whether the code being compiled may use AVX-512F: the target machine's features (the
    host's, or ``NUMBA_CPU_FEATURES``; Numba keys its cache on them)."""
    features = str(getattr(context.codegen(), "_tm_features", ""))
    return "+avx512f" in features.split(",")


def _has_avx512_typing(typingctx):
    """Compile-time constant: may the permute x step (`_x_perm_rows4`) be used?"""

    def codegen(context, builder, sig, args):
        return ir.Constant(ir.IntType(1), int(_target_has_avx512(context)))

    return types.boolean(), codegen


_has_avx512: Any = intrinsic(_has_avx512_typing)  # Any: called only from jitted code


def _x_perm_rows4_typing(typingctx, t0, t1, t2, t3, xi0, xi1, xw, i, o0, o1, o2, o3):
    """The x step of four y-blended rows for output columns i .. i + 15, by permutes.

    Why: the 16 output columns of a block read input columns ``xi0[i]`` .. ``xi0[i] + 31`` at
    most (when ``_perm_columns`` let the block through), i.e. two 512-bit vectors of the row;
    two ``vpermi2ps`` pick both neighbours of every column from them, where the gather path
    needs two 16-lane ``vgatherdps`` (about 9 cycles each here). Same formula as `_x_rows4`,
    ``fma(w, b - a, a)``, so the same values bit for bit. Only emitted for a target with
    AVX-512F (`_has_avx512`); elsewhere it compiles to nothing and is never called. Every
    array must be C-contiguous (the pointers are computed from the data pointer).
    """
    arrays = (t0, t1, t2, t3, xi0, xi1, xw, o0, o1, o2, o3)
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        if not _target_has_avx512(context):
            return context.get_dummy_value()
        f32 = ir.FloatType()
        i32 = ir.IntType(32)
        i64 = ir.IntType(64)
        vf = ir.VectorType(f32, PERM_LANES)
        vi = ir.VectorType(i32, PERM_LANES)

        def data(k):
            return context.make_array(sig.args[k])(context, builder, args[k]).data

        def vload(ptr, vty):
            return builder.load(builder.bitcast(ptr, vty.as_pointer()), align=4)

        col = builder.sext(args[7], i64) if args[7].type.width < 64 else args[7]
        k0 = vload(builder.gep(data(4), [col]), vi)
        k1 = vload(builder.gep(data(5), [col]), vi)
        w = vload(builder.gep(data(6), [col]), vf)
        base = builder.extract_element(k0, ir.Constant(i32, 0))
        splat = builder.shuffle_vector(
            builder.insert_element(ir.Constant(vi, None), base, ir.Constant(i32, 0)),
            ir.Constant(vi, None),
            ir.Constant(vi, [0] * PERM_LANES),
        )
        r0 = builder.sub(k0, splat)
        r1 = builder.sub(k1, splat)
        base64 = builder.sext(base, i64)
        module = builder.module
        perm = cgutils.get_or_insert_function(
            module, ir.FunctionType(vf, [vf, vi, vf]), "llvm.x86.avx512.vpermi2var.ps.512"
        )
        fma = cgutils.get_or_insert_function(module, ir.FunctionType(vf, [vf, vf, vf]), "llvm.fma.v16f32")
        for r in range(4):
            src = builder.gep(data(r), [base64])
            lo = vload(src, vf)
            hi = vload(builder.gep(src, [ir.Constant(i64, PERM_LANES)]), vf)
            a = builder.call(perm, [lo, r0, hi])
            b = builder.call(perm, [lo, r1, hi])
            res = builder.call(fma, [w, builder.fsub(b, a), a])
            builder.store(res, builder.bitcast(builder.gep(data(8 + r), [col]), vf.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(t0, t1, t2, t3, xi0, xi1, xw, i, o0, o1, o2, o3), codegen


_x_perm_rows4: Any = intrinsic(_x_perm_rows4_typing)  # Any: called only from jitted code


@njit(inline="always", fastmath=_FM)
def _plane_rows(raw, z, s, b, yi0, yi1, yw, xi0, xi1, xw, tmp, out, perm_cols):
    """``perm_cols``: the leading output columns the permute x step does (a multiple of
    PERM_LANES; 0 where it does not apply); the gather loop does the rest."""
    ny = yi0.shape[0]
    nxo = xi0.shape[0]
    for j0 in range(0, ny, ROWS):
        nr = min(ROWS, ny - j0)
        _y_rows(raw, z, j0, nr, s, b, yi0, yi1, yw, tmp)
        if nr == ROWS:
            o0 = out[j0]
            o1 = out[j0 + 1]
            o2 = out[j0 + 2]
            o3 = out[j0 + 3]
            if perm_cols > 0:
                for i in range(0, perm_cols, PERM_LANES):
                    _x_perm_rows4(tmp[0], tmp[1], tmp[2], tmp[3], xi0, xi1, xw, i, o0, o1, o2, o3)
            if perm_cols < nxo:
                _x_rows4(
                    tmp,
                    xi0[perm_cols:],
                    xi1[perm_cols:],
                    xw[perm_cols:],
                    o0[perm_cols:],
                    o1[perm_cols:],
                    o2[perm_cols:],
                    o3[perm_cols:],
                )
        else:
            for r in range(nr):
                _x_pass(tmp[r], xi0, xi1, xw, out[j0 + r])


@njit(inline="always")
def _perm_columns(xi0, xi1):
    """Output columns (from 0, whole PERM_LANES blocks) whose x step the permute path can do:
    on a CPU with AVX-512, the blocks whose input columns span fewer than PERM_SPAN."""
    if not _has_avx512():
        return 0
    n = 0
    while n + PERM_LANES <= xi0.shape[0] and xi1[n + PERM_LANES - 1] - xi0[n] < PERM_SPAN:
        n += PERM_LANES
    return n


@njit(cache=True, fastmath=_FM)
def _slice_plane(raw, z, slope, intercept, yi0, yi1, yw, xi0, xi1, xw, tmp, out):
    """out[j, i] = rescaled input slice ``z`` bilinearly sampled at output row j, column i.

    y first (two contiguous input rows blended over the whole row into a row of scratch),
    then x. ROWS output rows are y-blended first and then share one x loop (one
    loaded index and weight feeds four gathers). The scratch rows are on the stack (see
    `_stack_scratch`) so that the x gathers vectorise; rows wider than STACK_COLS use ``tmp``
    (same results, scalar gathers).
    """
    s = np.float32(slope)
    b = np.float32(intercept)
    if raw.shape[2] <= STACK_COLS:
        scratch = numba.carray(_stack_scratch(), (ROWS, STACK_COLS))
        _plane_rows(raw, z, s, b, yi0, yi1, yw, xi0, xi1, xw, scratch, out, _perm_columns(xi0, xi1))
    else:
        _plane_rows(raw, z, s, b, yi0, yi1, yw, xi0, xi1, xw, tmp, out, 0)


@njit(cache=True, fastmath=_FM)
def _planes_for(raw, slopes, intercepts, z0, z1, yi0, yi1, yw, xi0, xi1, xw, tmp, pa, pb, have):
    """Make pa hold plane z0 and pb plane z1, reusing what the two buffers already hold.

    ``have`` = [slice in pa, slice in pb]; returns (pa, pb) since buffers may swap.
    """
    if have[0] != z0 and have[1] == z0:
        pa, pb = pb, pa
        have[0], have[1] = have[1], have[0]
    if have[0] != z0:
        _slice_plane(raw, z0, slopes[z0], intercepts[z0], yi0, yi1, yw, xi0, xi1, xw, tmp, pa)
        have[0] = z0
    if have[1] != z1:
        if z1 == z0:
            pb[:, :] = pa
        else:
            _slice_plane(raw, z1, slopes[z1], intercepts[z1], yi0, yi1, yw, xi0, xi1, xw, tmp, pb)
        have[1] = z1
    return pa, pb


KEY_MAX = np.int32(2**31 - 1)
KEY_MIN = np.int32(-(2**31))


def _float32_key_typing(typingctx, v):
    """int32 that orders like the float32 ``v``: its bits, with the magnitude bits of
    negative values flipped. Integer min/max reductions vectorise; float ones do not."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        flip = builder.and_(builder.ashr(bits, ir.Constant(i32, 31)), ir.Constant(i32, 0x7FFFFFFF))
        return builder.xor(bits, flip)

    return types.int32(types.float32), codegen


float32_key: Any = intrinsic(_float32_key_typing)  # Any: called only from jitted code


def _key_float32_typing(typingctx, k):
    """Inverse of `float32_key`."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        flip = builder.and_(builder.ashr(args[0], ir.Constant(i32, 31)), ir.Constant(i32, 0x7FFFFFFF))
        return builder.bitcast(builder.xor(args[0], flip), ir.FloatType())

    return types.float32(types.int32), codegen


key_float32: Any = intrinsic(_key_float32_typing)  # Any: called only from jitted code


@njit(parallel=True, cache=True, fastmath=_FM)
def stats_pass(
    raw,
    slopes,
    intercepts,
    zi0,
    zi1,
    zw,
    yi0,
    yi1,
    yw,
    xi0,
    xi1,
    xw,
    group_start,
    max_group,
    chunk_start,
    clip_lo,
    clip_hi,
    shift,
    scale,
    fg_thr,
    stat_shift,
    fg_only,
    sums,
    ibox,
    vrange,
):
    """Pass 1: per output slice k, reduce without storing.

    sums[k] = (count, sum(v - stat_shift), sum((v - stat_shift)^2)) over all voxels, or over
    foreground only when ``fg_only``, where v = (clip(hu) - shift) * scale; ibox[k] =
    (fg count, ymin, ymax, xmin, xmax); vrange[k] = (min, max) of foreground v (``fg_only``).

    Chunks are runs of `pair_groups` (output slices ``group_start[g]`` .. ``group_start[g+1]``
    blend the same two input planes); within a group the rows go outer and the group's
    output slices inner, so the two plane rows a row needs are read from L1 for every slice
    of the group instead of from L2 once per slice (stats pass 0.89x CPU on one thread,
    interleaved). Each slice's row sums and their order are unchanged.
    """
    nyo = yi0.shape[0]
    nxo = xi0.shape[0]
    sshift = np.float32(stat_shift)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for c in prange(chunk_start.shape[0] - 1):
        tmp = np.empty((ROWS, raw.shape[2]), dtype=np.float32)
        pa = np.empty((nyo, nxo), dtype=np.float32)
        pb = np.empty((nyo, nxo), dtype=np.float32)
        have = np.full(2, -1, dtype=np.int64)
        # Per slice of the group. Foreground voxels per column of the slice (float32: exact
        # below 2**24, and it keeps the hot loop in one lane width); its first and last
        # non-zero columns are the slice's x bounds. Per-row searches from both ends cost
        # ~20 % of the pass.
        cols = np.zeros((max_group, nxo), dtype=np.float32)
        cnt = np.zeros(max_group, dtype=np.int64)
        acc = np.zeros(max_group, dtype=np.float64)
        acc2 = np.zeros(max_group, dtype=np.float64)
        fgn = np.zeros(max_group, dtype=np.int64)
        ymin = np.zeros(max_group, dtype=np.int64)
        ymax = np.zeros(max_group, dtype=np.int64)
        kmin = np.zeros(max_group, dtype=np.int32)
        kmax = np.zeros(max_group, dtype=np.int32)
        for g in range(chunk_start[c], chunk_start[c + 1]):
            k0 = group_start[g]
            n = group_start[g + 1] - k0
            pa, pb = _planes_for(
                raw, slopes, intercepts, zi0[k0], zi1[k0], yi0, yi1, yw, xi0, xi1, xw, tmp, pa, pb, have
            )
            for q in range(n):
                cols[q, :] = zero
                cnt[q] = 0
                acc[q] = 0.0
                acc2[q] = 0.0
                fgn[q] = 0
                ymin[q] = nyo
                ymax[q] = -1
                kmin[q] = KEY_MAX
                kmax[q] = KEY_MIN
            for j in range(nyo):
                ra = pa[j]
                rb = pb[j]
                for q in range(n):
                    wz = np.float32(zw[k0 + q])
                    cq = cols[q]
                    # One row (<= a few hundred values) sums in float32 SIMD lanes around
                    # stat_shift; rows then accumulate in float64 (error ~1e-7 of a row sum).
                    racc = np.float32(0.0)
                    racc2 = np.float32(0.0)
                    # The foreground count is kept as a float32 select-and-add beside the
                    # sums: an int32 ``+= (h > thr)`` mixes lane widths and LLVM then
                    # vectorises the whole loop poorly (z reduction 39 -> 26 ms per 96 M
                    # voxels, one core). Exact: a row holds far fewer than 2**24 voxels.
                    rfgf = np.float32(0.0)
                    if fg_only:  # masked sums and foreground value range (percentile recipe)
                        # Branch-free, and the range as integer min/max of order-preserving
                        # keys: LLVM vectorises no float min/max reduction, so
                        # ``vmin = min(vmin, v)`` under ``if h > thr`` kept this loop scalar.
                        rkmin = KEY_MAX
                        rkmax = KEY_MIN
                        for i in range(nxo):
                            h = z_blend(ra[i], rb[i], wz)
                            fg = h > fg_thr
                            v = window_value(h, clip_lo, clip_hi, shift, scale)
                            d = (v - sshift) if fg else zero
                            racc += d
                            racc2 += d * d
                            f = one if fg else zero
                            rfgf += f
                            cq[i] += f
                            key = float32_key(v)
                            rkmin = min(rkmin, key if fg else KEY_MAX)
                            rkmax = max(rkmax, key if fg else KEY_MIN)
                        kmin[q] = min(kmin[q], rkmin)
                        kmax[q] = max(kmax[q], rkmax)
                    else:  # branch-free so that LLVM vectorises it (the hot path)
                        for i in range(nxo):
                            h = z_blend(ra[i], rb[i], wz)
                            d = window_value(h, clip_lo, clip_hi, shift, scale) - sshift
                            racc += d
                            racc2 += d * d
                            f = one if h > fg_thr else zero
                            rfgf += f
                            cq[i] += f
                    rfg = int(rfgf)
                    acc[q] += np.float64(racc)
                    acc2[q] += np.float64(racc2)
                    cnt[q] += rfg if fg_only else nxo
                    if rfg > 0:
                        fgn[q] += rfg
                        ymin[q] = min(ymin[q], j)
                        ymax[q] = j
            for q in range(n):
                k = k0 + q
                xmin = nxo
                xmax = -1
                if fgn[q] > 0:
                    xmin = 0
                    while cols[q, xmin] == zero:
                        xmin += 1
                    xmax = nxo - 1
                    while cols[q, xmax] == zero:
                        xmax -= 1
                sums[k, 0] = cnt[q]
                sums[k, 1] = acc[q]
                sums[k, 2] = acc2[q]
                ibox[k, 0] = fgn[q]
                ibox[k, 1] = ymin[q]
                ibox[k, 2] = ymax[q]
                ibox[k, 3] = xmin
                ibox[k, 4] = xmax
                if fg_only and fgn[q] > 0:
                    vrange[k, 0] = key_float32(kmin[q])
                    vrange[k, 1] = key_float32(kmax[q])
                else:
                    vrange[k, 0] = np.float32(3.0e38)
                    vrange[k, 1] = np.float32(-3.0e38)


@njit(parallel=True, cache=True, fastmath=_FM)
def normalize_pass(
    raw,
    slopes,
    intercepts,
    zi0,
    zi1,
    zw,
    yi0,
    yi1,
    yw,
    xi0,
    xi1,
    xw,
    group_start,
    chunk_start,
    clip_lo,
    clip_hi,
    shift,
    scale,
    mean,
    inv_std,
    out,
):
    """Pass 2: out = ((clip(hu) - shift) * scale - mean) * inv_std over the (cropped) tables.

    Chunks of `pair_groups`, rows outer and the group's output slices inner, as in
    `stats_pass`."""
    nyo = yi0.shape[0]
    nxo = xi0.shape[0]
    m = np.float32(mean)
    inv = np.float32(inv_std)
    for c in prange(chunk_start.shape[0] - 1):
        tmp = np.empty((ROWS, raw.shape[2]), dtype=np.float32)
        pa = np.empty((nyo, nxo), dtype=np.float32)
        pb = np.empty((nyo, nxo), dtype=np.float32)
        have = np.full(2, -1, dtype=np.int64)
        for g in range(chunk_start[c], chunk_start[c + 1]):
            k0 = group_start[g]
            n = group_start[g + 1] - k0
            pa, pb = _planes_for(
                raw, slopes, intercepts, zi0[k0], zi1[k0], yi0, yi1, yw, xi0, xi1, xw, tmp, pa, pb, have
            )
            for j in range(nyo):
                ra = pa[j]
                rb = pb[j]
                for q in range(n):
                    wz = np.float32(zw[k0 + q])
                    row = out[k0 + q, j]
                    for i in range(nxo):
                        v = window_value(z_blend(ra[i], rb[i], wz), clip_lo, clip_hi, shift, scale)
                        row[i] = (v - m) * inv


Q_MAX = np.float32(32767.0)  # stored int16 values are clamped to +-Q_MAX (never reached, see quantise.py)


@njit(inline="always", fastmath=_FM)
def quantise_value(x, qa, qb):
    """The int16 a z-scored value is stored as: rint(x * qa + qb), clamped to +-Q_MAX
    (`tre.kernels.quantise` chooses qa and qb so that the clamp never applies)."""
    return np.int16(min(max(np.rint(x * qa + qb), -Q_MAX), Q_MAX))


@njit(parallel=True, cache=True, fastmath=_FM)
def normalize_int16_pass(
    raw,
    slopes,
    intercepts,
    zi0,
    zi1,
    zw,
    yi0,
    yi1,
    yw,
    xi0,
    xi1,
    xw,
    group_start,
    chunk_start,
    clip_lo,
    clip_hi,
    shift,
    scale,
    mean,
    inv_std,
    qa,
    qb,
    out,
):
    """Pass 2 with the quantisation fused in: out = rint(x * qa + qb) as int16, where x is
    what `normalize_pass` writes. Same traversal; half the bytes stored, no separate pass
    over a float32 image (which would cost the float32 image's memory and a second trip
    through it)."""
    nyo = yi0.shape[0]
    nxo = xi0.shape[0]
    m = np.float32(mean)
    inv = np.float32(inv_std)
    a = np.float32(qa)
    b = np.float32(qb)
    for c in prange(chunk_start.shape[0] - 1):
        tmp = np.empty((ROWS, raw.shape[2]), dtype=np.float32)
        pa = np.empty((nyo, nxo), dtype=np.float32)
        pb = np.empty((nyo, nxo), dtype=np.float32)
        have = np.full(2, -1, dtype=np.int64)
        for g in range(chunk_start[c], chunk_start[c + 1]):
            k0 = group_start[g]
            n = group_start[g + 1] - k0
            pa, pb = _planes_for(
                raw, slopes, intercepts, zi0[k0], zi1[k0], yi0, yi1, yw, xi0, xi1, xw, tmp, pa, pb, have
            )
            for j in range(nyo):
                ra = pa[j]
                rb = pb[j]
                for q in range(n):
                    wz = np.float32(zw[k0 + q])
                    row = out[k0 + q, j]
                    for i in range(nxo):
                        v = window_value(z_blend(ra[i], rb[i], wz), clip_lo, clip_hi, shift, scale)
                        row[i] = quantise_value((v - m) * inv, a, b)


@njit(parallel=True, cache=True, fastmath=_FM)
def histogram_pass(
    raw,
    slopes,
    intercepts,
    zi0,
    zi1,
    zw,
    yi0,
    yi1,
    yw,
    xi0,
    xi1,
    xw,
    chunk_start,
    clip_lo,
    clip_hi,
    fg_thr,
    vmin,
    bin_scale,
    hist,
):
    """hist[c] = histogram of foreground v = clip(hu) over chunk c's slices.

    Integer counts per chunk, summed by the host: exact and order-free.
    """
    nbins = hist.shape[1]
    nyo = yi0.shape[0]
    nxo = xi0.shape[0]
    for c in prange(chunk_start.shape[0] - 1):
        tmp = np.empty((ROWS, raw.shape[2]), dtype=np.float32)
        pa = np.empty((nyo, nxo), dtype=np.float32)
        pb = np.empty((nyo, nxo), dtype=np.float32)
        have = np.full(2, -1, dtype=np.int64)
        for k in range(chunk_start[c], chunk_start[c + 1]):
            pa, pb = _planes_for(
                raw, slopes, intercepts, zi0[k], zi1[k], yi0, yi1, yw, xi0, xi1, xw, tmp, pa, pb, have
            )
            wz = np.float32(zw[k])
            for j in range(nyo):
                ra = pa[j]
                rb = pb[j]
                for i in range(nxo):
                    h = z_blend(ra[i], rb[i], wz)
                    if h > fg_thr:
                        v = clip_value(h, clip_lo, clip_hi)
                        hist[c, histogram_bin(v, vmin, bin_scale, nbins)] += 1


@njit(parallel=True, cache=True, fastmath=_FM)
def gather_pass(
    raw,
    slopes,
    intercepts,
    zi0,
    zi1,
    zw,
    yi0,
    yi1,
    yw,
    xi0,
    xi1,
    xw,
    chunk_start,
    clip_lo,
    clip_hi,
    fg_thr,
    vmin,
    bin_scale,
    wanted,
    offsets,
    values,
):
    """Copy foreground v whose histogram bin is ``wanted`` into values[offsets[c]:...].

    Offsets come from the histogram counts, so each chunk owns a fixed slice of ``values``;
    the host sorts what was gathered, which makes the order of copying irrelevant.
    """
    nbins = wanted.shape[0]
    nyo = yi0.shape[0]
    nxo = xi0.shape[0]
    for c in prange(chunk_start.shape[0] - 1):
        tmp = np.empty((ROWS, raw.shape[2]), dtype=np.float32)
        pa = np.empty((nyo, nxo), dtype=np.float32)
        pb = np.empty((nyo, nxo), dtype=np.float32)
        have = np.full(2, -1, dtype=np.int64)
        pos = offsets[c]
        for k in range(chunk_start[c], chunk_start[c + 1]):
            pa, pb = _planes_for(
                raw, slopes, intercepts, zi0[k], zi1[k], yi0, yi1, yw, xi0, xi1, xw, tmp, pa, pb, have
            )
            wz = np.float32(zw[k])
            for j in range(nyo):
                ra = pa[j]
                rb = pb[j]
                for i in range(nxo):
                    h = z_blend(ra[i], rb[i], wz)
                    if h > fg_thr:
                        v = clip_value(h, clip_lo, clip_hi)
                        if wanted[histogram_bin(v, vmin, bin_scale, nbins)]:
                            values[pos] = v
                            pos += 1


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def dynamic_chunks() -> Any:
    """Hand the chunks of a parallel pass to threads one at a time (Numba's dynamic
    scheduling) instead of splitting them evenly up front: on a loaded machine a thread that
    loses its core no longer holds up the pass while the other threads sit idle (median wall
    time 3.36 -> 2.73 s on the benchmark volume at load average ~17, same CPU time). Results
    do not depend on it: partial sums are kept per output slice or chunk."""
    return numba.parallel_chunksize(1)


def slice_chunks(n: int, per_thread: int = 4) -> np.ndarray:
    """Boundaries of contiguous output-slice chunks: a few per thread for load balance."""
    parts = max(1, min(n, per_thread * numba.get_num_threads()))
    return np.linspace(0, n, parts + 1).round().astype(np.int64)


def pair_groups(zi0: np.ndarray) -> np.ndarray:
    """Boundaries of the runs of output slices that blend the same two input slices (the
    same ``zi0``): group g is output slices ``[groups[g], groups[g + 1])``. The passes keep
    a group in one chunk, so its two planes are resampled once for all of its slices."""
    starts = np.flatnonzero(np.diff(zi0) != 0) + 1
    return np.concatenate(([0], starts, [zi0.shape[0]])).astype(np.int64)


class CpuBackend:
    """Runs the passes above on one volume; see `tre.kernels.pipeline` for the recipe."""

    name = "cpu"

    def __init__(
        self, raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray, tables: GridTables
    ) -> None:
        self.raw = np.ascontiguousarray(raw)
        self.slopes = np.ascontiguousarray(slopes, dtype=np.float64)
        self.intercepts = np.ascontiguousarray(intercepts, dtype=np.float64)
        self.tables = tables
        self._chunks = slice_chunks(tables.shape[0])
        self._groups = pair_groups(tables.z.i0)
        self._full = self._tables((0, tables.shape[0], 0, tables.shape[1], 0, tables.shape[2]))
        self._last_hist: np.ndarray | None = None

    def _tables(self, box: tuple[int, int, int, int, int, int]) -> tuple[np.ndarray, ...]:
        t = self.tables
        z0, z1, y0, y1, x0, x1 = box
        return (
            t.z.i0[z0:z1],
            t.z.i1[z0:z1],
            t.z.w[z0:z1],
            t.y.i0[y0:y1],
            t.y.i1[y0:y1],
            _f32(t.y.w[y0:y1]),
            # int32: the vectorised x gather then takes 16 lanes (vgatherdps), not 8
            t.x.i0[x0:x1].astype(np.int32),
            t.x.i1[x0:x1].astype(np.int32),
            _f32(t.x.w[x0:x1]),
        )

    def stats(
        self,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        fg_thr: float,
        stat_shift: float,
        fg_only: bool,
    ) -> Stats:
        nzo = self.tables.shape[0]
        sums = np.zeros((nzo, 3), dtype=np.float64)
        ibox = np.zeros((nzo, 5), dtype=np.int64)
        vrange = np.zeros((nzo, 2), dtype=np.float32)
        with dynamic_chunks():
            stats_pass(  # type: ignore[call-arg]
                self.raw,
                self.slopes,
                self.intercepts,
                *self._full,
                self._groups,
                int(np.diff(self._groups).max()),
                slice_chunks(len(self._groups) - 1),
                np.float32(clip[0]),
                np.float32(clip[1]),
                np.float32(shift),
                np.float32(scale),
                np.float32(fg_thr),
                float(stat_shift),
                bool(fg_only),
                sums,
                ibox,
                vrange,
            )
        return Stats.from_slices(sums, ibox, vrange, stat_shift)

    def histogram(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, nbins: int
    ) -> np.ndarray:
        hist = np.zeros((len(self._chunks) - 1, nbins), dtype=np.int64)
        with dynamic_chunks():
            histogram_pass(  # type: ignore[call-arg]
                self.raw,
                self.slopes,
                self.intercepts,
                *self._full,
                self._chunks,
                np.float32(clip[0]),
                np.float32(clip[1]),
                np.float32(fg_thr),
                float(vmin),
                float(bin_scale),
                hist,
            )
        self._last_hist = hist
        return hist.sum(axis=0)

    def gather(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, wanted: np.ndarray
    ) -> np.ndarray:
        if self._last_hist is None or self._last_hist.shape[1] != wanted.shape[0]:
            raise RuntimeError("gather needs the histogram of the same bins first")
        per_chunk = self._last_hist[:, wanted].sum(axis=1)
        offsets = np.concatenate(([0], np.cumsum(per_chunk)[:-1])).astype(np.int64)
        values = np.empty(int(per_chunk.sum()), dtype=np.float32)
        with dynamic_chunks():
            gather_pass(  # type: ignore[call-arg]
                self.raw,
                self.slopes,
                self.intercepts,
                *self._full,
                self._chunks,
                np.float32(clip[0]),
                np.float32(clip[1]),
                np.float32(fg_thr),
                float(vmin),
                float(bin_scale),
                wanted,
                offsets,
                values,
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
        out: np.ndarray | None = None,
        quant: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Pass 2 into a fresh array, or into ``out`` (C-contiguous, of the crop's shape,
        e.g. a buffer that `tre.kernels.buffers.OutputPool` reuses: its pages are there
        already, so the pass does not pay their first touch). float32, or int16 with
        ``quant`` = (qa, qb): each value stored as rint(x * qa + qb) (`tre.kernels.quantise`)."""
        t = self.tables
        box = bbox if bbox is not None else (0, t.shape[0], 0, t.shape[1], 0, t.shape[2])
        shape = (box[1] - box[0], box[3] - box[2], box[5] - box[4])
        kind = np.dtype(np.int16 if quant is not None else np.float32)
        if out is None:
            out = np.empty(shape, dtype=kind)
        elif out.shape != shape or out.dtype != kind or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous {kind} of shape {shape}")
        tables = self._tables(box)
        groups = pair_groups(tables[0])
        args = (
            self.raw,
            self.slopes,
            self.intercepts,
            *tables,
            groups,
            slice_chunks(len(groups) - 1),
            np.float32(clip[0]),
            np.float32(clip[1]),
            np.float32(shift),
            np.float32(scale),
            float(mean),
            float(inv_std),
        )
        with dynamic_chunks():
            if quant is None:
                normalize_pass(*args, out)  # type: ignore[call-arg]
            else:
                normalize_int16_pass(*args, np.float32(quant[0]), np.float32(quant[1]), out)  # type: ignore[call-arg]
        return out
