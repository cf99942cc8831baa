#!/usr/bin/env python3
"""An HTTP/1.1 workload for the end-to-end tests: a real server that Ferry did not write.

usage: http_backend.py NAME [PORT]    (PORT 0 or absent: any free port)
Prints "READY <port>" once listening. Routes:
  GET  /hello...        200 "hello from NAME" + the Host header and path it saw
  GET  /healthz         200 "ok", or 503 after POST /health/fail (until POST /health/ok)
  POST /echo            200 with the request body
  POST /slow?ms=N       after N ms, 200 naming the backend, the body's length and its last 16 bytes
  GET  /sse             5 server-sent events, one every 300 ms, each flushed at once
  GET  /slow?ms=N       200 after N milliseconds
  GET  /big?mb=N        N MiB of bytes, written as fast as the reader takes them
  GET  /reset           headers promising 1000 bytes, 10 bytes, then a TCP reset
  GET  /seen            every request path seen so far, one a line
  GET  /connections?path=P   how many TCP connections carried a request whose path starts with P
  GET  /idle-close?ms=N  200 with keep-alive, then closes the connection N ms later, as a
                         server's idle timeout does
  GET  /idle-closed     how many connections /idle-close has closed so far
Keep-alive with Content-Length (chunked for /sse), so a proxy can pool connections to it.
"""
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1] if len(sys.argv) > 1 else "backend"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0
HOST = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"

lock = threading.Lock()
seen = []  # request paths, in arrival order
health = {"ok": True}  # what /healthz answers; toggled by POST /health/fail and /health/ok
connection_paths = {}  # connection id -> paths served on it
next_connection = [0]
idle_closed = [0]  # connections closed by /idle-close


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A reply's head and body go out in one write, as most servers send a small answer
    # (Python's default is a write for each): a node killed between the two writes would cut
    # an answer whose head had already gone to the client, which no proxy can retry. The
    # handler flushes after each request; the streaming routes flush as they go.
    wbufsize = -1
    # With Nagle's algorithm on, a streamed chunk waited for the last one's delayed ACK.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with lock:
            next_connection[0] += 1
            self.connection_id = next_connection[0]
            connection_paths[self.connection_id] = []

    def log_message(self, format, *args):
        pass  # the test output stays readable; /seen tells what arrived

    def target(self):
        # A server must accept absolute-form targets too (RFC 9112 3.2.2).
        parts = urlsplit(self.path)
        path = parts.path or "/"
        return path + ("?" + parts.query if parts.query else "")

    def record(self):
        path = self.target()
        with lock:
            seen.append(path)
            connection_paths[self.connection_id].append(path)
        return path

    def reply(self, status, body, content_type="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", NAME)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.record()
        route = urlsplit(path).path
        query = parse_qs(urlsplit(path).query)
        if route.startswith("/hello"):
            host = self.headers.get("Host", "")
            self.reply(200, f"hello from {NAME}\nhost: {host}\npath: {path}\n")
        elif route == "/healthz":
            if health["ok"]:
                self.reply(200, "ok\n")
            else:
                self.reply(503, "failing on purpose\n")
        elif route == "/sse":
            self.sse()
        elif route == "/slow":
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            self.reply(200, f"slow done by {NAME}\n")
        elif route == "/big":
            self.big(int(query.get("mb", ["100"])[0]))
        elif route == "/reset":
            self.reset()
        elif route == "/seen":
            with lock:
                self.reply(200, "".join(p + "\n" for p in seen))
        elif route == "/idle-close":
            self.reply(200, f"closing this connection soon, {NAME}\n")
            self.wfile.flush()
            time.sleep(int(query.get("ms", ["100"])[0]) / 1000)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            with lock:
                idle_closed[0] += 1
        elif route == "/idle-closed":
            with lock:
                self.reply(200, f"{idle_closed[0]}\n")
        elif route == "/connections":
            prefix = query.get("path", ["/"])[0]
            with lock:
                count = sum(
                    1 for paths in connection_paths.values() if any(p.startswith(prefix) for p in paths)
                )
            self.reply(200, f"{count}\n")
        else:
            self.reply(404, f"{NAME}: no route {path}\n")

    def do_POST(self):
        path = self.record()
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if urlsplit(path).path in ("/health/fail", "/health/ok"):
            health["ok"] = urlsplit(path).path == "/health/ok"
            self.reply(200, f"health ok: {health['ok']}\n")
        elif urlsplit(path).path == "/echo":
            self.reply(200, body, self.headers.get("Content-Type", "application/octet-stream"))
        elif urlsplit(path).path == "/slow":
            time.sleep(int(parse_qs(urlsplit(path).query).get("ms", ["1000"])[0]) / 1000)
            ends = body[-16:].decode("latin-1")
            self.reply(200, f"slow done by {NAME}\nbytes: {len(body)}\nends: {ends}\n")
        else:
            self.reply(404, f"{NAME}: no route {path}\n")

    def sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(5):
            if i:
                time.sleep(0.3)
            event = f"data: event {i} from {NAME}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def big(self, mb):
        chunk = b"x" * 65536
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(mb * 1024 * 1024))
        self.end_headers()
        try:
            for _ in range(mb * 16):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def reset(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        time.sleep(0.1)  # let the headers and first bytes leave before the reset
        # Linger 0: close() sends RST instead of FIN, as a crashing upstream would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a reset or a client gone mid-request is part of the tests


def main():
    server = Server((HOST, PORT), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
