#!/usr/bin/python3
"""Real clients of every protocol a route carries, against protocol-backend.py
through the route at 127.0.0.1:PORT: HTTP/1.1 keep-alive (http.client),
WebSocket (python3-websockets), server-sent events (a socket read as the
events come), HTTP/2 with prior knowledge (curl, nghttp2), gRPC unary and
streaming (python3-grpcio). One line per protocol, "ok NAME" or "failed NAME:
WHY"; exit 0 when all passed, 1 otherwise, 77 when a client is missing.

Run: protocol-client.py PORT
"""
import asyncio
import http.client
import socket
import struct
import subprocess
import sys

try:
    import grpc
    import websockets
except ImportError as e:
    print("skip: %s (Debian's python3-grpcio and python3-websockets)" % e)
    sys.exit(77)

PORT = int(sys.argv[1])
TIMEOUT = 60


def keep_alive():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    seen = set()
    for i in range(5):
        c.request("GET", "/echo?s=%d" % i)
        r = c.getresponse()
        body = r.read().decode()
        assert body == "vm: %d" % i, body
        seen.add(c.sock.getsockname())
    assert len(seen) == 1, "the requests did not share one connection: %s" % seen
    c.close()


async def ws_echo():
    async with websockets.connect("ws://127.0.0.1:%d/ws" % PORT, open_timeout=TIMEOUT,
                                  max_size=None) as ws:
        for text in ("hello", "x" * 70000):
            await ws.send(text)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert got == text, "%d bytes back for %d" % (len(got), len(text))
        blob = bytes(range(256)) * 4096  # 1 MiB, binary
        await ws.send(blob)
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert got == blob, "the binary message came back changed"
        await asyncio.wait_for(ws.ping(), TIMEOUT)


def websocket():
    asyncio.run(ws_echo())


def read_event(f):
    data = []
    while True:
        line = f.readline()
        if not line:
            raise AssertionError("the stream ended before an event")
        line = line.rstrip(b"\r\n")
        if not line:
            return b"\n".join(data).decode()
        if line.startswith(b"data: "):
            data.append(line[6:])


def sse():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: vm\r\nAccept: text/event-stream\r\n\r\n")
    f = s.makefile("rb")
    status = f.readline()
    assert b" 200 " in status, status
    while f.readline() not in (b"\r\n", b"\n", b""):
        pass
    # The first event arrives before the second is even allowed to be sent.
    assert read_event(f) == "one"
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    c.request("GET", "/next")
    assert c.getresponse().read() == b"next"
    assert read_event(f) == "two"
    s.close()


def h2c():
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", str(TIMEOUT),
                          "-w", "\n%{http_version}", "http://127.0.0.1:%d/h2" % PORT],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    body, _, version = out.stdout.rpartition("\n")
    assert version == "2", "HTTP version %s" % version
    assert body == "h2 from the vm", body


def grpc_calls():
    raw = {"request_serializer": bytes, "response_deserializer": bytes}
    with grpc.insecure_channel("127.0.0.1:%d" % PORT) as ch:
        grpc.channel_ready_future(ch).result(timeout=TIMEOUT)
        say = ch.unary_unary("/spillway.test.Echo/Say", **raw)
        assert say(b"hello", timeout=TIMEOUT) == b"vm: hello"
        count = ch.unary_stream("/spillway.test.Echo/Count", **raw)
        got = [m.decode() for m in count(struct.pack("!I", 50), timeout=TIMEOUT)]
        assert got == [str(i) for i in range(50)], got


def main():
    failed = 0
    for name, test in (("http1-keep-alive", keep_alive), ("websocket", websocket),
                       ("sse", sse), ("h2c", h2c), ("grpc", grpc_calls)):
        try:
            test()
            print("ok " + name, flush=True)
        except Exception as e:  # noqa: BLE001 -- every failure is reported, then the next
            print("failed %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
