#!/usr/bin/env python3
"""Driver of scripts/soak.sh: backends, configuration, mixed load, churn and judgement.

Subcommands:
  free-ports N                 print N free loopback TCP ports
  setup ...                    write the soak configuration and a copy of the demo credentials
  backend-http ...             an HTTP/1.1 keep-alive echo backend (one line naming itself)
  backend-tls ...              the same over TLS, for the PASSTHROUGH route
  run ...                      the soak: load, reloads, rotations, backend kill, slowloris,
                               RSS and fd samples, summary table; exit 1 when a judgement fails

Everything talks to 127.0.0.1 only; every loop is bounded by a deadline and every socket
operation by a timeout.
"""
import argparse
import http.client
import http.server
import json
import multiprocessing as mp
import os
import random
import re
import select
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

HOST = "127.0.0.1"
NS = "istioinaction"
WEB = "webapp.istioinaction.io"
CATALOG = "catalog.istioinaction.io"
VICTIM = "victim.istioinaction.io"
SNI_PASS = "simple-sni-1.istioinaction.io"
IO_TIMEOUT = 5.0
RELOADED_FILE = "30-reloaded.yaml"


# ------------------------------------------------------------------------------------------
# free ports


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


# ------------------------------------------------------------------------------------------
# configuration


def render_static(p):
    """Every resource but the reloaded file. `p`: dict of backend ports."""
    def se(name, host, port_line, endpoints):
        eps = "".join(
            f"  - address: {HOST}\n    ports: {{{proto}: {port}}}\n    labels: {labels}\n"
            for proto, port, labels in endpoints)
        return (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
                f"metadata: {{name: {name}, namespace: {NS}}}\n"
                f"spec:\n  hosts: [{host}]\n  location: MESH_INTERNAL\n"
                f"  ports:\n  - {port_line}\n  resolution: STATIC\n  endpoints:\n{eps}")

    http_port = "{number: 80, name: http, protocol: HTTP}"
    backends = "---\n".join([
        se("webapp", f"webapp.{NS}.svc.cluster.local", http_port,
           [("http", p["web"], "{app: webapp, version: v1}")]),
        se("catalog", f"catalog.{NS}.svc.cluster.local", http_port,
           [("http", p["cat1"], "{app: catalog, version: v1}"),
            ("http", p["cat2"], "{app: catalog, version: v2}")]),
        se("victim", f"victim.{NS}.svc.cluster.local", http_port,
           [("http", p["victim"], "{app: victim, version: v1}")]),
        se("tcp-echo", f"tcp-echo-service.{NS}.svc.cluster.local",
           "{number: 2701, name: tcp, protocol: TCP}", [("tcp", p["echo"], "{app: tcp-echo}")]),
        se("simple-tls-service-1", f"simple-tls-service-1.{NS}.svc.cluster.local",
           "{number: 80, name: tls, protocol: TLS}",
           [("tls", p["tls"], "{app: simple-tls-service-1}")]),
    ])
    # Pooled upstream connections close after 3 s idle, so the fd count can return to its
    # pre-load level within the post-load wait.
    rules = "---\n".join(
        f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {name}, namespace: {NS}}}\n"
        f"spec:\n  host: {name}\n  trafficPolicy:\n    connectionPool:\n"
        f"      http: {{idleTimeout: 3s}}\n{extra}"
        for name, extra in [
            ("webapp", ""),
            ("victim", ""),
            ("catalog", "  subsets:\n  - {name: version-v1, labels: {version: v1}}\n"
                        "  - {name: version-v2, labels: {version: v2}}\n"),
        ])
    gateway = f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: soak-gateway, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{WEB}, {CATALOG}, {VICTIM}]
  - port: {{number: 443, name: https-webapp, protocol: HTTPS}}
    tls: {{mode: SIMPLE, credentialName: webapp-credential}}
    hosts: [{WEB}]
  - port: {{number: 443, name: https-catalog, protocol: HTTPS}}
    tls: {{mode: SIMPLE, credentialName: catalog-credential}}
    hosts: [{CATALOG}]
  - port: {{number: 443, name: tls-passthrough, protocol: TLS}}
    tls: {{mode: PASSTHROUGH}}
    hosts: [{SNI_PASS}]
  - port: {{number: 31400, name: tcp-echo, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: victim, namespace: {NS}}}
spec:
  hosts: [{VICTIM}]
  gateways: [soak-gateway]
  http:
  - route:
    - destination: {{host: victim, port: {{number: 80}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: {NS}}}
spec:
  hosts: ["*"]
  gateways: [soak-gateway]
  tcp:
  - match:
    - port: 31400
    route:
    - destination: {{host: tcp-echo-service, port: {{number: 2701}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: simple-sni-1, namespace: {NS}}}
spec:
  hosts: [{SNI_PASS}]
  gateways: [soak-gateway]
  tls:
  - match:
    - port: 443
      sniHosts: [{SNI_PASS}]
    route:
    - destination: {{host: simple-tls-service-1, port: {{number: 80}}}}
"""
    return {"00-backends.yaml": backends, "10-rules.yaml": rules, "20-gateway.yaml": gateway}


def render_reloaded(n):
    """The file each reload rewrites: the webapp route's response header carries `n`, the
    catalog canary split moves with it."""
    v1 = 10 + (n * 37) % 81
    return f"""# Rewritten by scripts/soak.py: reload {n}
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: webapp, namespace: {NS}}}
spec:
  hosts: [{WEB}]
  gateways: [soak-gateway]
  http:
  - route:
    - destination: {{host: webapp, port: {{number: 80}}}}
    headers:
      response:
        set: {{x-soak-reload: "{n}"}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: catalog, namespace: {NS}}}
