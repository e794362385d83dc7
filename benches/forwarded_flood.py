#!/usr/bin/env python3
"""Sends COUNT requests `GET /sales/active`, each with its own
X-Forwarded-For address (10.0.0.0/8 then 11.0.0.0/8, ...), pipelined in
batches over a few keep-alive connections; prints the statuses seen.

A helper of benches/memory-limits.sh: the server must list 127.0.0.1/32 in
--trusted-proxies, so that every request counts against a new client.
Bounded: COUNT requests, BATCH in flight per connection, a timeout on
every read.

usage: forwarded_flood.py PORT COUNT [FIRST_ADDRESS_NUMBER]
"""
import collections
import socket
import sys
import threading

CONNECTIONS = 4
BATCH = 256
READ_TIMEOUT_SECONDS = 30


def address(n):
    n += 10 << 24
    return f"{(n >> 24) & 255}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def run(port, numbers, statuses, lock):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(READ_TIMEOUT_SECONDS)
    seen = collections.Counter()
    pending = b""
    for start in range(0, len(numbers), BATCH):
        batch = numbers[start:start + BATCH]
        request = b"".join(
            b"GET /sales/active HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: "
            + address(n).encode() + b"\r\n\r\n"
            for n in batch
        )
        sock.sendall(request)
        answered = 0
        while answered < len(batch):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("server closed the connection")
            pending += chunk
            # Each answer starts with its status line; bodies are JSON.
            while True:
                head_end = pending.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = pending[:head_end].decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if len(pending) < head_end + 4 + length:
                    break
                seen[head.split(" ")[1]] += 1
                pending = pending[head_end + 4 + length:]
                answered += 1
    sock.close()
    with lock:
        statuses.update(seen)


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    numbers = list(range(first, first + count))
    statuses, lock = collections.Counter(), threading.Lock()
    threads = [
        threading.Thread(target=run, args=(port, numbers[i::CONNECTIONS], statuses, lock))
        for i in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(" ".join(f"{status}:{n}" for status, n in sorted(statuses.items())))


if __name__ == "__main__":
    main()
