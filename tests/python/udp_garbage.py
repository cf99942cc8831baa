#!/usr/bin/env python3
"""Sends garbage UDP datagrams at a Ferry tunnel port, from wherever it runs (the tests run it
inside a network namespace with `ip netns exec`).

usage: udp_garbage.py HOST:PORT COUNT SEED
Sends COUNT datagrams of 1..1400 pseudo-random bytes (xorshift64 from SEED, so a run can be
repeated); every third one starts like a QUIC v1 long-header Initial so that it gets past a
receiver's first checks. Prints "SENT <count>" and exits 0.
"""
import socket
import sys

MASK = (1 << 64) - 1


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    count = int(sys.argv[2])
    x = int(sys.argv[3]) | 1
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for i in range(count):
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        length = 1 + x % 1400
        datagram = bytearray((x >> (j % 56)) & 0xFF for j in range(length))
        if i % 3 == 0 and length > 8:
            datagram[0] = 0xC0
            datagram[1:5] = (1).to_bytes(4, "big")
        try:
            sock.sendto(bytes(datagram), (host, int(port)))
            sent += 1
        except OSError:
            pass  # e.g. ICMP unreachable reported on a later send: keep going
    print(f"SENT {sent}", flush=True)


if __name__ == "__main__":
    main()
