#!/usr/bin/env python3
"""A grpcio client for the end-to-end tests: calls greeter.Greeter through a Ferry outbound.

usage: grpc_client.py TARGET METHOD [--authority NAME] [--timeout SECONDS] MESSAGE...
TARGET is host:port (the outbound listener); --authority sets :authority, which Ferry routes by.
Prints each reply on its own line. Chat sends one message, waits for its reply, then sends the
next, so it passes only through a proxy that streams both ways at once.
On an RPC error prints "STATUS <CODE_NAME>" (e.g. STATUS UNAVAILABLE) and exits 2.
"""
import argparse
import queue
import sys

import grpc


def identity(b):
    return b


def chat(channel, messages, timeout):
    call = channel.stream_stream("/greeter.Greeter/Chat", identity, identity)
    replies_seen = queue.Queue()

    def requests():
        for i, message in enumerate(messages):
            if i:
                replies_seen.get(timeout=timeout)  # ping-pong: next only after a reply
            yield message

    for reply in call(requests(), timeout=timeout):
        print(reply.decode(), flush=True)
        replies_seen.put(None)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("method", choices=["SayHello", "Split", "Join", "Chat", "Slow"])
    parser.add_argument("--authority")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("messages", nargs="*")
    args = parser.parse_intermixed_args()

    options = [("grpc.default_authority", args.authority)] if args.authority else []
    messages = [m.encode() for m in args.messages]
    path = f"/greeter.Greeter/{args.method}"
    with grpc.insecure_channel(args.target, options=options) as channel:
        try:
            if args.method in ("SayHello", "Slow"):
                call = channel.unary_unary(path, identity, identity)
                for message in messages:
                    print(call(message, timeout=args.timeout).decode(), flush=True)
            elif args.method == "Split":
                call = channel.unary_stream(path, identity, identity)
                for reply in call(messages[0], timeout=args.timeout):
                    print(reply.decode(), flush=True)
            elif args.method == "Join":
                call = channel.stream_unary(path, identity, identity)
                print(call(iter(messages), timeout=args.timeout).decode(), flush=True)
            else:
                chat(channel, messages, args.timeout)
        except grpc.RpcError as error:
            print(f"STATUS {error.code().name}", flush=True)
            print(f"grpc error: {error.code().name}: {error.details()}", file=sys.stderr)
            sys.exit(2)


if __name__ == "__main__":
    main()
