#!/usr/bin/env python3
"""Clients for the defence tests (standard library only).

  flood.py legit HOST PORT [--n N] [--timeout S] [--gap S]
      N connections one after the other to an rvsnet.py server: connect, read the server's
      name line, echo 8 bytes, close. Prints JSON {"tried", "ok", "failed", "p50_ms", "max_ms"}.

  flood.py stray HOST PORT --go-file PATH [--wait S]
      One connection: exchange, print "ready", wait until PATH exists (the test restarts the
      director meanwhile), then send and time how long until the connection is reset.
      Prints JSON {"reset": bool, "ms": float, "error": str}.
"""
import argparse
import json
import os
import socket
import sys
import time


def recv_line(s, limit=64):
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            raise ConnectionError("closed before the server's name")
        buf += c
        if len(buf) > limit:
            raise ConnectionError("no name line")
    return buf[:-1].decode(errors="replace")


def one(host, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        recv_line(s)
        s.sendall(b"12345678")
        got = b""
        while len(got) < 8:
            d = s.recv(8 - len(got))
            if not d:
                raise ConnectionError("short echo")
            got += d
        if got != b"12345678":
            raise ConnectionError("bad echo")
    finally:
        s.close()


def legit(a):
    ok, times, errors = 0, [], {}
    for _ in range(a.n):
        t0 = time.monotonic()
        try:
            one(a.host, a.port, a.timeout)
            ok += 1
            times.append((time.monotonic() - t0) * 1000)
        except (OSError, ConnectionError) as e:
            k = type(e).__name__
            errors[k] = errors.get(k, 0) + 1
        time.sleep(a.gap)
    times.sort()
    print(json.dumps({
        "tried": a.n, "ok": ok, "failed": a.n - ok, "errors": errors,
        "p50_ms": round(times[len(times) // 2], 1) if times else None,
        "max_ms": round(times[-1], 1) if times else None,
    }))


def stray(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((a.host, a.port))
    recv_line(s)
    s.sendall(b"before\n")
    s.recv(64)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(a.go_file):
        if time.monotonic() > deadline:
            print(json.dumps({"reset": False, "ms": None, "error": "never told to go"}))
            return
        time.sleep(0.05)
    s.settimeout(a.wait)
    t0 = time.monotonic()
    out = {"reset": False, "ms": None, "error": ""}
    try:
        s.sendall(b"after\n")
        d = s.recv(64)
        out["error"] = f"answered {d!r}" if d else "closed (FIN), not reset"
    except ConnectionResetError as e:
        out = {"reset": True, "ms": round((time.monotonic() - t0) * 1000, 1), "error": str(e)}
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("legit")
    x.add_argument("host")
    x.add_argument("port", type=int)
    x.add_argument("--n", type=int, default=20)
    x.add_argument("--timeout", type=float, default=2.0)
    x.add_argument("--gap", type=float, default=0.05)
    x = sub.add_parser("stray")
    x.add_argument("host")
    x.add_argument("port", type=int)
    x.add_argument("--go-file", required=True)
    x.add_argument("--wait", type=float, default=10.0)
    a = p.parse_args()
    {"legit": legit, "stray": stray}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
