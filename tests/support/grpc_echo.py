"""A gRPC server and client (grpcio, the C-core implementation) for tests/edge_grpc.rs.

    python3 grpc_echo.py serve NAME [CERT KEY]
        Prints the port it listens on (127.0.0.1) and serves service test.Echo until stdin
        closes; with CERT and KEY over TLS. Messages are raw bytes (no protobuf).
    python3 grpc_echo.py client TARGET [CA] [AUTHORITY]
        Runs every scenario against TARGET and prints one line per result; with CA over TLS
        (CA signs the server's certificate), with AUTHORITY as the :authority sent. Lines
        starting "servers " say which servers answered and differ between runs; every other
        line is the same for any server that behaves as this one. "END" comes last.
    python3 grpc_echo.py repeat TARGET COUNT PAUSE_MS
        COUNT unary calls PAUSE_MS apart; prints how many were answered, the failures, and
        over how many connections they reached the servers.
"""

import os
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"


def serve(name, cert=None, key=None):
    def unary(req, ctx):
        md = dict(ctx.invocation_metadata())
        ctx.send_initial_metadata((("x-server", name),))
        if "x-echo" in md:
            ctx.set_trailing_metadata((("x-echo-back", md["x-echo"]),))
        return name.encode() + b":" + req

    def stream(req, ctx):
        for i in range(int(req)):
            yield b"%d" % i

    def collect(it, ctx):
        n, total = 0, 0
        for m in it:
            n += 1
            total += len(m)
        return b"%d %d" % (n, total)

    def bidi(it, ctx):
        for m in it:
            yield m[::-1]

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + req.decode())

    def peer(req, ctx):
        # The caller's address: a new port is a new connection.
        return ctx.peer().encode()

    def slow(req, ctx):
        time.sleep(float(req))
        return b"late"

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Peer": grpc.unary_unary_rpc_method_handler(peer),
    }
    # MAX_AGE_MS: the server ends each connection after that long with a GOAWAY (gRPC's
    # max_connection_age, common in production), letting calls in flight finish.
    options = []
    if os.environ.get("MAX_AGE_MS"):
        age = int(os.environ["MAX_AGE_MS"])
        options += [("grpc.max_connection_age_ms", age), ("grpc.max_connection_age_grace_ms", 5000)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if cert:
        with open(cert, "rb") as c, open(key, "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0)


def client(target, ca=None, authority=None):
    options = [
        ("grpc.max_receive_message_length", 16 << 20),
        ("grpc.max_send_message_length", 16 << 20),
    ]
    if authority:
        options.append(("grpc.default_authority", authority))
        if ca:
            # The certificate is still checked against the host of the target.
            options.append(("grpc.ssl_target_name_override", target.rsplit(":", 1)[0]))
    if ca:
        with open(ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(target, creds, options)
    else:
        channel = grpc.insecure_channel(target, options)
    method = lambda kind, name: getattr(channel, kind)(f"/{SERVICE}/{name}")
    unary = method("unary_unary", "Unary")
    out = []

    def code_of(call):
        try:
            call()
            return "OK"
        except grpc.RpcError as e:
            return f"{e.code().name} {e.details()}"

    for n in [0, 1, 100, 65536, 1 << 20, 3 << 20]:
        body = bytes(i % 251 for i in range(n))
        resp, call = unary.with_call(body, metadata=(("x-echo", f"e{n}"),), timeout=20)
        _, _, echoed = resp.partition(b":")
        initial = dict(call.initial_metadata())
        trailing = dict(call.trailing_metadata())
        out.append(
            f"unary {n}: same={echoed == body} server_header={'x-server' in initial} "
            f"echo_back={trailing.get('x-echo-back')} code={call.code().name}"
        )

    got = [m for m in method("unary_stream", "Stream")(b"2000", timeout=20)]
    out.append(f"stream: {len(got)} first={got[0]!r} last={got[-1]!r}")

    msgs = (bytes([i % 256]) * 1000 for i in range(500))
    out.append(f"collect: {method('stream_unary', 'Collect')(msgs, timeout=20)!r}")

    sent = [b"message %d" % i for i in range(300)]
    back = list(method("stream_stream", "Bidi")(iter(sent), timeout=20))
    out.append(f"bidi: {len(back)} reversed={back == [m[::-1] for m in sent]}")

    out.append("fail: " + code_of(lambda: method("unary_unary", "Fail")(b"thing", timeout=20)))
    out.append("deadline: " + code_of(lambda: method("unary_unary", "Slow")(b"3", timeout=0.5)).split(" ")[0])
    out.append("unknown method: " + code_of(lambda: method("unary_unary", "Nope")(b"", timeout=20)).split(" ")[0])

    # Many calls at once on one channel (one HTTP/2 connection, multiplexed).
    calls = [unary.future(b"c%d" % i, timeout=20) for i in range(200)]
    names = [c.result().partition(b":")[0].decode() for c in calls]
    same = all(c.result().partition(b":")[2] == b"c%d" % i for i, c in enumerate(calls))
    out.append(f"concurrent: {len(calls)} all_answered_own={same}")
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out.append("servers " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    channel.close()
    print("\n".join(out) + "\nEND", flush=True)


def repeat(target, count, pause_ms):
    """COUNT unary calls PAUSE_MS apart on one channel; prints how many answered and how the
    others failed."""
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary(f"/{SERVICE}/Peer")
    ok, failed, peers = 0, [], set()
    for i in range(int(count)):
        try:
            peers.add(call(b"r%d" % i, timeout=10))
            ok += 1
        except grpc.RpcError as e:
            failed.append(f"{e.code().name} {e.details()}")
        time.sleep(int(pause_ms) / 1000)
    channel.close()
    print(f"answered: {ok}\nfailed: {failed}\nconnections: {len(peers)}\nEND", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:])
    elif sys.argv[1] == "repeat":
        repeat(*sys.argv[2:])
    else:
        client(*sys.argv[2:])
