#!/usr/bin/python3
"""An application that uses one component through its route and knows nothing of
VMs: it points its client at the component's `listen` address, as it would at a
local server, and keeps working. Each answer's "served_by" is printed, one line
per request ("vm" or "local"), and every failure too.

A route moves connections, not requests: a connection kept open stays where it
went. This client opens one per request, so each goes where the component runs
now (docs/offload.md).

Run: app.py LISTEN_PORT [SECONDS]; it stops after SECONDS (default forever), or
when the file named by $APP_STOP exists. Exit status 0 when no request failed.
"""
import http.client
import json
import os
import sys
import time

port = int(sys.argv[1])
until = time.monotonic() + float(sys.argv[2]) if len(sys.argv) > 2 else float("inf")
stop = os.environ.get("APP_STOP")
failed = 0
while time.monotonic() < until and not (stop and os.path.exists(stop)):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/work", headers={"Connection": "close"})
        answer = json.loads(conn.getresponse().read())
        print(answer["served_by"], flush=True)
    except (OSError, http.client.HTTPException, ValueError) as e:
        # A connection reset (its VM preempted mid-answer): the next one goes where the
        # route says now. An application retries an idempotent request so.
        print("failed: %s" % e, flush=True)
        failed += 1
    finally:
        conn.close()
    time.sleep(0.05)
sys.exit(1 if failed else 0)
