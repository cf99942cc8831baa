#!/usr/bin/env python3
"""A subscribing service for the broker tests: a real HTTP server that records what Ferry's
broker delivers to it and answers as the test tells it.

usage: subscriber.py NAME [PORT]    (PORT 0 or absent: any free port)
Prints "READY <port>" once listening. Routes:
  GET  /healthz          200 "ok"
  GET  /received         every delivery so far, as a JSON list of
                         {path, body, headers: {lowercased name: value}, status answered}
  POST /answer?status=N[&delay_ms=M]
                         later deliveries are answered N (after M ms); N = 0 closes the
                         connection without an answer
  POST <any other path>  a delivery: recorded, then answered as set (default 200)
Each delivery is also written to stderr as "RECEIVED <json>", flushed at once, so that what a
killed subscriber had received can still be read from its log.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1] if len(sys.argv) > 1 else "subscriber"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0

lock = threading.Lock()
received = []
answer = {"status": 200, "delay_ms": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def reply(self, status, body=b"", content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/healthz":
            self.reply(200, b"ok")
        elif path == "/received":
            with lock:
                body = json.dumps(received).encode()
            self.reply(200, body, "application/json")
        else:
            self.reply(404, b"no such path")

    def do_POST(self):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if parts.path == "/answer":
            query = parse_qs(parts.query)
            with lock:
                answer["status"] = int(query.get("status", ["200"])[0])
                answer["delay_ms"] = int(query.get("delay_ms", ["0"])[0])
            self.reply(200, b"ok")
            return
        record = {
            "path": parts.path,
            "body": body.decode("utf-8", "replace"),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        with lock:
            status, delay_ms = answer["status"], answer["delay_ms"]
            record["status"] = status
            received.append(record)
            print("RECEIVED " + json.dumps(record), file=sys.stderr, flush=True)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        if status == 0:
            self.close_connection = True
            self.connection.close()
            return
        self.reply(status, f"{NAME} answered {status}".encode())


# A backlog for bursts: a broker may open many deliveries at once (the default is 5).
ThreadingHTTPServer.request_queue_size = 128
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print(f"READY {server.server_address[1]}", flush=True)
server.serve_forever()
