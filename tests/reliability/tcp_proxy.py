"""A small TCP proxy that a test can cut and restore, to take a database "down" for one client.

Why not stop PostgreSQL itself: the machine's PostgreSQL is shared by every developer and test
run; stopping it would break their work. Seen from the client, a cut proxy is what an outage looks
like: open connections are reset mid-query and new connections are refused (the listening socket
is closed) until :meth:`TcpProxy.restore`.
"""
from __future__ import annotations

import selectors
import socket
import threading
from typing import List, Optional, Tuple


class TcpProxy:
    def __init__(self, upstream: Tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self._listener: Optional[socket.socket] = None
        self._pairs: List[Tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._accept_thread: Optional[threading.Thread] = None
        self.connections = 0

    # ------------------------------------------------------------------ control

    def start(self) -> "TcpProxy":
        self._listen()
        return self

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()  # linger 0: RST, like a crashed server
                except OSError:
                    pass

    def restore(self) -> None:
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stopped.set()
        self.cut()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accept_thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while True:
                for key, _ in selector.select(timeout=1.0):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            for sock in (client, server):
                try:
                    sock.close()
                except OSError:
                    pass
            with self._lock:
                if (client, server) in self._pairs:
                    self._pairs.remove((client, server))
