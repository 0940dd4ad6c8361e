#!/usr/bin/env python3
"""Publish answer time at 100/s on one keep-alive connection: python3 benches/publish_probe.py PORT COUNT TOPIC"""
import socket, time, sys
port = int(sys.argv[1]); n = int(sys.argv[2]); topic = sys.argv[3]
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
body = f"topic={topic}&data=probe".encode()
req = b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
lat = []
for i in range(n):
    t0 = time.perf_counter(); s.sendall(req); buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(4096)
    head, rest = buf.split(b"\r\n\r\n", 1)
    cl = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(rest) < cl: rest += s.recv(4096)
    lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(max(0, 0.01 - (time.perf_counter() - t0)))
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"publish answer over {n} at 100/s: p50 {q(0.5):.3f} ms p99 {q(0.99):.3f} ms max {lat[-1]:.3f} ms")
