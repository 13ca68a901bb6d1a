"""CPU per slice of each JPEG 2000 decoder at hand, in process (issue 13, ninth round).

Why: on the mixed cohort OpenJPEG's decoding is most of the job's CPU; a decoder worth
adopting must save >= 15 % of it. This takes the codestreams of some slices of one JPEG 2000
series (e.g. the cohort's ``series001``) and decodes them in a loop, each decoder in a
process of its own, rounds interleaved (A B C A B C: the machine's load moves every figure),
timing the process's CPU (``RUSAGE_SELF``: every thread a decoder may start counts):

* ``imagecodecs``: ``jpeg2k_decode(numthreads=1, out=row)``, the job's path (OpenJPEG);
* ``imagecodecs-fresh``: the same into a fresh array each slice;
* ``pylibjpeg-openjpeg``: ``openjpeg.decode`` (OpenJPEG);
* ``gdcm``: python-gdcm's ``ImageReader`` of the whole file (its parse is ~0.1 ms);
* ``grok``: Grok (Debian ``libgrokj2k1``) through its C API with ctypes, one thread, timing
  only (no pixels are read back: the job does not use Grok).

A decoder that is not installed is left out.

    PYTHONPATH=. python benchmarks/bench_j2k_decoders.py --series /work/bench/cohort4/cohort/n8/series001
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DECODERS = ["imagecodecs", "imagecodecs-fresh", "pylibjpeg-openjpeg", "gdcm", "grok"]


def _frames(series: Path, slices: int) -> list[tuple[Path, bytes]]:
    import pydicom
    from pydicom.encaps import generate_frames

    files = sorted(series.glob("*.dcm"))
    step = max(1, len(files) // slices)
    out = []
    for f in files[::step][:slices]:
        ds = pydicom.dcmread(f)
        out.append((f, bytes(next(generate_frames(ds.PixelData, number_of_frames=1)))))
    return out


def _grok() -> Callable[[bytes], None] | None:
    name = ctypes.util.find_library("grokj2k")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.grk_initialize.argtypes = [ctypes.c_char_p, ctypes.c_uint32]
    lib.grk_initialize.restype = ctypes.c_bool
    lib.grk_decompress_init.restype = ctypes.c_void_p
    lib.grk_decompress_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.grk_decompress_read_header.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.grk_decompress_read_header.restype = ctypes.c_bool
    lib.grk_decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.grk_decompress.restype = ctypes.c_bool
    lib.grk_object_unref.argtypes = [ctypes.c_void_p]
    # Its return value says whether a plugin (a GPU coder) loaded: none here, the CPU path runs.
    lib.grk_initialize(None, 1)

    class StreamParams(ctypes.Structure):  # grk_stream_params of grok.h 10.x
        _fields_ = [("file", ctypes.c_char_p), ("buf", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    core = ctypes.create_string_buffer(4096)  # grk_decompress_core_params: filled by the library
    header = ctypes.create_string_buffer(1 << 16)  # grk_header_info: written by the library

    def decode(frame: bytes) -> None:
        data = ctypes.create_string_buffer(frame, len(frame))
        stream = StreamParams(None, ctypes.cast(data, ctypes.c_void_p), len(frame))
        lib.grk_decompress_set_default_params(core)
        codec = lib.grk_decompress_init(ctypes.byref(stream), core)
        if not codec:
            raise RuntimeError("grk_decompress_init failed")
        try:
            if not (lib.grk_decompress_read_header(codec, header) and lib.grk_decompress(codec, None)):
                raise RuntimeError("grok could not decode the frame")
        finally:
            lib.grk_object_unref(codec)

    return decode


def _decoder(name: str) -> Callable[[Path, bytes], Any] | None:
    import numpy as np

    try:
        if name.startswith("imagecodecs"):
            import imagecodecs

            row = np.empty((512, 512), np.uint16)
            if name == "imagecodecs":
                return lambda _p, f: imagecodecs.jpeg2k_decode(f, numthreads=1, out=row)
            return lambda _p, f: imagecodecs.jpeg2k_decode(f, numthreads=1)
        if name == "pylibjpeg-openjpeg":
            import openjpeg

            return lambda _p, f: openjpeg.decode(f)
        if name == "gdcm":
            import gdcm

            def read(path: Path, _f: bytes) -> Any:
                reader = gdcm.ImageReader()
                reader.SetFileName(str(path))
                if not reader.Read():
                    raise RuntimeError("gdcm could not read the file")
                return reader.GetImage().GetBuffer()

            return read
        if name == "grok":
            grok = _grok()
            return None if grok is None else (lambda _p, f: grok(f))
    except ImportError:
        return None
    return None


def child(name: str, series: Path, slices: int, repeat: int) -> None:
    frames = _frames(series, slices)
    decode = _decoder(name)
    if decode is None:
        print(json.dumps(None))
        return
    decode(*frames[0])  # first call: library set-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeat):
        for path, frame in frames:
            decode(path, frame)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(json.dumps(1000 * cpu / (repeat * len(frames))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=Path, required=True, help="a folder of JPEG 2000 slice files")
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2, help="decodes of each slice a run")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each decoder, interleaved")
    ap.add_argument("--decoders", nargs="+", default=DECODERS, choices=DECODERS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.series, args.slices, args.repeat)
        return
    got: dict[str, list[float]] = {d: [] for d in args.decoders}
    for _ in range(args.rounds):
        for name in args.decoders:
            cmd = [sys.executable, __file__, "--series", str(args.series), "--child", name]
            cmd += ["--slices", str(args.slices), "--repeat", str(args.repeat)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            value = json.loads(out.strip().splitlines()[-1])
            if value is not None:
                got[name].append(value)
    base = statistics.median(got["imagecodecs"]) if got.get("imagecodecs") else None
    print(f"{'decoder':20s} {'CPU ms a slice (runs)':40s} median  vs imagecodecs")
    for name, values in got.items():
        if not values:
            print(f"{name:20s} not installed")
            continue
        med = statistics.median(values)
        ratio = f"{med / base:.2f}x" if base else "-"
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:20s} {runs:40s} {med:6.1f}  {ratio}")


if __name__ == "__main__":
    main()
