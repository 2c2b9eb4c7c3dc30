"""TCP server for the dataplane tests: answers each connection with the peer address it saw, then closes.

Run inside a namespace: `python3 peer_server.py PORT`; prints "ready" once listening.
"""

from __future__ import annotations

import socket
import sys


def main() -> None:
    """Serve forever on 0.0.0.0:PORT (the test kills the process)."""
    port = int(sys.argv[1])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, addr = srv.accept()
        with conn:
            conn.sendall(f"{addr[0]}\n".encode())


if __name__ == "__main__":
    main()
