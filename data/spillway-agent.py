#!/usr/bin/python3
"""spillway's watchdog on the VM.

The startup script starts it before the install. It is the VM's only door and
makes sure the VM never outlives its purpose, even when the workstation that
created it is gone.

Its port speaks TLS only, with a key made here at start; the key's SHA-256
("sha256//BASE64" of its SubjectPublicKeyInfo) is published in the guest
attribute spillway/tls-key, which the daemon reads through the Compute API
and pins. Only the client whose certificate is the metadata's
spillway-client-cert gets in. ALPN "spillway-fwd/1" passes the connection's
bytes to the backend on 127.0.0.1 (the backend's port needs no firewall
rule); anything else is this agent's HTTP API:

  GET  /spillway/status   the backend's health, the connections passed to it
                          open now, its last activity, uptime, and whether
                          Compute Engine announced a preemption
  POST /spillway/lease    the same answer, and the lease renewed; the daemon
                          sends it at every pass, signed with this VM's secret:
                          "Authorization: SpillwayLease TIME:HEX", HEX being
                          HMAC-SHA256(secret, "NAME\\nTIME"), TIME unix seconds
                          within 5 minutes of this VM's clock

When no renewal came for the lease time (spillway-lease-seconds) and the
backend served nobody in that time either, the VM deletes itself through the
Compute API with the metadata server's token, or powers off if it cannot (a
stopped Spot VM costs its disk only, and the daemon deletes it when it sees
it). That is in addition to the VM's maxRunDuration, never instead of it.

Activity is a connection passed to the backend, a TCP connection to the
backend's port from another address than 127.0.0.1 or ::1 (this agent and
the startup script ask from there), as /proc/net/tcp shows it, or the
backend's own "idle_seconds" in its health answer. A preemption notice
(instance/preempted, watched with wait_for_change) is reported at once; the
backend is stopped once the connections passed to it ended, or 20 s after
the notice (the daemon drains them for as long), well within the 30 s
Compute Engine gives.

Settings are instance metadata attributes; the secret is read from the
metadata server and kept in memory only. SPILLWAY_METADATA_URL,
SPILLWAY_COMPUTE_URL, SPILLWAY_METADATA_INSTANCE (the emulator's name for the
asking instance), SPILLWAY_AGENT_ADDRESS, SPILLWAY_BACKEND_ADDRESS (where the
backend listens instead of 127.0.0.1) and SPILLWAY_ROOT exist for tests and
for the emulator, which runs this agent for its guests when asked.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

MD = os.environ.get("SPILLWAY_METADATA_URL",
                    "http://metadata.google.internal/computeMetadata/v1")
COMPUTE = os.environ.get("SPILLWAY_COMPUTE_URL",
                         "https://compute.googleapis.com/compute/v1")
ROOT = os.environ.get("SPILLWAY_ROOT", "")
BACKEND = os.environ.get("SPILLWAY_BACKEND_ADDRESS", "127.0.0.1")
SKEW_S = 300
ALPN_FORWARD, ALPN_HTTP = "spillway-fwd/1", "http/1.1"
HANDSHAKE_S = 10
PREEMPT_DRAIN_S = 20


def boot_progress():
    """The startup script's last step and when it last moved ("STEP UNIX-TIME")."""
    try:
        with open(ROOT + "/var/lib/spillway/progress") as f:
            step, _, when = f.read().strip().partition(" ")
        return {"step": step, "updated": int(when)}
    except (OSError, ValueError):
        return None


def installed():
    """What the disk holds, as the startup script wrote it (its install's hash), or None."""
    try:
        with open(ROOT + "/var/lib/spillway/installed") as f:
            return f.read().strip() or None
    except OSError:
        return None


# A 2xx health answer whose "status" is one of these is not healthy (as src/vm/health.c).
FAILING = {"fail", "failed", "failing", "failure", "error", "down", "unhealthy", "starting",
           "stopping", "initializing", "loading", "unavailable", "out_of_service", "not_ready",
           "not ready", "critical", "dead", "broken"}
BACKEND_UNIT = "spillway-backend.service"

MD_HEADERS = {"Metadata-Flavor": "Google"}
if os.environ.get("SPILLWAY_METADATA_INSTANCE"):
    MD_HEADERS["X-Emulator-Instance"] = os.environ["SPILLWAY_METADATA_INSTANCE"]

# No proxy from the environment: the metadata server and the backend are local.
_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
_log_file = None


