#!/usr/bin/env python3
"""A gRPC workload for the end-to-end tests, served by grpcio (real HTTP/2, not Ferry's code).

usage: grpc_backend.py NAME [PORT]    (PORT 0 or absent: any free port)
Prints "READY <port>" once listening. Service greeter.Greeter, messages are raw bytes (identity
serializers), so no .proto file or code generation is needed:
  SayHello  unary             b"hello " + request
  Split     server streaming  one reply per whitespace-separated word of the request
  Join      client streaming  all requests joined by b","
  Chat      bidi streaming    each request uppercased, answered as it arrives
  Slow      unary             says "SLOW <ms>" on stderr, replies b"slow done by NAME" after int(request) ms
"""
import sys
import time
from concurrent import futures

import grpc

NAME = sys.argv[1] if len(sys.argv) > 1 else "grpc-backend"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def say_hello(request, context):
    context.set_trailing_metadata((("backend", NAME),))
    return b"hello " + request


def split(request, context):
    for word in request.split():
        yield word


def join(request_iterator, context):
    return b",".join(request_iterator)


def chat(request_iterator, context):
    for message in request_iterator:
        yield message.upper()


def slow(request, context):
    print(f"SLOW {int(request)}", file=sys.stderr, flush=True)
    time.sleep(int(request) / 1000)
    return f"slow done by {NAME}".encode()


def identity(b):
    return b


def main():
    handlers = {
        "SayHello": grpc.unary_unary_rpc_method_handler(say_hello, identity, identity),
        "Split": grpc.unary_stream_rpc_method_handler(split, identity, identity),
        "Join": grpc.stream_unary_rpc_method_handler(join, identity, identity),
        "Chat": grpc.stream_stream_rpc_method_handler(chat, identity, identity),
        "Slow": grpc.unary_unary_rpc_method_handler(slow, identity, identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("greeter.Greeter", handlers),))
    port = server.add_insecure_port(f"127.0.0.1:{PORT}")
    if port == 0:  # grpcio reports a failed bind this way, not by raising
        sys.exit(f"grpc_backend.py: cannot listen on 127.0.0.1:{PORT}")
    server.start()
    print(f"READY {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
