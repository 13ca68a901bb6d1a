"""Per-slice time and exactness of every JPEG 2000 and JPEG-LS decoder at hand (issue 13, 14th round).

Why: on the mixed cohort the decoders are most of the job's CPU, so a decoder is worth
wiring in only if it is faster on the cohort's own codestreams *and* gives the same pixels.
The ninth round's ``bench_j2k_decoders.py`` timed JPEG 2000 decoders only and never looked
at their output; this takes both codecs' series of one cohort (``bench_cohort.py``'s
synthetic one), decodes the same slices with each decoder in a process of its own, rounds
interleaved (A B C A B C: the shared machine's load moves every figure), and reports for
each: CPU ms a slice (``RUSAGE_SELF``: every thread a decoder starts counts), wall ms a
slice, and whether every slice's pixels equal the reference bit for bit (pydicom 3's
``pixel_array``, its own choice of plugin).

JPEG 2000 (``--series`` of a JPEG 2000 series):

* ``imagecodecs``: ``jpeg2k_decode(numthreads=1, out=row)``, the job's path (OpenJPEG);
* ``imagecodecs-t2``: the same with OpenJPEG's own threads (``numthreads=2``): code-blocks
  decoded on two threads; less wall, not less CPU, is what it can give;
* ``pylibjpeg-openjpeg``: ``openjpeg.decode`` (OpenJPEG, its own build);
* ``gdcm``: python-gdcm's ``ImageReader`` of the whole file (GDCM's OpenJPEG);
* ``grok``: Grok through its C API with ctypes when a ``libgrokj2k`` is installed (timing
  only, as in ``bench_j2k_decoders.py``);
* ``grok-blosc2``: the recent Grok that the ``blosc2-grok`` wheel links statically, through
  its one exported decoder (``blosc2_grok_decoder``: a codestream in, 16-bit samples out;
  Grok's own threads off), with ctypes, when that wheel is installed (``pip install
  --no-deps blosc2-grok``; a measurement, not a dependency of tre).

JPEG-LS: ``imagecodecs-jls`` (``jpegls_decode``, CharLS, the job's path), ``pyjpegls``
(CharLS, its own build), ``pylibjpeg-libjpeg`` (Thomas Richter's libjpeg), ``gdcm``
(GDCM's CharLS).

A decoder that is not installed is left out.

    PYTHONPATH=. python benchmarks/bench_slice_decoders.py \\
        --series /tmp/tre-bench-cohort/cohort/n8/series001 /tmp/tre-bench-cohort/cohort/n8/series002
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

J2K_DECODERS = ["imagecodecs", "imagecodecs-t2", "pylibjpeg-openjpeg", "gdcm", "grok", "grok-blosc2"]
JLS_DECODERS = ["imagecodecs-jls", "pyjpegls", "pylibjpeg-libjpeg", "gdcm"]
Decode = Callable[[Path, bytes], Any]


def _codec(series: Path) -> str:
    import pydicom
    from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGLSLossless, JPEGLSNearLossless

    ts = pydicom.dcmread(
        next(iter(sorted(series.glob("*.dcm")))), stop_before_pixels=True
    ).file_meta.TransferSyntaxUID
    if ts in (JPEG2000, JPEG2000Lossless):
        return "j2k"
    if ts in (JPEGLSLossless, JPEGLSNearLossless):
        return "jls"
    raise SystemExit(f"{series}: transfer syntax {ts} is neither JPEG 2000 nor JPEG-LS")


def _frames(series: Path, slices: int) -> list[tuple[Path, bytes, np.ndarray]]:
    """Every n-th slice's path, codestream and reference pixels (pydicom's ``pixel_array``)."""
    import pydicom
    from pydicom.encaps import generate_frames

    files = sorted(series.glob("*.dcm"))
    step = max(1, len(files) // slices)
    out = []
    for f in files[::step][:slices]:
        ds = pydicom.dcmread(f)
        frame = bytes(next(generate_frames(ds.PixelData, number_of_frames=1)))
        out.append((f, frame, np.ascontiguousarray(ds.pixel_array)))
    return out


def _gdcm() -> Decode:
    import gdcm

    def read(path: Path, _f: bytes) -> Any:
        reader = gdcm.ImageReader()
        reader.SetFileName(str(path))
        if not reader.Read():
            raise RuntimeError("gdcm could not read the file")
        buf = reader.GetImage().GetBuffer()
        # SWIG hands the pixel bytes back as a str, each byte a surrogate-escaped character.
        return buf.encode("utf-8", "surrogateescape") if isinstance(buf, str) else buf

    return read


def _grok_blosc2(nbytes: int) -> Decode | None:
    """Grok as the ``blosc2-grok`` wheel builds it, through the codec entry point Blosc2 calls
    (it ignores its ``meta``, ``dparams`` and ``chunk`` arguments when decoding)."""
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("blosc2_grok")  # not imported: it imports blosc2
    if spec is None or not spec.submodule_search_locations:
        return None
    # Lazy binding: its encoder calls into libblosc2, which this never loads or calls.
    so = Path(next(iter(spec.submodule_search_locations))) / "libblosc2_grok.so"
    lib = ctypes.CDLL(str(so), mode=os.RTLD_LAZY)
    lib.blosc2_grok_init.argtypes = [ctypes.c_uint32, ctypes.c_bool]
    lib.blosc2_grok_init(1, False)
    lib.blosc2_grok_decoder.restype = ctypes.c_int
    lib.blosc2_grok_decoder.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32]
    lib.blosc2_grok_decoder.argtypes += [ctypes.c_uint8, ctypes.c_void_p, ctypes.c_void_p]
    out = ctypes.create_string_buffer(nbytes)

    def decode(_p: Path, frame: bytes) -> bytes:
        if lib.blosc2_grok_decoder(frame, len(frame), out, nbytes, 0, None, None) != nbytes:
            raise RuntimeError("grok could not decode the frame")
        return out.raw

    return decode


def _decoder(name: str, shape: tuple[int, int], dtype: np.dtype) -> Decode | None:
    try:
        if name in ("imagecodecs", "imagecodecs-t2"):
            import imagecodecs

            row = np.empty(shape, dtype)
            threads = 2 if name == "imagecodecs-t2" else 1
            return lambda _p, f: imagecodecs.jpeg2k_decode(f, numthreads=threads, out=row)
        if name == "imagecodecs-jls":
            import imagecodecs

            row = np.empty(shape, dtype)
            return lambda _p, f: imagecodecs.jpegls_decode(f, out=row)
        if name == "pylibjpeg-openjpeg":
            import openjpeg

            return lambda _p, f: openjpeg.decode(f)
        if name == "pyjpegls":
            import jpeg_ls

            return lambda _p, f: jpeg_ls.decode_from_buffer(f)
        if name == "pylibjpeg-libjpeg":
            import libjpeg

            return lambda _p, f: libjpeg.decode(f)
        if name == "gdcm":
            return _gdcm()
        if name == "grok":
            from bench_j2k_decoders import _grok

            grok = _grok()
            return None if grok is None else (lambda _p, f: grok(f))
        if name == "grok-blosc2":
            return _grok_blosc2(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    except ImportError:
        return None
    return None


def _same(got: Any, ref: np.ndarray) -> bool:
    """Bit-for-bit equal to the reference (the same 16-bit patterns, whatever dtype came back)."""
    if got is None:
        return False
    raw = np.frombuffer(got, np.uint8) if isinstance(got, bytes | bytearray) else np.asarray(got)
    a = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    b = ref.view(np.uint8).reshape(-1)
    return a.size == b.size and bool(np.array_equal(a, b))


def child(name: str, series: Path, slices: int, repeat: int) -> dict[str, Any] | None:
    frames = _frames(series, slices)
    ref0 = frames[0][2]
    decode = _decoder(name, ref0.shape, ref0.dtype)
    if decode is None:
        return None
    exact: bool | None = None
    if name != "grok":  # timing only: no pixels are read back from Grok's image
        exact = all(_same(decode(p, f), ref) for p, f, ref in frames)
    else:
        decode(frames[0][0], frames[0][1])  # first call: library set-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for path, frame, _ref in frames:
            decode(path, frame)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    n = repeat * len(frames)
    return {"cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n, "exact": exact}


def _table(codec: str, series: Path, got: dict[str, list[dict[str, Any]]]) -> None:
    base_name = "imagecodecs" if codec == "j2k" else "imagecodecs-jls"
    base = statistics.median(r["cpu_ms"] for r in got[base_name]) if got.get(base_name) else None
    print(f"\n{codec} ({series}): CPU / wall ms a slice, median of the rounds (CPU of each round)")
    print(f"{'decoder':20s} {'CPU ms':>7s} {'wall ms':>8s} {'vs job':>7s}  exact   CPU runs")
    for name, runs in got.items():
        if not runs:
            print(f"{name:20s} not installed")
            continue
        cpu = statistics.median(r["cpu_ms"] for r in runs)
        wall = statistics.median(r["wall_ms"] for r in runs)
        ratio = f"{cpu / base:.2f}x" if base else "-"
        exact = {True: "yes", False: "NO", None: "-"}[runs[0]["exact"]]
        each = ", ".join(f"{r['cpu_ms']:.1f}" for r in runs)
        print(f"{name:20s} {cpu:7.1f} {wall:8.1f} {ratio:>7s}  {exact:5s}   {each}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--series", type=Path, nargs="+", required=True, help="JPEG 2000 or JPEG-LS series folders"
    )
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2, help="decodes of each slice a run")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each decoder, interleaved")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.series[0], args.slices, args.repeat)))
        return
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for series in args.series:
        codec = _codec(series)
        names = J2K_DECODERS if codec == "j2k" else JLS_DECODERS
        got: dict[str, list[dict[str, Any]]] = {d: [] for d in names}
        for _ in range(args.rounds):
            for name in names:
                cmd = [sys.executable, __file__, "--series", str(series), "--child", name]
                cmd += ["--slices", str(args.slices), "--repeat", str(args.repeat)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                value = json.loads(out.strip().splitlines()[-1])
                if value is not None:
                    got[name].append(value)
        _table(codec, series, got)
        results[str(series)] = got
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
