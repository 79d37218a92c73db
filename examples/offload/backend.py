#!/usr/bin/python3
"""A component's backend, standard library only: what runs on the VM and, as the
local copy, on the workstation. It says where it runs, so the application (and
the tests) can see where each request went.

  GET /health   {"status": "ok", "idle_seconds": N}: spillway's health check
  GET /work     {"served_by": WHERE, "n": COUNT}: the component's work
  GET /slow?s=S the same after S seconds: a request in flight

Run: backend.py [PORT WHERE [ADDRESS]]. Without arguments it is the VM's
backend as spillway's startup script starts it: the port from $PORT, WHERE
"vm", the address 127.0.0.1 (or $SPILLWAY_BACKEND_ADDRESS, as the emulator
gives its guests).
"""
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

args = sys.argv[1:]
port = int(args[0] if args else os.environ["PORT"])
where = args[1] if len(args) > 1 else "vm"
address = args[2] if len(args) > 2 else os.environ.get("SPILLWAY_BACKEND_ADDRESS", "127.0.0.1")
lock = threading.Lock()
state = {"n": 0, "used": time.monotonic()}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real client library uses it

    def answer(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            with lock:
                idle = int(time.monotonic() - state["used"])
            self.answer({"status": "ok", "idle_seconds": idle})
            return
        if url.path == "/slow":
            time.sleep(float(urllib.parse.parse_qs(url.query).get("s", ["1"])[0]))
        with lock:
            state["n"] += 1
            state["used"] = time.monotonic()
            n = state["n"]
        self.answer({"served_by": where, "n": n})

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer((address, port), Handler)
server.daemon_threads = True
server.serve_forever()
