#!/usr/bin/python3
"""A heavy component, standard library only: it holds memory as a model holds its
weights, and reads a file of "weights" for each request, as a model whose weights do
not fit in memory pages them in. Under a memory limit it stalls, and the kernel's
pressure stall information says so; stopped, it gives its memory back. It answers as
examples/offload/backend.py does, so an application cannot tell them apart.

  GET /health   {"status": "ok", "idle_seconds": N}
  GET /work     {"served_by": WHERE, "n": COUNT}, after reading --read-mb of the weights

Run: heavy.py PORT WHERE [--hold-mb N] [--weights FILE] [--read-mb N] [--cgroup DIR]...
Without arguments it is a VM's backend (the port from $PORT, WHERE "vm", nothing held).
--cgroup DIR writes its PID to DIR/cgroup.procs first (each given), so that its memory
is counted there: how the tests and `spillway demo --live` put it under a limit.
"""
import argparse
import http.server
import json
import mmap
import os
import threading
import time

PAGE = 4096

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int, nargs="?")
parser.add_argument("where", nargs="?", default="vm")
parser.add_argument("--hold-mb", type=int, default=0)
parser.add_argument("--weights")
parser.add_argument("--read-mb", type=int, default=32)
parser.add_argument("--cgroup", action="append", default=[])
parser.add_argument("--address", default=os.environ.get("SPILLWAY_BACKEND_ADDRESS", "127.0.0.1"))
args = parser.parse_args()
port = args.port if args.port is not None else int(os.environ["PORT"])

for cgroup in args.cgroup:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))

# Held memory: anonymous pages, each written once so that the kernel really gives them.
held = mmap.mmap(-1, args.hold_mb << 20) if args.hold_mb > 0 else None
if held is not None:
    for off in range(0, len(held), PAGE):
        held[off] = 1

weights = None
if args.weights:
    with open(args.weights, "rb") as f:
        weights = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)

lock = threading.Lock()
state = {"n": 0, "used": time.monotonic(), "at": 0}


def think():
    """Read the next --read-mb of the weights, a byte a page: a page fault each when evicted."""
    if weights is None:
        return 0
    size = len(weights)
    span = min(args.read_mb << 20, size)
    with lock:
        start = state["at"]
        state["at"] = (start + span) % size
    total = 0
    for off in range(start, start + span, PAGE):
        total += weights[off % size]
    return total


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/health"):
            with lock:
                idle = int(time.monotonic() - state["used"])
            self.answer({"status": "ok", "idle_seconds": idle})
            return
        think()
        with lock:
            state["n"] += 1
            state["used"] = time.monotonic()
            n = state["n"]
        self.answer({"served_by": args.where, "n": n})

    def log_message(self, *a):
        pass


server = http.server.ThreadingHTTPServer((args.address, port), Handler)
server.daemon_threads = True
print("heavy: serving on %s:%d as %s, holding %d MB" % (args.address, port, args.where,
                                                       args.hold_mb), flush=True)
server.serve_forever()
