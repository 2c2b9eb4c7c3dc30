"""TCP server for the dataplane tests: answers each connection with the peer address it saw, then closes.

Run inside a namespace: `python3 peer_server.py PORT [4|6]`; prints "ready" once listening. An IPv6
server is IPv6-only, so each family's peer address is reported as it is, never as a mapped address.
"""

from __future__ import annotations

import socket
import sys


def main() -> None:
    """Serve forever on PORT of every address of the family (the test kills the process)."""
    port = int(sys.argv[1])
    six = len(sys.argv) > 2 and sys.argv[2] == "6"
    srv = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if six:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    srv.bind(("::" if six else "0.0.0.0", port))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, addr = srv.accept()
        with conn:
            conn.sendall(f"{addr[0]}\n".encode())


if __name__ == "__main__":
    main()
