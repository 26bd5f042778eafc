#!/usr/bin/env python3
"""Traffic helpers of the rvs lab and end-to-end tests (standard library only).

serve       real-server side: TCP "name line, then echo" and UDP echo ("name line" + payload),
            the UDP answer sent from the address the datagram was sent to (IP_PKTINFO), so a
            DR/TUN real server answers from the VIP on lo.
tcp-check   N connections, each: read the server's name, push B random bytes through the echo,
            compare SHA-256; prints a JSON report, exits 1 on any failure.
udp-flow    one UDP flow (one client port) through a failover: answers, server changes, losses.
udp-check   N datagrams, each from a new socket on a client port none of the others used (so
            a new IPVS connection each: the sockets stay open until the end, else the kernel's
            random choice repeats a port in ~2 % of 30-datagram runs and that datagram joins
            the earlier one's UDP entry, e2e Conns 29 of 30); checks the reply comes from the address/port asked and carries the payload back.
streams     long-lived TCP streams kept open while the caller changes the real servers.
storm       malformed Ethernet/IPv4 frames on a raw AF_PACKET socket.

Every check prints one JSON object on stdout; exit status 0 only when everything was intact.
"""

import argparse
import hashlib
import json
import os
import random
import socket
import socketserver
import struct
import sys
import threading
import time

IP_PKTINFO = 8  # Linux <netinet/in.h>; Python 3.11 does not export it.
SOL_IP = 0


# ------------------------------------------------------------------------------------ servers

