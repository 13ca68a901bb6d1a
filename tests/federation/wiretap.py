"""A recording TCP relay between node agents and the hub (no tests here): everything the
nodes send to the hub, and its answers, as bytes on the wire."""

from __future__ import annotations

import socket
import threading


class WireTap:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.to_hub = bytearray()
        self.from_hub = bytearray()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()  # the hub is down: the node sees a refused connection
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pipe, args=(client, upstream, self.to_hub), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.from_hub), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        try:
            while chunk := src.recv(65536):
                with self.lock:
                    record.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def wire(self) -> bytes:
        with self.lock:
            return bytes(self.to_hub) + bytes(self.from_hub)

    def close(self) -> None:
        self.closed = True
        self.server.close()
