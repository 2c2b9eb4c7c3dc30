"""TCP client for the dataplane tests: prints the address the peer server saw; exit 1 if unreachable.

Run inside a namespace: `python3 peer_client.py HOST PORT TIMEOUT`. A printed answer proves the reply
came back too (the handshake and the data both need the return path).
"""

from __future__ import annotations

import socket
import sys


def main() -> int:
    """Connect, read one line, print it."""
    host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        print(f"unreachable: {exc}", file=sys.stderr)
        return 1
    print(data.decode().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
