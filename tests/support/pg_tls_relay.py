"""A man in the middle for tests/backend_tls.rs: a TLS relay in front of a PostgreSQL server,
presenting a certificate of its own, on Python's ssl module (OpenSSL).

    python3 pg_tls_relay.py SERVER_PORT CERT KEY

Prints the port it listens on (127.0.0.1, chosen by the system) and serves until stdin
closes. Each connection must start with PostgreSQL's SSLRequest; the relay accepts it, runs
TLS with its own certificate, opens TLS to the server on 127.0.0.1:SERVER_PORT (without
checking the server's certificate) and passes the plaintext both ways. A login bound to the
certificate it sees (SCRAM-SHA-256-PLUS) cannot pass it: the server checks the binding
against its own certificate.
"""

import os
import select
import socket
import ssl
import struct
import sys
import threading

SERVER_PORT, CERT, KEY = int(sys.argv[1]), sys.argv[2], sys.argv[3]
SSL_REQUEST = struct.pack("!II", 8, 80877103)

server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_side.load_cert_chain(CERT, KEY)
client_side = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_side.check_hostname = False
client_side.verify_mode = ssl.CERT_NONE


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def relay(client):
    upstream = None
    try:
        client.settimeout(10)
        if recv_exact(client, 8) != SSL_REQUEST:
            return
        upstream = socket.create_connection(("127.0.0.1", SERVER_PORT), timeout=10)
        upstream.sendall(SSL_REQUEST)
        if recv_exact(upstream, 1) != b"S":
            return
        upstream = client_side.wrap_socket(upstream)
        client.sendall(b"S")
        client = server_side.wrap_socket(client, server_side=True)
        client.settimeout(None)
        upstream.settimeout(None)
        ends = {client: upstream, upstream: client}
        while True:
            ready = [s for s in ends if s.pending()]
            if not ready:
                ready, _, _ = select.select(list(ends), [], [], 30)
                if not ready:
                    return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                ends[s].sendall(data)
    except (OSError, ConnectionError, ssl.SSLError):
        pass
    finally:
        for s in (client, upstream):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def serve(listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=relay, args=(conn,), daemon=True).start()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
threading.Thread(target=serve, args=(listener,), daemon=True).start()
sys.stdin.read()
os._exit(0)
