#!/usr/bin/env python3
"""A WebSocket echo workload for the end-to-end tests, served by the websockets package.

usage: ws_backend.py NAME [PORT]    (PORT 0 or absent: any free port)
Prints "READY <port>" once listening. Every text message is sent back as "NAME: message".
"""
import sys

from websockets.sync.server import serve

NAME = sys.argv[1] if len(sys.argv) > 1 else "ws-backend"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def echo(websocket):
    for message in websocket:
        websocket.send(f"{NAME}: {message}")


def main():
    with serve(echo, "127.0.0.1", PORT) as server:
        print(f"READY {server.socket.getsockname()[1]}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
