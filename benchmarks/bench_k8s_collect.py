"""Memory of the Kubernetes output collection versus output size (issue 18, item 2).

Serves an N MiB tar over the exec WebSocket from the fake API server (tests/k8s/fakekube.py,
run in a child process so its buffers do not count), collects it in this process, and
prints the peak extra resident memory (VmHWM after a /proc/self/clear_refs reset) and its
ratio to the output size for:

- ``tre``: `collect.exec_to_file`, one frame at a time to a spool file (what the executor does);
- ``client``: the official client's own loop (``update()`` + ``read_stdout()``, the
  default ``capture_all``), as the executor did before, also writing to a file.

- ``extract``: the host side, `tarstream.check_archive` + `extract` of a spooled tar of
  50,000 files (the packer's entry cap), which ``tarfile`` alone would keep as 50,000
  TarInfo objects.

Target: ``tre`` stays flat (ratio under 0.05 at 256 MiB); ``client`` grows with the output
(and is quadratic in time: use a small --mib for it).

    PYTHONPATH=. python benchmarks/bench_k8s_collect.py [--mib 256] [--methods tre client]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SERVER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from tests.k8s.fakekube import FakeApiServer, Scenario
    mib = int(sys.argv[1]); tmp = Path(sys.argv[2])
    # One member of mib MiB, framed by hand (no second copy of the data in memory).
    import tarfile
    info = tarfile.TarInfo("big.bin"); info.size = mib << 20
    data = info.tobuf(format=tarfile.PAX_FORMAT) + os.urandom(mib << 20) + bytes(1024)
    with FakeApiServer(Scenario([], output_tar=data), tmp) as server:
        print(server.kubeconfig, flush=True)
        time.sleep(3600)
    """
)


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def collect(method: str, kubeconfig: Path, dest: Path, mib: int) -> tuple[float, float, int]:
    from kubernetes import client
    from kubernetes.stream import stream

    from tre.executors.kubernetes import KubernetesExecutor, KubernetesSettings
    from tre.executors.kubernetes.collect import exec_to_file

    core = KubernetesExecutor(KubernetesSettings(kubeconfig=kubeconfig)).core
    assert isinstance(core, client.CoreV1Api)
    reset_hwm()
    base = vm_hwm_mib()
    start = time.perf_counter()
    if method == "tre":
        exec_to_file(core, "ns", "pod", ["pack"], dest, (mib + 64) << 20, timeout_s=600)
    else:
        ws = stream(
            core.connect_get_namespaced_pod_exec,
            "pod",
            "ns",
            container="collector",
            command=["pack"],
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            binary=True,
            _preload_content=False,
        )
        with dest.open("wb") as fh:
            while ws.is_open():
                ws.update(timeout=1)
                if ws.peek_stdout():
                    fh.write(ws.read_stdout())
        ws.close()
    seconds = time.perf_counter() - start
    return vm_hwm_mib() - base, seconds, dest.stat().st_size


def extract_peak(entries: int) -> None:
    import io
    import tarfile

    from tre.executors.kubernetes.tarstream import extract

    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool.tar"
        with tarfile.open(spool, "w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(entries):
                info = tarfile.TarInfo(f"d{i // 1000:03d}/" + "n" * 120 + f"-{i:06d}.txt")
                info.size = 16
                tar.addfile(info, io.BytesIO(b"x" * 16))
        reset_hwm()
        base = vm_hwm_mib()
        start = time.perf_counter()
        with spool.open("rb") as fh:
            written = extract(fh, Path(tmp) / "tree", limit_bytes=1 << 30)
        seconds = time.perf_counter() - start
        extra = vm_hwm_mib() - base
    print(
        f"extract {len(written):6d} files  peak extra RSS {extra:8.1f} MiB  "
        f"{extra * 1024 / len(written):6.2f} KiB/file (the list of written paths included)  {seconds:6.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--methods", nargs="*", default=["tre", "client"])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if "extract" in args.methods and not args.child:
        subprocess.run([sys.executable, __file__, "--child", "extract", "-"], check=True)
        args.methods = [m for m in args.methods if m != "extract"]
    if args.child and args.child[0] == "extract":
        extract_peak(50_000)
        return
    if args.child:  # one method per process, so one's peak cannot hide the other's
        method, kubeconfig = args.child
        with tempfile.TemporaryDirectory() as tmp:
            extra, seconds, size = collect(method, Path(kubeconfig), Path(tmp) / "spool.tar", args.mib)
        print(
            f"{method:7s} {args.mib:6d} MiB  peak extra RSS {extra:8.1f} MiB  ratio {extra / args.mib:6.3f}  "
            f"{size / seconds / 2**20:7.1f} MiB/s"
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(args.mib), tmp], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            kubeconfig = server.stdout.readline().strip()
            for method in args.methods:
                subprocess.run(
                    [sys.executable, __file__, "--mib", str(args.mib), "--child", method, kubeconfig],
                    check=True,
                )
        finally:
            server.kill()


if __name__ == "__main__":
    main()