def serve(args):
    name = args.name.encode() + b"\n"

    class TcpHandler(socketserver.BaseRequestHandler):
        def handle(self):
            s = self.request
            try:
                s.sendall(name)
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    class TcpServer(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 128

    threads = []
    for port in args.tcp:
        srv = TcpServer(("0.0.0.0", port), TcpHandler)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        threads.append(t)

    def udp_loop(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(SOL_IP, IP_PKTINFO, 1)
        s.bind(("0.0.0.0", port))
        while True:
            data, anc, _flags, peer = s.recvmsg(65535, socket.CMSG_SPACE(12))
            local = None
            for level, typ, cdata in anc:
                if level == SOL_IP and typ == IP_PKTINFO and len(cdata) >= 12:
                    local = cdata[8:12]  # ipi_addr: the datagram's destination address
            cmsg = []
            if local is not None:
                # ipi_spec_dst = local address: the reply leaves from it.
                cmsg = [(SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, local, b"\0" * 4))]
            try:
                s.sendmsg([name + data], cmsg, 0, peer)
            except OSError:
                pass

    for port in args.udp:
        t = threading.Thread(target=udp_loop, args=(port,), daemon=True)
        t.start()
        threads.append(t)
    print(f"{args.name}: tcp {args.tcp} udp {args.udp}", flush=True)
    for t in threads:
        t.join()


# ------------------------------------------------------------------------------------ clients

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


def connect(host, port, src=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    return s


def echo_exchange(s, payload, timeout):
    """Sends payload (then FIN) from a thread while reading the echo; returns (bytes, sha)."""
    err = []

    def sender():
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(f"send: {e!r}")

    t = threading.Thread(target=sender)
    t.start()
    h = hashlib.sha256()
    n = 0
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(262144)
            if not d:
                break
            h.update(d)
            n += len(d)
    except OSError as e:
        err.append(f"recv after {n} bytes: {e!r}")
    t.join()
    return n, h.hexdigest(), err


def tcp_check(args):
    names, errors, ok = {}, [], 0
    deadline = time.monotonic() + args.deadline
    for i in range(args.conns):
        if time.monotonic() > deadline:
            errors.append(f"deadline of {args.deadline}s passed after {i} connections")
            break
        payload = os.urandom(args.bytes)
        want = hashlib.sha256(payload).hexdigest()
        try:
            s = connect(args.host, args.port, args.src, args.timeout)
        except OSError as e:
            errors.append(f"conn {i}: connect: {e!r}")
            continue
        try:
            peer = s.getpeername()
            name = recv_line(s)
            names[name] = names.get(name, 0) + 1
            n, got, err = echo_exchange(s, payload, args.timeout)
            if err:
                errors.append(f"conn {i} ({name}): {'; '.join(err)}")
            elif n != len(payload) or got != want:
                errors.append(f"conn {i} ({name}): echoed {n}/{len(payload)} bytes, sha256 {'ok' if got == want else 'MISMATCH'}")
            elif peer != (args.host, args.port):
                errors.append(f"conn {i}: peer {peer}")
            else:
                ok += 1
        except OSError as e:
            errors.append(f"conn {i}: {e!r}")
        finally:
            s.close()
    report = {"conns": args.conns, "ok": ok, "bytes": args.bytes, "names": names, "errors": errors}
    print(json.dumps(report, sort_keys=True))
    return 0 if ok == args.conns else 1


def udp_check(args):
    names, errors, ok, sent = {}, [], 0, 0
    deadline = time.monotonic() + args.deadline
    # Every socket stays bound until the end: no two datagrams share a client port.
    held = []
    for i in range(args.count):
        if time.monotonic() > deadline:
            errors.append(f"deadline of {args.deadline}s passed after {i} datagrams")
            break
        payload = os.urandom(args.bytes)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.settimeout(args.timeout)
            got = None
            for attempt in range(args.tries):
                s.sendto(payload, (args.host, args.port))
                sent += 1
                try:
                    data, peer = s.recvfrom(65535)
                    got = (data, peer)
                    break
                except socket.timeout:
                    continue
            if got is None:
                errors.append(f"dgram {i}: no reply after {args.tries} tries")
                continue
            data, peer = got
            name, _, echoed = data.partition(b"\n")
            name = name.decode(errors="replace")
            names[name] = names.get(name, 0) + 1
            if peer != (args.host, args.port):
                errors.append(f"dgram {i} ({name}): reply from {peer[0]}:{peer[1]}, not {args.host}:{args.port}")
            elif echoed != payload:
                errors.append(f"dgram {i} ({name}): payload differs ({len(echoed)}/{len(payload)} bytes)")
            else:
                ok += 1
        except OSError as e:
            errors.append(f"dgram {i}: {e!r}")
        finally:
            held.append(s)
    for s in held:
        s.close()
    report = {"count": args.count, "ok": ok, "sent": sent, "names": names, "errors": errors}
    print(json.dumps(report, sort_keys=True))
    return 0 if ok == args.count else 1


def udp_flow(args):
    """One UDP flow: a single client socket (one source port) sends a numbered datagram every
    --pace seconds for --duration seconds and reads the answers, which name the real server.
    Reports how many were answered, by which servers, the changes of server along the flow,
    and the longest run of unanswered datagrams (its length and span in seconds). Writes
    --ready ("SERVER CLIENT-PORT") once the first answer is in; stops sending early when the
    file --stop appears."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((args.host, args.port))
    s.settimeout(0.02)
    sent_at, answers, errors = {}, {}, []
    ready_written = False
    end = time.monotonic() + args.duration
    seq, next_send = 0, time.monotonic()
    while True:
        now = time.monotonic()
        if args.stop and now < end and os.path.exists(args.stop):
            end = now
        if now >= end + args.timeout:
            break
        if now < end and now >= next_send:
            try:
                s.send(b"%d" % seq)
                sent_at[seq] = now
            except OSError as e:  # an ICMP error of an earlier datagram surfaces here
                errors.append(f"send {seq}: {e!r}")
            seq += 1
            next_send += args.pace
        try:
            data = s.recv(65535)
        except socket.timeout:
            continue
        except OSError as e:
            errors.append(f"recv: {e!r}")
            continue
        name, _, body = data.partition(b"\n")
        try:
            n = int(body)
        except ValueError:
            errors.append(f"answer not a sequence number: {data[:40]!r}")
            continue
        answers.setdefault(n, name.decode(errors="replace"))
        if args.ready and not ready_written:
            with open(args.ready + ".tmp", "w") as f:
                f.write(f"{answers[n]} {s.getsockname()[1]}\n")
            os.rename(args.ready + ".tmp", args.ready)
            ready_written = True
    s.close()
    order = sorted(answers)
    servers = [answers[n] for n in order]
    changes = sum(1 for a, b in zip(servers, servers[1:]) if a != b)
    run, longest, longest_from = 0, 0, None
    runs = []  # [seconds after the first datagram, datagrams] of every run of losses
    t_first = sent_at[min(sent_at)] if sent_at else 0.0
    for n in sorted(sent_at):
        if n in answers:
            run = 0
            continue
        run += 1
        if run == 1:
            runs.append([round(sent_at[n] - t_first, 2), 0])
        runs[-1][1] += 1
        if run > longest:
            longest, longest_from = run, n - run + 1
    span = 0.0
    if longest:
        last = longest_from + longest - 1
        span = round(sent_at[last] - sent_at[longest_from] + args.pace, 3)
    names = {}
    for n in servers:
        names[n] = names.get(n, 0) + 1
    report = {
        "sent": len(sent_at),
        "answered": len(answers),
        "lost": len(sent_at) - len(answers),
        "names": names,
        "changes": changes,
        "longest_loss": longest,
        "longest_loss_s": span,
        "loss_runs": runs,
        "errors": errors,
    }
    print(json.dumps(report, sort_keys=True))
    return 0 if answers and changes == 0 and not errors else 1


def streams(args):
    """Opens --streams connections; those landing on --victim are finished at once (so the
    victim carries none), the others stream for --duration seconds at a steady pace. Writes
    --ready (the kept streams' servers) once every connection is up."""
    kept, errors = [], []
    for i in range(args.streams):
        try:
            s = connect(args.host, args.port, None, args.timeout)
            name = recv_line(s)
        except OSError as e:
            errors.append(f"stream {i}: connect: {e!r}")
            continue
        if name == args.victim:
            payload = os.urandom(1000)
            n, got, err = echo_exchange(s, payload, args.timeout)
            if err or got != hashlib.sha256(payload).hexdigest():
                errors.append(f"stream {i} ({name}, closed early): {err or 'bad echo'}")
            s.close()
            continue
        kept.append((i, name, s))

    results = {}

    def run(i, name, s):
        h_sent, h_got = hashlib.sha256(), hashlib.sha256()
        sent = [0]
        err = []

        def sender():
            end = time.monotonic() + args.duration
            try:
                while time.monotonic() < end:
                    chunk = os.urandom(args.chunk)
                    h_sent.update(chunk)
                    s.sendall(chunk)
                    sent[0] += len(chunk)
                    time.sleep(args.pace)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(f"send after {sent[0]} bytes: {e!r}")

        t = threading.Thread(target=sender)
        t.start()
        got = 0
        s.settimeout(args.timeout)
        try:
            while True:
                d = s.recv(262144)
                if not d:
                    break
                h_got.update(d)
                got += len(d)
        except OSError as e:
            err.append(f"recv after {got} bytes: {e!r}")
        t.join()
        s.close()
        intact = not err and got == sent[0] and h_got.hexdigest() == h_sent.hexdigest()
        results[i] = {"server": name, "sent": sent[0], "echoed": got, "intact": intact, "errors": err}

    threads = [threading.Thread(target=run, args=k) for k in kept]
    for t in threads:
        t.start()
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write(" ".join(sorted({name for _, name, _ in kept})) + "\n")
        os.rename(args.ready + ".tmp", args.ready)
    for t in threads:
        t.join()
    intact = sum(1 for r in results.values() if r["intact"])
    report = {"kept": len(kept), "intact": intact, "streams": results, "errors": errors}
    print(json.dumps(report, sort_keys=True))
    return 0 if kept and intact == len(kept) and not errors else 1


# ------------------------------------------------------------------------------------ storm

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, *, options=b"", frag=0, ttl=64, total=None, bad_csum=False,
         ident=None):
    ihl = 5 + len(options) // 4
    tl = total if total is not None else 20 + len(options) + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, 0, tl, ident if ident is not None else random.getrandbits(16),
                    frag, ttl, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = csum(h)
    if bad_csum:
        c ^= 0x5A5A
    h = h[:10] + struct.pack("!H", c) + h[12:]
    return h + payload


def tcp(src, dst, sport, dport, flags=0x02, payload=b"", bad_csum=False):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = struct.pack("!4s4sBBH", socket.inet_aton(src), socket.inet_aton(dst), 0, 6, len(hdr) + len(payload))
    c = csum(pseudo + hdr + payload)
    if bad_csum:
        c ^= 0x1234
    return hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload


def icmp_unreach(quoted_src, quoted_dst, sport, bad_csum=False):
    udp = struct.pack("!HHHH", sport, random.randint(20000, 60000), 8 + 32, 0)
    inner = ipv4(quoted_src, quoted_dst, 17, udp + os.urandom(32))[:20 + 8]
    msg = struct.pack("!BBHI", 3, 3, 0, 0) + inner
    c = csum(msg)
    if bad_csum:
        c ^= 0x0F0F
    return msg[:2] + struct.pack("!H", c) + msg[4:]


def storm_frames(src_mac, dst_mac, src, dst, dport):
    eth = dst_mac + src_mac
    ip_et = b"\x08\x00"

    def sp():
        return random.randint(20000, 60000)

    def good_syn(**kw):
        return tcp(src, dst, sp(), dport, **kw)

    return {
        # Ethernet header, then less than an IPv4 header.
        "truncated_ip": lambda: eth + ip_et + ipv4(src, dst, 6, good_syn())[:12],
        # A whole IPv4 header but only 8 bytes of the TCP header.
        "truncated_tcp": lambda: eth + ip_et + ipv4(src, dst, 6, good_syn()[:8]),
        # Total length larger than the frame.
        "bad_total_length": lambda: eth + ip_et + ipv4(src, dst, 6, good_syn(), total=1400),
        # Header length field below 5 words / wrong version.
        "bad_ihl": lambda: eth + ip_et + bytes([0x43]) + ipv4(src, dst, 6, good_syn())[1:],
        "bad_version": lambda: eth + ip_et + bytes([0x65]) + ipv4(src, dst, 6, good_syn())[1:],
        "bad_ip_checksum": lambda: eth + ip_et + ipv4(src, dst, 6, good_syn(), bad_csum=True),
        "bad_tcp_checksum": lambda: eth + ip_et + ipv4(src, dst, 6, good_syn(bad_csum=True)),
        # Router alert + NOPs: a valid header with options.
        "ip_options": lambda: eth + ip_et + ipv4(src, dst, 6, good_syn(), options=b"\x94\x04\x00\x00"),
        # First fragment (MF) and a later fragment (offset 185 * 8).
        "fragment_first": lambda: eth + ip_et + ipv4(src, dst, 6, good_syn(), frag=0x2000),
        "fragment_later": lambda: eth + ip_et + ipv4(src, dst, 6, os.urandom(32), frag=185),
        # ICMP "port unreachable" to the VIP quoting a VIP -> client UDP header, with a bad
        # ICMP checksum (IPVS checks the checksum of the ICMP errors it relates to conns).
        "bad_icmp_checksum": lambda: eth + ip_et + ipv4(src, dst, 1, icmp_unreach(dst, src, dport, bad_csum=True)),
        # Random ethertypes with random bytes, and a runt frame.
        "garbage_ethertype": lambda: eth + struct.pack("!H", random.choice([0x1234, 0x88B5, 0x9000, 0xFFFF, 0x0101]))
        + os.urandom(random.randint(0, 200)),
        # An Ethernet header announcing IPv4 and at most 5 bytes after it.
        "runt": lambda: eth + ip_et + os.urandom(random.randint(0, 5)),
    }


def storm(args):
    dst_mac = bytes.fromhex(args.dst_mac.replace(":", ""))
    src_mac = bytes.fromhex(args.src_mac.replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    kinds = storm_frames(src_mac, dst_mac, args.src, args.dst, args.dport)
    if args.kinds:
        kinds = {k: v for k, v in kinds.items() if k in args.kinds.split(",")}
    sent = {k: 0 for k in kinds}
    errors = {}
    for r in range(args.rounds):
        for k, make in kinds.items():
            try:
                s.send(make())
                sent[k] += 1
            except OSError as e:  # a runt may be refused by the kernel: count it
                errors[k] = repr(e)
        if args.pause and r % 10 == 9:  # bursts of 120 frames: the rx ring never overflows
            time.sleep(args.pause)
    print(json.dumps({"sent": sent, "total": sum(sent.values()), "send_errors": errors}, sort_keys=True))
    return 0


# ------------------------------------------------------------------------------------ main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("serve")
    a.add_argument("--name", required=True)
    a.add_argument("--tcp", type=int, action="append", default=[])
    a.add_argument("--udp", type=int, action="append", default=[])

    a = sub.add_parser("tcp-check")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--conns", type=int, default=1)
    a.add_argument("--bytes", type=int, default=262144)
    a.add_argument("--src")
    a.add_argument("--timeout", type=float, default=5.0)
    a.add_argument("--deadline", type=float, default=60.0, help="give up after this many seconds")

    a = sub.add_parser("udp-check")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--count", type=int, default=1)
    a.add_argument("--bytes", type=int, default=512)
    a.add_argument("--tries", type=int, default=1)
    a.add_argument("--timeout", type=float, default=2.0)
    a.add_argument("--deadline", type=float, default=60.0, help="give up after this many seconds")

    a = sub.add_parser("streams")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--streams", type=int, default=6)
    a.add_argument("--victim", required=True)
    a.add_argument("--duration", type=float, default=6.0)
    a.add_argument("--chunk", type=int, default=16384)
    a.add_argument("--pace", type=float, default=0.02)
    a.add_argument("--ready")
    a.add_argument("--timeout", type=float, default=10.0)

    a = sub.add_parser("udp-flow")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--duration", type=float, default=10.0)
    a.add_argument("--pace", type=float, default=0.075)
    a.add_argument("--timeout", type=float, default=1.0, help="wait this long for the last answers")
    a.add_argument("--ready")
    a.add_argument("--stop", help="stop sending when this file exists")

    a = sub.add_parser("storm")
    a.add_argument("--iface", required=True)
    a.add_argument("--src-mac", required=True)
    a.add_argument("--dst-mac", required=True)
    a.add_argument("--src", required=True)
    a.add_argument("--dst", required=True)
    a.add_argument("--dport", type=int, default=80)
    a.add_argument("--rounds", type=int, default=300)
    a.add_argument("--pause", type=float, default=0.002)
    a.add_argument("--kinds", help="comma-separated subset of the frame kinds")

    args = p.parse_args()
    fn = {"serve": serve, "tcp-check": tcp_check, "udp-check": udp_check, "streams": streams,
          "udp-flow": udp_flow, "storm": storm}[args.cmd]
    sys.exit(fn(args) or 0)


if __name__ == "__main__":
    main()