def log(msg):
    line = "%s spillway-agent: %s\n" % (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), msg)
    sys.stderr.write(line)
    sys.stderr.flush()
    if _log_file is not None:
        with open(_log_file, "a") as f:
            f.write(line)


def metadata(path, default=None, timeout=10):
    """A metadata value, or default when it is not set; (value, etag) for waits."""
    req = urllib.request.Request(MD + "/" + path, headers=MD_HEADERS)
    try:
        with _open(req, timeout=timeout) as r:
            return r.read().decode(), r.headers.get("ETag", "")
    except urllib.error.HTTPError as e:
        if e.code == 404 and default is not None:
            return default, ""
        raise


def attr(name, default=""):
    return metadata("instance/attributes/" + name, default)[0]


def systemctl(*args):
    try:
        subprocess.run(("systemctl",) + args, timeout=25, check=True)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        log("systemctl %s: %s" % (" ".join(args), e))
        return False


def connections(port):
    """Connections to our port from elsewhere than the VM's own loopback."""
    mine = ("%04X" % port)
    local = {"0100007F", "00000000000000000000000001000000"}
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    laddr, raddr, st = fields[1], fields[2], fields[3]
                    if st != "0A" and laddr.endswith(":" + mine) and \
                            raddr.split(":")[0] not in local:
                        n += 1
        except OSError:
            pass
    return n


def make_identity(name, bake):
    """Its key and self-signed certificate (files 0600), made the first time; the key's pin.

    Kept on the VM's disk, so a VM stopped and started again (the warm pool) keeps its
    key; a bake's in /run, so that no image carries a key of its own to every VM made of it.
    """
    d = ROOT + ("/run/spillway/agent-tls" if bake else "/var/lib/spillway/agent-tls")
    os.makedirs(d, mode=0o700, exist_ok=True)
    key, cert = d + "/key.pem", d + "/cert.pem"
    old = os.umask(0o077)
    try:
        if not (os.path.exists(key) and os.path.exists(cert)):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
                            "-subj", "/CN=" + name, "-keyout", key, "-out", cert],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=60)
        der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True, timeout=60).stdout
    finally:
        os.umask(old)
    pin = "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()
    return cert, key, pin


def publish(key, value):
    """A guest attribute, until the metadata server takes it."""
    req = urllib.request.Request(MD + "/instance/guest-attributes/" + key, data=value.encode(),
                                 method="PUT", headers=MD_HEADERS)
    for attempt in range(60):
        try:
            with _open(req, timeout=10):
                return True
        except (OSError, ValueError) as e:
            if attempt == 0:
                log("cannot publish %s yet (%s): trying again" % (key, e))
            time.sleep(min(10, 1 + attempt))
    log("could not publish %s: the daemon cannot reach this agent" % key)
    return False


