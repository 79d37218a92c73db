#!/usr/bin/python3
"""A VM's backend that speaks every protocol a route must carry unchanged, on
one port, as the emulator runs a guest's backend ($PORT, $SPILLWAY_BACKEND_ADDRESS):

  HTTP/1.1   GET /health (spillway's check), GET /echo?s=TEXT (keep-alive)
  WebSocket  GET /ws: each message sent back as it came (RFC 6455, by hand)
  SSE        GET /events: "one", then "two" only once GET /next was asked on
             another connection, so a client that has "one" before it asks
             proves the stream was not held back
  HTTP/2     prior knowledge (h2c), hyper-h2: GET /h2 answers "h2 from the vm"
  gRPC       over that HTTP/2: /spillway.test.Echo/Say answers its message,
             /spillway.test.Echo/Count streams N messages (N its 4-byte message)

Debian's python3-h2; the clients are in protocol-client.py.
"""
import base64
import hashlib
import http.server
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
next_asked = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, body, kind="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            self.answer(200, json.dumps({"status": "ok", "idle_seconds": 0}).encode())
        elif url.path == "/echo":
            text = urllib.parse.parse_qs(url.query).get("s", [""])[0]
            self.answer(200, ("vm: " + text).encode(), "text/plain")
        elif url.path == "/next":
            next_asked.set()
            self.answer(200, b"next", "text/plain")
        elif url.path == "/events":
            self.events()
        elif url.path == "/ws":
            self.websocket()
        else:
            self.answer(404, b"{}")

    def events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(b"data: one\n\n")
        self.wfile.flush()
        ok = next_asked.wait(60)
        self.wfile.write(b"data: two\n\n" if ok else b"data: never asked\n\n")
        self.wfile.flush()
        self.close_connection = True

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                break
            op, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if op == 8:  # close: answered, then done
                self.wfile.write(frame(8, data[:2]))
                break
            if op == 9:  # ping
                self.wfile.write(frame(10, data))
            elif op in (1, 2):
                self.wfile.write(frame(op, data))
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def frame(op, data):
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | op, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | op, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 127, n)
    return head + data


def grpc_message(data):
    return struct.pack("!BI", 0, len(data)) + data


def serve_h2(sock):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    heads, bodies = {}, {}
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                heads[ev.stream_id] = {k.decode() if isinstance(k, bytes) else k:
                                       v.decode() if isinstance(v, bytes) else v
                                       for k, v in ev.headers}
                bodies[ev.stream_id] = b""
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                respond(conn, ev.stream_id, heads.pop(ev.stream_id), bodies.pop(ev.stream_id))
        sock.sendall(conn.data_to_send())


def respond(conn, sid, head, body):
    path = head.get(":path", "")
    if head.get("content-type", "").startswith("application/grpc"):
        msg = body[5:]
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        if path == "/spillway.test.Echo/Say":
            conn.send_data(sid, grpc_message(b"vm: " + msg))
        elif path == "/spillway.test.Echo/Count":
            for i in range(struct.unpack("!I", msg)[0]):
                conn.send_data(sid, grpc_message(b"%d" % i))
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    elif path == "/h2":
        body = b"h2 from the vm"
        conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body)))])
        conn.send_data(sid, body, end_stream=True)
    else:
        conn.send_headers(sid, [(":status", "404")], end_stream=True)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, address):
        """HTTP/2 with prior knowledge by its preface, HTTP/1.1 otherwise."""
        seen = b""
        while len(seen) < len(PREFACE) and PREFACE.startswith(seen):
            more = request.recv(len(PREFACE), socket.MSG_PEEK)
            if not more:
                return  # closed before a request
            if len(more) == len(seen):
                time.sleep(0.01)  # the rest of the preface is on its way
            seen = more
        if seen == PREFACE:
            serve_h2(request)
        else:
            Handler(request, address, self)


def main():
    address = os.environ.get("SPILLWAY_BACKEND_ADDRESS", "127.0.0.1")
    server = Server((address, int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])),
                    Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
