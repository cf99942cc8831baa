#!/usr/bin/env python3
"""A WebSocket client for the end-to-end tests (the websockets package).

usage: ws_client.py OUTBOUND SERVICE MESSAGE...
Opens a TCP connection to OUTBOUND (host:port, a Ferry outbound listener) and upgrades it with
"Host: SERVICE", the way an application calls a service through its sidecar. Sends each message,
waits for its reply before the next, prints each reply on its own line. Exits 2 on failure.
"""
import socket
import sys

from websockets.sync.client import connect


def main():
    outbound, service, messages = sys.argv[1], sys.argv[2], sys.argv[3:]
    host, port = outbound.rsplit(":", 1)
    try:
        sock = socket.create_connection((host, int(port)), timeout=10)
        # The URI only names the Host header; the bytes go over the pre-connected socket.
        with connect(f"ws://{service}/", sock=sock, open_timeout=10, close_timeout=2) as ws:
            for message in messages:
                ws.send(message)
                print(ws.recv(timeout=10), flush=True)
    except Exception as error:  # any failure is the test's answer, printed for its log
        print(f"ERROR {type(error).__name__}: {error}", flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