class Agent:
    def __init__(self):
        self.name = metadata("instance/name")[0]
        self.secret = attr("spillway-agent-secret").encode()
        self.port = int(attr("spillway-port", "8010"))
        self.health_url = "http://%s:%d%s" % (
            BACKEND, self.port, attr("spillway-health-path", "/health"))
        self.agent_port = int(attr("spillway-agent-port", "8011"))
        self.lease_s = int(attr("spillway-lease-seconds", "1200"))
        self.lock = threading.Lock()
        now = time.monotonic()
        self.started = self.renewed = self.active = now
        self.last_time = 0
        self.healthy = False
        self.preempted = False
        self.forwarding = 0  # connections passed to the backend, open now
        self.drained = threading.Condition(self.lock)
        self.client_cert = attr("spillway-client-cert")
        if not self.client_cert:
            log("no spillway-client-cert: nobody can reach this agent")
        if not self.secret:
            log("no spillway-agent-secret: no lease can be renewed")

    def status(self):
        now = time.monotonic()
        with self.lock:
            return {
                "status": "preempted" if self.preempted else
                          "ok" if self.healthy else "unhealthy",
                "instance": self.name,
                "backend_healthy": self.healthy,
                "connections": self.forwarding,
                "idle_seconds": int(now - self.active),
                "uptime_seconds": int(now - self.started),
                "lease_seconds": self.lease_s,
                "lease_left_seconds": max(0, int(self.lease_s - (now - self.renewed))),
                "preempted": self.preempted,
                "boot": boot_progress(),
                "installed": installed(),
            }

    def renew(self, authorization):
        """True when the header proves the secret for a time near ours."""
        scheme, _, cred = (authorization or "").partition(" ")
        stamp, _, mac = cred.partition(":")
        if scheme != "SpillwayLease" or not stamp.isdigit() or not self.secret:
            return False
        t = int(stamp)
        want = hmac.new(self.secret, ("%s\n%d" % (self.name, t)).encode(),
                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, mac):
            return False
        with self.lock:
            if abs(t - time.time()) > SKEW_S or t < self.last_time:
                return False
            self.last_time = t
            self.renewed = time.monotonic()
        return True

    def probe(self):
        healthy, idle = False, None
        try:
            with _open(self.health_url, timeout=5) as r:
                healthy = 200 <= r.status < 300
                body = json.loads(r.read(65536) or b"{}")
                if isinstance(body, dict):
                    word = body.get("status")
                    if isinstance(word, str) and word.lower() in FAILING:
                        healthy = False
                    if isinstance(body.get("idle_seconds"), int):
                        idle = body["idle_seconds"]
        except (OSError, ValueError):
            pass
        now = time.monotonic()
        with self.lock:
            self.healthy = healthy
            if idle is not None:
                self.active = max(self.active, now - idle)
            if self.forwarding > 0 or connections(self.port) > 0:
                self.active = now

    def expired(self):
        """Why the VM should go, or None."""
        now = time.monotonic()
        with self.lock:
            quiet, idle = now - self.renewed, now - self.active
            if quiet < self.lease_s or idle < self.lease_s:
                return None
        return ("no lease renewal for %d s and the backend idle for %d s (lease: %d s)"
                % (quiet, idle, self.lease_s))

    def watch(self):
        tick = max(1, min(30, self.lease_s // 10))
        while True:
            self.probe()
            why = self.expired()
            if why is not None:
                self_delete(why)
                return
            # While the backend does not answer, every second: READY is noticed at once.
            with self.lock:
                wait = tick if self.healthy else 1
            time.sleep(wait)

    def watch_preemption(self):
        etag = ""
        while True:
            try:
                path = "instance/preempted"
                if etag:
                    path += "?wait_for_change=true&timeout_sec=300&last_etag=" + etag
                value, etag = metadata(path, timeout=330)
            except (OSError, ValueError) as e:
                log("cannot watch instance/preempted: %s" % e)
                time.sleep(5)
                continue
            if value.strip() == "TRUE":
                with self.lock:
                    self.preempted = True
                    log("Compute Engine announced a preemption: the backend stops once "
                        "its %d connections ended, or in %d s" % (self.forwarding,
                                                                PREEMPT_DRAIN_S))
                    end = time.monotonic() + PREEMPT_DRAIN_S
                    while self.forwarding > 0 and time.monotonic() < end:
                        self.drained.wait(end - time.monotonic())
                log("stopping the backend")
                systemctl("stop", BACKEND_UNIT)
                return

    def forward(self, tls):
        """The connection's bytes to the backend and back, until both ends are done."""
        try:
            back = socket.create_connection((BACKEND, self.port), timeout=10)
        except OSError as e:
            log("cannot reach the backend on port %d: %s" % (self.port, e))
            return
        with self.lock:
            self.forwarding += 1
            self.active = time.monotonic()
        try:
            pump(tls, back)
        finally:
            back.close()
            with self.lock:
                self.forwarding -= 1
                self.active = time.monotonic()
                self.drained.notify_all()


def pump(tls, back):
    """Both ways in one thread. The client's end of file (close_notify) is passed on as a
    shutdown of the backend's writing; the backend's ends the connection (close_notify)."""
    tls.setblocking(False)
    back.setblocking(False)
    to_back, to_tls = b"", b""
    tls_eof = back_eof = back_shut = False
    while True:
        if tls_eof and not to_back and not back_shut:
            back.shutdown(socket.SHUT_WR)
            back_shut = True
        if back_eof and not to_tls:
            try:
                tls.unwrap()
            except (OSError, ssl.SSLError, ValueError):
                pass  # sent; the peer's own close_notify is not waited for
            return
        rd = []
        if not tls_eof and len(to_back) < 1 << 20:
            rd.append(tls)
        if not back_eof and len(to_tls) < 1 << 20:
            rd.append(back)
        wr = ([back] if to_back else []) + ([tls] if to_tls else [])
        if tls in rd and tls.pending():
            r, w = [tls], []
        else:
            r, w, _ = select.select(rd, wr, [], 600)
            if not r and not w:
                return  # nothing either way for 10 minutes
        try:
            if tls in r:
                try:
                    data = tls.recv(65536)
                    tls_eof = not data
                    to_back += data
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except ssl.SSLZeroReturnError:
                    tls_eof = True
            if back in r:
                data = back.recv(65536)
                back_eof = not data
                to_tls += data
            if back in w:
                to_back = to_back[back.send(to_back):]
            if tls in w:
                try:
                    to_tls = to_tls[tls.send(to_tls):]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
        except (OSError, ssl.SSLError):
            return


def self_delete(why):
    log("deleting this VM: " + why)
    try:
        tok = json.loads(metadata("instance/service-accounts/default/token")[0])
        project = metadata("project/project-id")[0]
        zone = metadata("instance/zone")[0].rsplit("/", 1)[-1]
        name = metadata("instance/name")[0]
        url = "%s/projects/%s/zones/%s/instances/%s?requestId=%s" % (
            COMPUTE.rstrip("/"), project, zone, name, uuid.uuid4())
        req = urllib.request.Request(url, method="DELETE", headers={
            "Authorization": "Bearer " + tok["access_token"]})
        for attempt in range(3):
            try:
                with _open(req, timeout=60) as r:
                    log("the delete was accepted (HTTP %d)" % r.status)
                    return
            except urllib.error.HTTPError as e:
                if e.code < 500 and e.code != 429:
                    raise
                log("the delete failed (HTTP %d), trying again" % e.code)
            time.sleep(2 ** attempt)
        raise OSError("the Compute API did not accept the delete")
    except (OSError, ValueError, KeyError) as e:
        log("cannot delete this VM (%s): powering off instead" % e)
        systemctl("poweroff")


def main():
    global _log_file
    log_dir = ROOT + attr("spillway-log-dir", "/var/log/spillway")
    os.makedirs(log_dir, exist_ok=True)
    _log_file = os.path.join(log_dir, "agent.log")
    agent = Agent()

    class Handler(http.server.BaseHTTPRequestHandler):
        # The daemon keeps its connection from one pass to the next.
        protocol_version = "HTTP/1.1"

        def answer(self, code, doc):
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/spillway/status":
                self.answer(200, agent.status())
            else:
                self.answer(404, {"error": "no such path: try /spillway/status"})

        def do_POST(self):
            size = int(self.headers.get("Content-Length") or 0)
            if size > 4096:
                self.answer(413, {"error": "a lease needs no body"})
                return
            self.rfile.read(size)
            if self.path != "/spillway/lease":
                self.answer(404, {"error": "no such path: try /spillway/lease"})
            elif agent.renew(self.headers.get("Authorization")):
                self.answer(200, agent.status())
            else:
                self.answer(401, {"error": "the lease is not signed with this VM's secret"})

        def log_message(self, *args):
            pass  # one line per pass would bury what matters

    cert, key, pin = make_identity(agent.name, attr("spillway-mode") == "bake")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols([ALPN_FORWARD, ALPN_HTTP])
    ctx.verify_mode = ssl.CERT_REQUIRED  # without a client certificate to trust: nobody
    client = None
    if agent.client_cert:
        ctx.load_verify_locations(cadata=agent.client_cert)
        client = ssl.PEM_cert_to_DER_cert(agent.client_cert)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, address):
            """In the connection's thread: TLS, who it is, then where it goes."""
            request.settimeout(HANDSHAKE_S)
            try:
                tls = ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                log("refused a connection from %s: %s" % (address[0], e))
                return
            try:
                if tls.getpeercert(binary_form=True) != client:
                    log("refused %s: not the certificate of this VM's daemon" % address[0])
                elif tls.selected_alpn_protocol() == ALPN_FORWARD:
                    tls.settimeout(None)
                    agent.forward(tls)
                else:
                    tls.settimeout(120)  # kept by the daemon between its passes
                    Handler(tls, address, self)
            finally:
                tls.close()

    server = Server((os.environ.get("SPILLWAY_AGENT_ADDRESS", ""), agent.agent_port), Handler)
    for target in (server.serve_forever, agent.watch_preemption):
        threading.Thread(target=target, daemon=True).start()
    threading.Thread(target=publish, args=("spillway/tls-key", pin), daemon=True).start()
    log("watching %s: lease %d s, agent on port %d"
        % (agent.name, agent.lease_s, agent.agent_port))
    agent.watch()
    server.shutdown()


if __name__ == "__main__":
    main()
