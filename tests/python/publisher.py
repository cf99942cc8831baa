#!/usr/bin/env python3
"""Publishes messages through a Ferry node's application API, as an application would.

usage: publisher.py API_ADDRESS TOPIC COUNT [RATE_PER_SECOND]
POSTs COUNT messages ("message N") to http://API_ADDRESS/v1/publish/TOPIC over one keep-alive
connection, at most RATE a second (default: as fast as answers come). Prints one line per
message: "<status> <id or error line>", then "DONE".
"""
import http.client
import json
import sys
import time

address, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
host, port = address.rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port), timeout=20)
start = time.monotonic()
for n in range(count):
    if rate:
        due = start + n / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    body = f"message {n}".encode()
    try:
        connection.request(
            "POST",
            f"/v1/publish/{topic}",
            body=body,
            headers={"Content-Type": "text/plain", "traceparent": f"00-{n:032x}-{n:016x}-01"},
        )
        response = connection.getresponse()
        answer = response.read().decode("utf-8", "replace").strip()
    except OSError as e:
        print(f"0 {e}", flush=True)
        connection.close()
        connection = http.client.HTTPConnection(host, int(port), timeout=20)
        continue
    if response.status == 202:
        answer = json.loads(answer)["id"]
    print(f"{response.status} {answer}", flush=True)
print("DONE", flush=True)
