#!/usr/bin/env python3
"""Back-to-back HTTP calls through a Ferry outbound from several threads, until told to stop.

usage: call_loop.py OUTBOUND_HOST:PORT HOST_HEADER THREADS STOP_FILE
Each thread makes GET /hello calls one after the other, each on a new connection, until
STOP_FILE exists. For each call it prints, flushed at once, one line:
  CALL <thread> <start, s since the epoch> <duration ms> <status or ERR> <body's first line or error>
"""
import http.client
import os
import sys
import threading
import time

ADDRESS, HOST, THREADS, STOP = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = ADDRESS.rsplit(":", 1)
out = threading.Lock()


def caller(n):
    while not os.path.exists(STOP):
        started = time.time()
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=20)
            connection.request("GET", "/hello", headers={"Host": HOST})
            response = connection.getresponse()
            body = response.read().decode("utf-8", "replace")
            connection.close()
            outcome = f"{response.status} {body.splitlines()[0] if body else ''}"
        except Exception as e:  # noqa: BLE001 - every failure is a result to report
            outcome = f"ERR {type(e).__name__}: {e}"
        took = (time.time() - started) * 1000
        with out:
            print(f"CALL {n} {started:.3f} {took:.0f} {outcome}", flush=True)


threads = [threading.Thread(target=caller, args=(n,)) for n in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("DONE", flush=True)