spec:
  hosts: [{CATALOG}]
  gateways: [soak-gateway]
  http:
  - name: dark-launch
    match:
    - headers:
        x-dark-launch: {{exact: v2}}
    route:
    - destination: {{host: catalog, subset: version-v2}}
  - name: canary
    route:
    - destination: {{host: catalog, subset: version-v1}}
      weight: {v1}
    - destination: {{host: catalog, subset: version-v2}}
      weight: {100 - v1}
"""


def atomic_write(path, text, stage_dir):
    """Writes `text` next to nothing the gateway watches, then renames it into place."""
    tmp = os.path.join(stage_dir, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def install_credential(cred_dir, crt, key, tag):
    """Kubelet's Secret layout: tls.crt/tls.key -> ..data/… -> ..TAG/…; swapping `..data`
    (one rename) changes both files at once. The previous ..* folder is removed after."""
    os.makedirs(cred_dir, exist_ok=True)
    new = os.path.join(cred_dir, f"..{tag}")
    os.mkdir(new)
    shutil.copyfile(crt, os.path.join(new, "tls.crt"))
    shutil.copyfile(key, os.path.join(new, "tls.key"))
    data = os.path.join(cred_dir, "..data")
    old = os.readlink(data) if os.path.islink(data) else None
    tmp = os.path.join(cred_dir, "..data_tmp")
    os.symlink(f"..{tag}", tmp)
    os.replace(tmp, data)
    for name in ("tls.crt", "tls.key"):
        link = os.path.join(cred_dir, name)
        if not os.path.islink(link):
            if os.path.exists(link):
                os.remove(link)
            os.symlink(f"..data/{name}", link)
    if old:
        shutil.rmtree(os.path.join(cred_dir, old), ignore_errors=True)


def cmd_setup(a):
    ports = dict(web=a.web, cat1=a.cat1, cat2=a.cat2, victim=a.victim, echo=a.echo, tls=a.tls)
    os.makedirs(a.config_dir, exist_ok=True)
    for name, text in render_static(ports).items():
        with open(os.path.join(a.config_dir, name), "w") as f:
            f.write(text)
    with open(os.path.join(a.config_dir, RELOADED_FILE), "w") as f:
        f.write(render_reloaded(0))
    src = a.demo_certs
    os.makedirs(a.certs_dir, exist_ok=True)
    for d in ("ca", "catalog-credential", "simple-tls-service-1"):
        shutil.copytree(os.path.join(src, d), os.path.join(a.certs_dir, d))
    install_credential(os.path.join(a.certs_dir, "webapp-credential"),
                       os.path.join(src, "webapp-credential/tls.crt"),
                       os.path.join(src, "webapp-credential/tls.key"), "initial")


def new_leaf(certs_dir, out_dir, n):
    """A fresh webapp leaf (ECDSA P-256) from the demo CA; returns (crt, key, serial int)."""
    os.makedirs(out_dir, exist_ok=True)
    key = os.path.join(out_dir, f"leaf{n}.key")
    csr = os.path.join(out_dir, f"leaf{n}.csr")
    crt = os.path.join(out_dir, f"leaf{n}.crt")
    ext = os.path.join(out_dir, f"leaf{n}.ext")
    serial = random.getrandbits(95) | (1 << 94)
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{WEB},DNS:secure.istioinaction.io\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    ca = os.path.join(certs_dir, "ca")
    run = dict(check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], **run)
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj",
                    f"/O=tollgate soak/CN={WEB} rotation {n}", "-out", csr], **run)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", f"{ca}/ca.crt", "-CAkey",
                    f"{ca}/ca.key", "-set_serial", hex(serial), "-days", "30", "-extfile", ext,
                    "-out", crt], **run)
    return crt, key, serial


# ------------------------------------------------------------------------------------------
# backends


class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body are two writes: without TCP_NODELAY, Nagle holds the body until
    # the gateway's delayed ACK (40 ms).
    disable_nagle_algorithm = True
    identity = "?"

    def do_GET(self):
        body = f"{self.identity} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


class TlsServer(QuietServer):
    """Handshakes in the connection's own thread, so one slow client delays nobody."""
    context = None

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(30)
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr


def serve(server_cls, port, identity, context=None):
    handler = type("Handler", (EchoHandler,), {"identity": identity, "timeout": 60})
    server_cls.context = context
    server = server_cls((HOST, port), handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"backend {identity} listening on {HOST}:{port}", flush=True)
    server.serve_forever()


def cmd_backend_http(a):
    serve(QuietServer, a.port, f"service={a.service} version={a.version}")


