"""Review findings 17.7 and 17.8 against a real sandbox: only AF_UNIX sockets can be made
(AF_VSOCK reaches the hypervisor past the network namespace), and an O_TMPFILE file in
/output cannot take more host disk than the output quota."""

from __future__ import annotations

import errno
import shutil
import socket
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tre.executors.local import LocalExecutor

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """Host-toolchain developer mode, enabled explicitly: these jobs need Python's socket API."""
    return Sandbox(tmp_path, LocalExecutor(host_toolchain=True))


def test_only_unix_sockets_can_be_created(sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        import json, socket
        out = {}
        for name in ('AF_VSOCK', 'AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_PACKET', 'AF_UNIX'):
            family = getattr(socket, name)
            kind = socket.SOCK_RAW if name in ('AF_NETLINK', 'AF_PACKET') else socket.SOCK_STREAM
            try:
                socket.socket(family, kind).close()
                out[name] = 'ok'
            except OSError as e:
                out[name] = e.errno
        try:
            a, b = socket.socketpair(socket.AF_UNIX)
            a.sendall(b'ping')
            out['socketpair_unix'] = b.recv(4).decode()
        except OSError as e:
            out['socketpair_unix'] = e.errno
        try:
            socket.socketpair(socket.AF_INET)
            out['socketpair_inet'] = 'ok'
        except OSError as e:
            out['socketpair_inet'] = e.errno
        print(json.dumps(out))
        """
    )
    run = sandbox.run(code)
    assert run.result.state == "succeeded", run.log
    (out,) = run.json_lines()
    eafnosupport = 97
    for name in ("AF_VSOCK", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "socketpair_inet"):
        assert out[name] == eafnosupport, name
    assert out["AF_UNIX"] == "ok"
    assert out["socketpair_unix"] == "ping"


def test_host_abstract_unix_sockets_are_out_of_reach(sandbox: Sandbox) -> None:
    """Abstract UNIX sockets (``\\0name``) have no file to hide: they belong to the network
    namespace. A host service listening on one (X11, D-Bus, container runtimes do) must be
    unreachable from a job, as must be the host's table of them (/proc/net/unix)."""
    name = f"tre-test-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(1)
    listener.setblocking(False)
    code = textwrap.dedent(
        f"""
        import json, socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect('\\0{name}')
            out = {{'connect': 'ok'}}
        except OSError as e:
            out = {{'connect': e.errno}}
        out['listed'] = '{name}' in open('/proc/net/unix').read()
        print(json.dumps(out))
        """
    )
    try:
        run = sandbox.run(code)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert run.result.state == "succeeded", run.log
    (out,) = run.json_lines()
    assert out == {"connect": errno.ECONNREFUSED, "listed": False}


def test_o_tmpfile_cannot_pass_the_output_quota(sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        import json, os
        written = 0
        fds = []
        try:
            for _ in range(8):
                fd = os.open('/output', os.O_TMPFILE | os.O_WRONLY, 0o600)
                fds.append(fd)
                for _ in range(64):
                    written += os.write(fd, b'x' * 65536)
        except OSError as e:
            print(json.dumps({'written': written, 'errno': e.errno, 'files': len(fds)}))
        """
    )
    run = sandbox.run(code, output_limit_mb=3)
    assert run.result.state == "succeeded", run.log
    (out,) = run.json_lines()
    assert out["errno"] == 28  # ENOSPC, from the kernel, however the file is (not) named
    assert 2 * 2**20 <= out["written"] <= 3 * 2**20
    assert list(run.spec.output_dir.iterdir()) == []
