#!/usr/bin/env python3
"""Open N idle TCP connections to an `ebm serve`, then time one valid request on
a fresh connection while they stay open (and a second one after they close).

usage: idle_flood.py HOST:PORT N [--limit SECONDS] [--json OUT]
Prints one JSON line: {"connections","opened","refused","open_seconds",
"valid_status","valid_seconds","after_status","after_seconds"}; exits 1 when
the valid request is not answered 200 within --limit seconds (default 3).
Only the standard library; raise `ulimit -n` above N first.
"""
import json
import socket
import sys
import time

IMG = [[0.5] * 28 for _ in range(28)]
BODY = json.dumps({"images": [IMG]}).encode()


def request(host, port, timeout):
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, time.monotonic() - t0


def main():
    hostport, n = sys.argv[1], int(sys.argv[2])
    limit = float(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else 3.0
    host, port = hostport.rsplit(":", 1)
    port = int(port)
    socks, refused = [], 0
    t0 = time.monotonic()
    for _ in range(n):
        try:
            socks.append(socket.create_connection((host, port), timeout=5))
        except OSError:
            refused += 1
    opened = time.monotonic() - t0
    # Half of them send a partial request line and stop (idle mid-request).
    for s in socks[::2]:
        try:
            s.sendall(b"GET /v2/health/li")
        except OSError:
            pass
    status, secs = request(host, port, timeout=max(limit * 4, 10))
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += s.recv(1) == b"" and 0 or 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    time.sleep(0.5)
    status2, secs2 = request(host, port, timeout=30)
    out = {"connections": n, "opened": len(socks), "refused": refused, "open_seconds": round(opened, 3),
           "still_open_at_request": alive, "valid_status": status, "valid_seconds": round(secs, 4),
           "after_status": status2, "after_seconds": round(secs2, 4)}
    print(json.dumps(out))
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(out, f, indent=1)
    sys.exit(0 if status == 200 and secs <= limit and status2 == 200 else 1)


if __name__ == "__main__":
    main()