def cmd_backend_tls(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    serve(TlsServer, a.port, f"service={a.service} version=tls", ctx)


# ------------------------------------------------------------------------------------------
# clients


class Stats:
    """Per-kind counts; failures by reason with their times (victim attribution needs them)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.fail = []          # (start, end, reason)
        self.lat = []
        self.extra = {}

    def success(self, start, end):
        with self.lock:
            self.ok += 1
            if len(self.lat) < 400_000:
                self.lat.append(end - start)

    def failure(self, start, end, reason):
        with self.lock:
            if len(self.fail) < 100_000:
                self.fail.append((start, end, reason[:120]))

    def bump(self, key, n=1):
        with self.lock:
            self.extra[key] = self.extra.get(key, 0) + n

    def add_to_set(self, key, value):
        with self.lock:
            self.extra.setdefault(key, set()).add(value)

    def result(self):
        lat = sorted(self.lat)

        def pct(q):
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3, 2) if lat else None
        extra = {k: (sorted(v) if isinstance(v, set) else v) for k, v in self.extra.items()}
        return dict(ok=self.ok, fail=self.fail, p50_ms=pct(0.5), p99_ms=pct(0.99), extra=extra)


def reason_of(e):
    text = str(e).replace("\n", " ")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class SniHTTPSConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1:port with the given SNI, verified against the soak CA."""

    def __init__(self, port, sni, ctx):
        super().__init__(HOST, port, timeout=IO_TIMEOUT)
        self.sni, self.ctx = sni, ctx

    def connect(self):
        sock = socket.create_connection((HOST, self.port), timeout=IO_TIMEOUT)
        self.sock = self.ctx.wrap_socket(sock, server_hostname=self.sni)


def client_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx


def expect_identity(host, headers):
    """Acceptable first words of the backend's answer for a request to `host`."""
    if host == WEB:
        return {"service=webapp version=v1"}
    if host == CATALOG:
        if headers.get("x-dark-launch") == "v2":
            return {"service=catalog version=v2"}
        return {"service=catalog version=v1", "service=catalog version=v2"}
    if host == VICTIM:
        return {"service=victim version=v1"}
    raise ValueError(host)


def http_exchange(conn, host, path, headers):
    """One GET; returns None when the answer is right, else the reason."""
    conn.request("GET", path, headers={"Host": host, **headers})
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    if resp.status != 200:
        return f"status {resp.status} {body[:60].strip()}"
    parts = body.rstrip("\n").split(" ", 2)
    identity = " ".join(parts[:2])
    echoed = parts[2] if len(parts) == 3 else ""
    if identity not in expect_identity(host, headers) or echoed != path:
        return f"wrong body {body[:80].strip()!r}"
    return None


def paced(interval, stop, deadline):
    """Yields once per `interval` seconds until `stop` is set or `deadline` passes."""
    nxt = time.monotonic()
    while not stop.is_set() and time.time() < deadline:
        yield
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            stop.wait(min(delay, 1.0))
        else:
            nxt = time.monotonic()


def http_worker(kind, cfg, stats, stop, deadline, tid):
    """HTTP or HTTPS requests, keep-alive or a new connection for each."""
    rnd = random.Random(f"{kind}-{tid}-{os.getpid()}")
    tls = kind.startswith("https")
    keep = kind.endswith("keepalive")
    hosts = [VICTIM] if kind.startswith("victim") else [WEB, CATALOG]
    ctx = client_context(cfg["ca"]) if tls else None
    port = cfg["https_port"] if tls else cfg["http_port"]
    conn = None
    seq = 0
    for _ in paced(cfg["interval"][kind], stop, deadline):
        seq += 1
        # A TLS keep-alive connection serves the host its SNI named.
        host = hosts[tid % len(hosts)] if tls and keep else rnd.choice(hosts)
        headers = {}
        if host == CATALOG and rnd.random() < 0.3:
            headers["x-dark-launch"] = "v2"
        if not keep:
            headers["Connection"] = "close"
        path = f"/soak/{kind}/{os.getpid()}-{tid}/{seq}"
        start = time.time()
        try:
            if conn is None or (tls and conn.sni != host):
                if conn is not None:
                    conn.close()
                conn = (SniHTTPSConnection(port, host, ctx) if tls
                        else http.client.HTTPConnection(HOST, port, timeout=IO_TIMEOUT))
                conn.connect()
                stats.bump("connections")
                if tls and host == WEB:
                    serial = conn.sock.getpeercert().get("serialNumber", "?")
                    stats.add_to_set("webapp_leaf_serials", serial)
            reason = http_exchange(conn, host, path, headers)
        except Exception as e:  # every failure is counted with its reason
            reason = reason_of(e)
            if conn is not None:
                conn.close()
            conn = None
        end = time.time()
        if reason is None:
            stats.success(start, end)
        else:
            stats.failure(start, end, f"{host}: {reason}")
        if not keep and conn is not None:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def passthrough_worker(kind, cfg, stats, stop, deadline, tid):
    """A new TLS connection through PASSTHROUGH for each request, verified end to end: the
    certificate is the backend's own (simple-sni-1), the body echoes the path."""
    ctx = client_context(cfg["ca"])
    seq = 0
    for _ in paced(cfg["interval"][kind], stop, deadline):
        seq += 1
        path = f"/soak/{kind}/{os.getpid()}-{tid}/{seq}"
        start = time.time()
        conn = SniHTTPSConnection(cfg["https_port"], SNI_PASS, ctx)
        stats.bump("connections")
        try:
            conn.connect()
            subject = dict(x[0] for x in conn.sock.getpeercert()["subject"])
            conn.request("GET", path, headers={"Host": SNI_PASS, "Connection": "close"})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            if resp.status != 200:
                reason = f"status {resp.status}"
            elif body != f"service=simple-tls-service-1 version=tls {path}\n":
                reason = f"wrong body {body[:80]!r}"
            elif subject.get("commonName") != SNI_PASS:
                reason = f"wrong certificate {subject}"
            else:
                reason = None
        except Exception as e:
            reason = reason_of(e)
        finally:
            conn.close()
        end = time.time()
        if reason is None:
            stats.success(start, end)
        else:
            stats.failure(start, end, reason)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def tcp_worker(kind, cfg, stats, stop, deadline, tid):
    """tcp-short: connect, 4 echoed exchanges of 1-16 KiB, close. tcp-stream: one connection
    for the whole soak, an exchange every interval (reconnects are failures)."""
    rnd = random.Random(f"{kind}-{tid}-{os.getpid()}")
    long_lived = kind == "tcp-stream"
    sock = None
    for _ in paced(cfg["interval"][kind], stop, deadline):
        start = time.time()
        try:
            if sock is None:
                sock = socket.create_connection((HOST, cfg["tcp_port"]), timeout=IO_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                stats.bump("connections")
            for _ in range(1 if long_lived else 4):
                data = rnd.randbytes(rnd.randint(1, 16384))
                sock.sendall(data)
                if recv_exact(sock, len(data)) != data:
                    raise ValueError("echoed bytes differ")
            reason = None
        except Exception as e:
            reason = reason_of(e)
            if sock is not None:
                sock.close()
            sock = None
        if not long_lived and sock is not None:
            sock.close()
            sock = None
        end = time.time()
        if reason is None:
            stats.success(start, end)
        else:
            stats.failure(start, end, reason)
    if sock is not None:
        sock.close()


def slowloris_worker(kind, cfg, stats, stop, deadline, tid):
    """Holds a connection with a partial request head, one more byte every `trickle` seconds.
    Records how the gateway ends it (if it does) and opens another; never a failure by itself."""
    tls = kind == "slowloris-https"
    ctx = client_context(cfg["ca"]) if tls else None
    host = WEB
    while not stop.is_set() and time.time() < deadline:
        opened = time.time()
        sock = None
        try:
            raw = socket.create_connection(
                (HOST, cfg["https_port"] if tls else cfg["http_port"]), timeout=IO_TIMEOUT)
            sock = ctx.wrap_socket(raw, server_hostname=host) if tls else raw
            stats.bump("connections")
            sock.sendall(f"GET /slowloris HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode())
            outcome = None
            while not stop.is_set() and time.time() < deadline:
                pending = tls and sock.pending()
                readable = pending or select.select([sock], [], [], cfg["trickle"])[0]
                if readable:
                    # Non-blocking: a TLS 1.3 session ticket makes the socket readable
                    # without any application data.
                    sock.settimeout(0.0)
                    try:
                        data = sock.recv(4096)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    finally:
                        sock.settimeout(IO_TIMEOUT)
                    first = data.split(b"\r\n", 1)[0].decode(errors="replace")
                    outcome = f"answered {first[:40]}" if data else "closed"
                    break
                sock.sendall(b"a")
                stats.bump("bytes_trickled")
            if outcome:
                held = time.time() - opened
                stats.bump(f"cut by gateway ({outcome})")
                stats.add_to_set("held_seconds", round(held))
        except Exception as e:
            stats.bump(f"error {reason_of(e)[:60]}")
            stop.wait(1.0)
        finally:
            if sock is not None:
                sock.close()


WORKERS = {
    "http-keepalive": http_worker, "http-new": http_worker,
    "https-keepalive": http_worker, "https-new": http_worker,
    "passthrough": passthrough_worker,
    "tcp-short": tcp_worker, "tcp-stream": tcp_worker,
    "victim-keepalive": http_worker, "victim-new": http_worker,
    "slowloris-http": slowloris_worker, "slowloris-https": slowloris_worker,
}


def worker_process(kind, threads, cfg, stop, deadline, out):
    stats = Stats()
    ts = [threading.Thread(target=WORKERS[kind], args=(kind, cfg, stats, stop, deadline, i),
                           daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.1, deadline + 2 * IO_TIMEOUT + 5 - time.time()))
    out.put((kind, threads, stats.result()))


# ------------------------------------------------------------------------------------------
# gateway observation


def proc_sample(pid):
    """(VmRSS in KiB, open fds); (0, 0) once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return 0, 0
    return rss, fds


def fd_kinds(pid):
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":", 1)[0] if ":" in target else "file"
        kind = target if kind in ("anon_inode",) else kind
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def fetch(url, timeout=3.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric_sum(text, name, label_filter=None):
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if label_filter and label_filter not in line:
                continue
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


class Gateway:
    def __init__(self, a):
        self.pid = a.gateway_pid
        self.admin = f"http://{HOST}:{a.admin_port}"
        self.metrics = f"http://{HOST}:{a.metrics_port}/stats/prometheus"

    def generation(self):
        return json.loads(fetch(self.admin + "/config_dump"))["generation"]

    def prom(self):
        return fetch(self.metrics)

    def alive(self):
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False


# ------------------------------------------------------------------------------------------
# churn: reloads, rotations, the victim backend


class Churn:
    def __init__(self, a, gw):
        self.a, self.gw = a, gw
        self.log = []            # (time, what, detail)
        self.reloads = self.rotations = 0
        self.reload_applied = self.rotation_applied = 0
        self.apply_ms = []
        self.problems = []
        self.victim_window = None
        self.ca = os.path.join(a.certs_dir, "ca/ca.crt")

    def wait_generation(self, before, limit=5.0):
        end = time.time() + limit
        while time.time() < end:
            g = self.gw.generation()
            if g > before:
                return g
            time.sleep(0.01)
        return None

    def reload(self, n):
        before = self.gw.generation()
        t0 = time.time()
        atomic_write(os.path.join(self.a.config_dir, RELOADED_FILE), render_reloaded(n),
                     self.a.stage_dir)
        self.reloads += 1
        g = self.wait_generation(before)
        if g is None:
            self.problems.append(f"reload {n}: generation stayed {before} for 5 s")
            return
        self.apply_ms.append((time.time() - t0) * 1e3)
        if g != before + 1:
            self.problems.append(f"reload {n}: generation went {before} -> {g}")
        # A new connection must see the new route.
        end = time.time() + 3
        seen = None
        while time.time() < end:
            try:
                conn = http.client.HTTPConnection(HOST, self.a.http_port, timeout=IO_TIMEOUT)
                conn.request("GET", "/soak/reload-check", headers={"Host": WEB,
                                                                   "Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                seen = resp.getheader("x-soak-reload")
                if seen == str(n):
                    self.reload_applied += 1
                    return
            except Exception as e:
                seen = reason_of(e)
            time.sleep(0.05)
        self.problems.append(f"reload {n}: x-soak-reload is {seen!r}, not {n}, after 3 s")

    def rotate(self, n):
        crt, key, serial = new_leaf(self.a.certs_dir, os.path.join(self.a.stage_dir, "leaves"),
                                    n)
        before = self.gw.generation()
        t0 = time.time()
        install_credential(os.path.join(self.a.certs_dir, "webapp-credential"), crt, key,
                           f"rotation-{n}")
        self.rotations += 1
        g = self.wait_generation(before)
        if g is None:
            self.problems.append(f"rotation {n}: generation stayed {before} for 5 s")
            return
        self.apply_ms.append((time.time() - t0) * 1e3)
        if g != before + 1:
            self.problems.append(f"rotation {n}: generation went {before} -> {g}")
        want = f"{serial:X}"
        ctx = client_context(self.ca)
        end = time.time() + 3
        seen = None
        while time.time() < end:
            try:
                raw = socket.create_connection((HOST, self.a.https_port), timeout=IO_TIMEOUT)
                with ctx.wrap_socket(raw, server_hostname=WEB) as s:
                    seen = s.getpeercert()["serialNumber"].lstrip("0")
                if seen == want:
                    self.rotation_applied += 1
                    return
            except Exception as e:
                seen = reason_of(e)
            time.sleep(0.05)
        self.problems.append(f"rotation {n}: new handshakes show serial {seen}, not {want}")

    def kill_victim(self):
        with open(self.a.victim_pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)
        t_kill = time.time()
        self.log.append((t_kill, "victim killed", pid))
        return t_kill

    def restart_victim(self, t_kill):
        proc = subprocess.Popen(json.loads(self.a.victim_cmd), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        with open(self.a.victim_pid_file, "w") as f:
            f.write(str(proc.pid))
        end = time.time() + 10
        while time.time() < end:
            try:
                socket.create_connection((HOST, self.a.victim_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        t_up = time.time()
        self.victim_window = (t_kill, t_up + self.a.victim_grace)
        self.log.append((t_up, "victim restarted", proc.pid))


# ------------------------------------------------------------------------------------------
# the run


def fmt_kb(kb):
    return f"{kb / 1024:.1f} MiB"


def cmd_run(a):
    gw = Gateway(a)
    load_s = a.duration
    warmup = min(a.warmup, load_s / 4)
    threads = {
        "http-keepalive": 4, "http-new": 2, "https-keepalive": 2, "https-new": 2,
        "passthrough": 2, "tcp-short": 2, "tcp-stream": 2,
        "victim-keepalive": 1, "victim-new": 1,
        "slowloris-http": a.slowloris - a.slowloris // 2, "slowloris-https": a.slowloris // 2,
    }
    # Target requests per second per thread (scaled by --rate).
    rate = {"http-keepalive": 60, "http-new": 40, "https-keepalive": 50, "https-new": 25,
            "passthrough": 20, "tcp-short": 20, "tcp-stream": 5,
            "victim-keepalive": 20, "victim-new": 20}
    cfg = dict(http_port=a.http_port, https_port=a.https_port, tcp_port=a.tcp_port,
               ca=os.path.join(a.certs_dir, "ca/ca.crt"), trickle=a.trickle,
               interval={k: 1.0 / (v * a.rate) for k, v in rate.items()})

    rss0, fd0 = proc_sample(gw.pid)
    kinds0 = fd_kinds(gw.pid)
    prom0 = gw.prom()
    gen0 = gw.generation()
    reloads0 = metric_sum(prom0, "tollgate_config_reloads_total") or 0
    print(f"pre-load: RSS {fmt_kb(rss0)}, {fd0} fds, generation {gen0}", flush=True)

    stop = mp.Event()
    out = mp.Queue()
    t_start = time.time()
    deadline = t_start + load_s
    procs = []
    for kind, n in threads.items():
        if n <= 0:
            continue
        p = mp.Process(target=worker_process, args=(kind, n, cfg, stop, deadline, out),
                       daemon=True)
        p.start()
        procs.append(p)

    churn = Churn(a, gw)
    samples = []

    def sample(label, scrape=True):
        """RSS and fds; with `scrape`, also a metrics scrape, as Prometheus would do, so
        the warm-up level already holds what rendering the exposition costs."""
        rss, fds = proc_sample(gw.pid)
        active = None
        if scrape:
            try:
                active = metric_sum(gw.prom(), "tollgate_downstream_connections_active")
            except Exception:
                pass
        samples.append((time.time() - t_start, label, rss, fds, active))
        return rss, fds

    # Timeline: the reloads and rotations spread over the load from its start (so the warm-up
    # level is the steady state of every activity) to 90 % of it; the victim killed at 45 %.
    churn_start = t_start + 3
    churn_end = t_start + load_s * 0.9
    events = []
    total = a.reloads + a.rotations
    every = max(1, total // max(1, a.rotations)) if a.rotations else total + 1
    r = k = 0
    for i in range(total):
        if a.rotations and (i + 1) % every == 0 and k < a.rotations:
            k += 1
            events.append(("rotate", k))
        elif r < a.reloads:
            r += 1
            events.append(("reload", r))
        else:
            k += 1
            events.append(("rotate", k))
    span = max(1.0, churn_end - churn_start)
    step = span / max(1, total)
    kill_at = t_start + max(warmup + 5, load_s * 0.45)
    restart_at = None
    warm = None
    next_sample = t_start + 2.5
    i = 0
    problems = []
    try:
        while time.time() < deadline:
            now = time.time()
            if not gw.alive():
                problems.append("the gateway process died during the load")
                break
            if warm is None and now >= t_start + warmup:
                # The warm-up level: the median of the samples of its second half and this one
                # (RSS moves in allocator-sized steps of about 2 MiB).
                sample("warm-up")
                level = sorted(x[2] for x in samples if x[0] >= warmup / 2)
                warm = (level[len(level) // 2], samples[-1][3])
                print(f"warm-up ({warmup:.0f} s): RSS {fmt_kb(warm[0])} (median of "
                      f"{len(level)} samples), {warm[1]} fds", flush=True)
            elif now >= next_sample:
                sample("load")
                next_sample = now + (2.5 if warm is None else 5)
            if kill_at is not None and now >= kill_at:
                t_kill = churn.kill_victim()
                restart_at = t_kill + a.victim_down
                kill_at = None
                print(f"t={now - t_start:.0f}s victim backend killed", flush=True)
            if restart_at is not None and now >= restart_at:
                churn.restart_victim(t_kill)
                restart_at = None
                print(f"t={time.time() - t_start:.0f}s victim backend restarted", flush=True)
            if i < len(events) and now >= churn_start + i * step:
                what, n = events[i]
                i += 1
                try:
                    churn.reload(n) if what == "reload" else churn.rotate(n)
                except Exception as e:
                    churn.problems.append(f"{what} {n}: {reason_of(e)}")
                if i % 10 == 0:
                    print(f"t={time.time() - t_start:.0f}s churn {i}/{len(events)} "
                          f"(reloads {churn.reloads}, rotations {churn.rotations})", flush=True)
                continue
            time.sleep(0.05)
        # Whatever the deadline cut short still happens (bounded), so the counts are whole.
        while i < len(events) and gw.alive():
            what, n = events[i]
            i += 1
            churn.reload(n) if what == "reload" else churn.rotate(n)
        if restart_at is not None:
            churn.restart_victim(t_kill)
    finally:
        stop.set()
    results = {}
    collect_end = time.time() + 2 * IO_TIMEOUT + 10 + a.trickle
    while len(results) < len(procs) and time.time() < collect_end:
        try:
            kind, n, res = out.get(timeout=max(0.1, collect_end - time.time()))
            results[kind] = (n, res)
        except Exception:
            break
    for p in procs:
        p.join(max(0.1, collect_end - time.time()))
        if p.is_alive():
            p.terminate()
    t_stop = time.time()
    print(f"load stopped after {t_stop - t_start:.0f} s; waiting up to {a.idle_wait:.0f} s "
          f"for connections to close", flush=True)

    # Post-load: wait (bounded) until the fds are back to the pre-load count (idle pooled
    # upstream connections close after 3 s), settle a second and sample; then scrape.
    fd_limit = fd0 + a.fd_margin
    idle_end = time.time() + a.idle_wait
    if gw.alive():
        sample("stopped", scrape=False)
    while time.time() < idle_end and gw.alive():
        if proc_sample(gw.pid)[1] <= fd0:
            break
        time.sleep(0.2)
    idle_s = time.time() - t_stop
    time.sleep(1.0)
    alive = gw.alive()
    rss1, fd1 = sample("after", scrape=False) if alive else (0, 0)
    kinds1 = fd_kinds(gw.pid) if alive else {}
    prom1 = gw.prom() if alive else ""
    active = metric_sum(prom1, "tollgate_downstream_connections_active") if alive else None
    # Information only: an idle gateway keeps the pages a scrape touched (a few MiB, the
    # allocator's, not a leak: repeated scrapes plateau); the samples under load, like "after",
    # are taken before their scrape.
    rss_scraped = sample("scraped", scrape=False)[0] if alive else 0
    gen1 = gw.generation() if alive else 0
    reloads1 = metric_sum(prom1, "tollgate_config_reloads_total") or 0
    reload_errors = metric_sum(prom1, "tollgate_config_reloads_total", 'result="error"') or 0

    # ---- judgement
    vw = churn.victim_window
    rows = []
    failures_unexplained = 0
    victim_explained = victim_after = 0
    reasons = {}
    total_ok = total_fail = 0
    for kind in threads:
        if kind not in results:
            if threads[kind] > 0:
                problems.append(f"worker {kind} reported nothing")
            continue
        n, res = results[kind]
        if kind.startswith("slowloris"):
            continue
        explained = unexplained = 0
        for start, end, reason in res["fail"]:
            in_window = vw is not None and end >= vw[0] and start <= vw[1]
            if kind.startswith("victim") and in_window:
                explained += 1
                continue
            unexplained += 1
            reasons.setdefault((kind, re.sub(r"\d{4,}", "N", reason)), []).append(
                round(start - t_start, 1))
        if kind.startswith("victim") and vw is not None:
            victim_explained += explained
        total_ok += res["ok"]
        total_fail += unexplained
        failures_unexplained += unexplained
        rows.append((kind, n, res["extra"].get("connections", 0), res["ok"], unexplained,
                     explained, res["p50_ms"], res["p99_ms"]))
    # The victim must work again after its restart: successes after the window.
    victim_recovered = False
    if vw is not None:
        victim_after = 0
        for kind in ("victim-keepalive", "victim-new"):
            if kind in results:
                fails_after = [f for f in results[kind][1]["fail"] if f[0] > vw[1]]
                victim_after += len(fails_after)
        victim_recovered = victim_after == 0

    serials = set()
    for kind in ("https-new", "https-keepalive"):
        if kind in results:
            serials.update(results[kind][1]["extra"].get("webapp_leaf_serials", []))
    slow = {}
    for kind in ("slowloris-http", "slowloris-https"):
        if kind in results:
            slow[kind] = results[kind][1]["extra"]

    made = churn.reloads + churn.rotations
    counted = reloads1 - reloads0
    warm_rss, warm_fds = warm if warm else (rss0, fd0)
    judgements = [
        ("gateway alive at the end", alive, "yes" if alive else "NO"),
        ("failed requests outside the victim window", failures_unexplained == 0,
         f"{failures_unexplained} of {total_ok + total_fail}"),
        ("victim failed while down, and only then", victim_explained > 0 and victim_recovered,
         f"{victim_explained} in the window, {victim_after} after it"),
        ("reloads counted by the gateway == made", counted == made and gen1 - gen0 == made,
         f"{counted:.0f} counted (generation {gen0} -> {gen1}), {made} made "
         f"({churn.reloads} config, {churn.rotations} certificate)"),
        ("every reload reached new connections", churn.reload_applied == a.reloads,
         f"{churn.reload_applied} of {a.reloads}"),
        ("every rotation reached new handshakes", churn.rotation_applied == a.rotations,
         f"{churn.rotation_applied} of {a.rotations}"),
        ("no reload with errors", reload_errors == 0, f"{reload_errors:.0f}"),
        (f"RSS after <= {1 + a.rss_margin:.2f} x warm-up", rss1 <= warm_rss * (1 + a.rss_margin),
         f"{fmt_kb(rss1)} vs {fmt_kb(warm_rss)} ({rss1 / max(1, warm_rss):.3f} x; "
         f"{fmt_kb(rss_scraped)} after one more scrape)"),
        (f"fds after <= pre-load + {a.fd_margin}", fd1 <= fd_limit,
         f"{fd1} vs {fd0} pre-load ({warm_fds} at warm-up)"),
        ("no open downstream connection after", not active,
         f"{active:.0f} active" if active is not None else "metric missing"),
        ("churn problems", not churn.problems, f"{len(churn.problems)}"),
        ("other problems", not problems, f"{len(problems)}"),
    ]

    # ---- summary
    print()
    print(f"== soak summary: {load_s:.0f} s of load, {total_ok + total_fail + victim_explained} "
          f"requests/exchanges ==")
    print(f"{'kind':<17}{'threads':>8}{'conns':>8}{'ok':>9}{'failed':>8}{'victim-down':>12}"
          f"{'p50 ms':>9}{'p99 ms':>9}")
    for kind, n, conns, ok, bad, expl, p50, p99 in rows:
        print(f"{kind:<17}{n:>8}{conns:>8}{ok:>9}{bad:>8}{expl:>12}{p50 or '-':>9}"
              f"{p99 or '-':>9}")
    print()
    if reasons:
        print("failures outside the victim window (kind: reason x count, first times in s):")
        for (kind, reason), times in sorted(reasons.items(), key=lambda x: -len(x[1]))[:20]:
            print(f"  {kind}: {reason} x{len(times)} at {times[:5]}")
        print()
    if vw:
        print(f"victim: killed at t={vw[0] - t_start:.1f}s, window until t={vw[1] - t_start:.1f}s "
              f"(restart + {a.victim_grace:.0f} s grace); {victim_explained} failures in it")
    if churn.apply_ms:
        ms = sorted(churn.apply_ms)
        print(f"change to new generation: median {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms "
              f"over {len(ms)} changes")
    print(f"distinct webapp leaf certificates seen by HTTPS clients: {len(serials)}")
    for kind, extra in slow.items():
        held = extra.get("held_seconds", [])
        cuts = {k: v for k, v in extra.items() if k.startswith(("cut", "error"))}
        print(f"{kind}: {extra.get('connections', 0)} connections, "
              f"{extra.get('bytes_trickled', 0)} bytes trickled, {cuts or 'never cut'}"
              f"{f', held {min(held)}-{max(held)} s before the cut' if held else ''}")
    print("gateway over time (t s: RSS MiB / fds / active downstream connections):")
    cells = [f"{t:.0f}{'' if label == 'load' else ' ' + label}: {rss / 1024:.1f}/{fds}/"
             f"{'-' if active is None else int(active)}"
             for t, label, rss, fds, active in samples]
    for row in range(0, len(cells), 6):
        print("  " + ", ".join(cells[row:row + 6]))
    print(f"pre-load {fmt_kb(rss0)} / {fd0} fds {kinds0}; warm-up {fmt_kb(warm_rss)} / {warm_fds}"
          f" fds; after (idle {idle_s:.1f} s) {fmt_kb(rss1)} / {fd1} fds {kinds1}")
    for p in churn.problems[:20] + problems:
        print(f"problem: {p}")
    print()
    width = max(len(j[0]) for j in judgements)
    failed = 0
    for name, ok, detail in judgements:
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    print()
    print(f"soak: {len(judgements) - failed} passed, {failed} failed")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("free-ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("setup")
    for name in ("config-dir", "certs-dir", "demo-certs"):
        p.add_argument(f"--{name}", required=True)
    for name in ("web", "cat1", "cat2", "victim", "echo", "tls"):
        p.add_argument(f"--{name}", type=int, required=True)
    p = sub.add_parser("backend-http")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--version", default="v1")
    p = sub.add_parser("backend-tls")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p = sub.add_parser("run")
    p.add_argument("--gateway-pid", type=int, required=True)
    for name in ("http-port", "https-port", "tcp-port", "admin-port", "metrics-port",
                 "victim-port"):
        p.add_argument(f"--{name}", type=int, required=True)
    for name in ("config-dir", "certs-dir", "stage-dir", "victim-pid-file", "victim-cmd"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--duration", type=float, default=210, help="seconds of load")
    p.add_argument("--warmup", type=float, default=30)
    p.add_argument("--reloads", type=int, default=50)
    p.add_argument("--rotations", type=int, default=10)
    p.add_argument("--victim-down", type=float, default=10)
    p.add_argument("--victim-grace", type=float, default=1.0)
    p.add_argument("--slowloris", type=int, default=6)
    p.add_argument("--trickle", type=float, default=3.0, help="seconds between slowloris bytes")
    p.add_argument("--rate", type=float, default=1.0, help="scales every client's rate")
    p.add_argument("--idle-wait", type=float, default=12)
    p.add_argument("--rss-margin", type=float, default=0.10)
    p.add_argument("--fd-margin", type=int, default=4)
    a = ap.parse_args()
    if a.cmd == "free-ports":
        print(" ".join(map(str, free_ports(a.n))))
    elif a.cmd == "setup":
        cmd_setup(a)
    elif a.cmd == "backend-http":
        cmd_backend_http(a)
    elif a.cmd == "backend-tls":
        cmd_backend_tls(a)
    elif a.cmd == "run":
        sys.exit(cmd_run(a))


if __name__ == "__main__":
    main()
