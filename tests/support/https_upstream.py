"""An HTTPS upstream for tests/edge_tls.rs, on Python's ssl module (OpenSSL), so the edge's
TLS client meets a TLS implementation that is not its own.

    python3 https_upstream.py NAME CERT KEY [CLIENT_CA]

Prints the port it listens on (127.0.0.1, chosen by the system) and serves until stdin
closes. With CLIENT_CA, a client certificate signed by it is required. HTTP/1.1 with
keep-alive, one thread per connection:

    GET /whoami       JSON: name, connection number, TLS version, ALPN, SNI, client
                      certificate subject, Host header
    GET /big?n=N      N bytes (a repeating pattern)
    GET /healthz      200 "ok"
    GET /stats        JSON: handshakes done and failed
    POST /echo        the request body back
    GET /tunnel       with Upgrade: 101, then every byte read is sent back until the end
"""

import json
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, CERT, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
CLIENT_CA = sys.argv[4] if len(sys.argv) > 4 else None

lock = threading.Lock()
stats = {"handshakes": 0, "failed": 0}
conn_numbers = iter(range(1, 1 << 62))

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
ctx.set_alpn_protocols(["http/1.1"])
if CLIENT_CA:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(CLIENT_CA)


def remember_sni(sslobj, name, _ctx):
    sslobj.sni_name = name


ctx.sni_callback = remember_sni

PATTERN = bytes(range(256)) * 4096


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        raw = self.request
        raw.settimeout(30)
        try:
            self.request = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with lock:
                stats["failed"] += 1
            raw.close()
            raise
        with lock:
            stats["handshakes"] += 1
            self.conn_no = next(conn_numbers)
        super().setup()

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype="application/octet-stream", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/whoami":
            cert = self.request.getpeercert()
            subject = None
            if cert:
                subject = ",".join(
                    f"{k}={v}" for rdn in cert.get("subject", ()) for (k, v) in rdn
                )
            body = json.dumps(
                {
                    "name": NAME,
                    "conn": self.conn_no,
                    "tls": self.request.version(),
                    "alpn": self.request.selected_alpn_protocol(),
                    "sni": getattr(self.request, "sni_name", None),
                    "client_cert": subject,
                    "host": self.headers.get("Host"),
                }
            ).encode()
            self.answer(200, body, "application/json")
        elif path == "/big":
            n = int(dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("n", "0"))
            body = (PATTERN * (n // len(PATTERN) + 1))[:n]
            self.answer(200, body)
        elif path == "/healthz":
            self.answer(200, b"ok", "text/plain")
        elif path == "/stats":
            with lock:
                body = json.dumps(stats).encode()
            self.answer(200, body, "application/json")
        elif path == "/tunnel" and self.headers.get("Upgrade"):
            self.send_response(101)
            self.send_header("Upgrade", self.headers.get("Upgrade"))
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.request.recv(65536)
                if not data:
                    break
                self.request.sendall(data)
            self.close_connection = True
        else:
            self.answer(404, b"no such path", "text/plain")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.answer(200, body, "application/octet-stream", [("X-Got", str(len(body)))])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The test sends 24 requests at once; socketserver's default backlog of 5 drops SYNs
    # under load, and a connect retried after a second outlives the edge's connect timeout.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A refused handshake is counted in stats; nothing to print.
        pass


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
