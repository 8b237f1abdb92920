#!/usr/bin/env bash
# Memory per client connection of the HTTP edge against nginx as a reverse proxy: one
# upstream nginx serving two static files (1 KiB, 64 KiB), then a proxying nginx (1 worker,
# keep-alive to the upstream) and switchyard's edge (`workers = 1`, release build) in front
# of it; benches/conn_memory.py (PROTOCOL=http) opens N keep-alive connections to each and
# reads the resident set of nginx's worker and of switchyard at each step (connected, no
# request yet; one 1 KiB request each; one 64 KiB answer each; all closed). With TLS=1 both
# proxies serve HTTPS (a self-signed P-256 certificate; HTTP/1.1, the client offers no ALPN),
# switchyard on its HTTP/1.1 fast path.
#
#   cargo build --release && N=5000 benches/edge_memory.sh
#   cargo build --release && N=5000 TLS=1 benches/edge_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
command -v nginx >/dev/null || { echo "needs nginx: apt-get install nginx-light" >&2; exit 1; }
BIN=$(realpath "${1:-target/release/switchyard}")
want=$((N + 500))
[ "$(ulimit -n)" -ge "$want" ] || ulimit -n "$want"
TMP=$(mktemp -d /tmp/switchyard-edgemem.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
NG=$(free_port)
SY=$(free_port)
head -c 1024 /dev/urandom >"$TMP/1k.bin"
head -c 65536 /dev/urandom >"$TMP/64k.bin"
user=""
[ "$(id -u)" -eq 0 ] && user="user root;"
nginx_conf() { # NAME SERVER-BLOCK
    mkdir -p "$TMP/$1"
    cat >"$TMP/$1/nginx.conf" <<EOF
$user
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $want;
pid $TMP/$1/nginx.pid;
error_log $TMP/$1/error.log warn;
events { worker_connections $want; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_timeout 300s;
  keepalive_requests 100000;
  client_body_temp_path $TMP/$1/body;
  proxy_temp_path $TMP/$1/proxy;
  fastcgi_temp_path $TMP/$1/fastcgi;
  uwsgi_temp_path $TMP/$1/uwsgi;
  scgi_temp_path $TMP/$1/scgi;
$2
}
EOF
    nginx -p "$TMP/$1" -c "$TMP/$1/nginx.conf" -e "$TMP/$1/error.log" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
}
SCHEME=http
NG_SSL=""
SY_TLS=""
if [ "${TLS:-0}" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    SCHEME=https
    NG_SSL=" ssl; ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem; ssl_session_cache off"
    SY_TLS="tls_cert = \"$TMP/cert.pem\"
tls_key = \"$TMP/key.pem\""
fi
nginx_conf upstream "  server { listen 127.0.0.1:$UP; root $TMP; }"
nginx_conf proxy "  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NG$NG_SSL;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
cat >"$TMP/switchyard.toml" <<EOF
[general]
workers = 1
max_client_connections = $want

[[edge.listener]]
listen = "127.0.0.1:$SY"
max_connections = $want
idle_timeout = "300s"
$SY_TLS

[[edge.route]]
path = "/"
upstream = "web"

[[edge.upstream]]
name = "web"
servers = ["127.0.0.1:$UP"]
EOF
"$BIN" run --config "$TMP/switchyard.toml" >"$TMP/switchyard.log" 2>&1 &
SY_PID=$!
PIDS+=("$SY_PID")
for _ in $(seq 1 100); do
    curl -ksf "$SCHEME://127.0.0.1:$SY/1k.bin" -o /dev/null && curl -ksf "$SCHEME://127.0.0.1:$NG/1k.bin" -o /dev/null && break
    sleep 0.1
done
# nginx's worker: the child of the proxying master.
NG_MASTER=$(cat "$TMP/proxy/nginx.pid")
NG_WORKER=$(pgrep -P "$NG_MASTER" | head -1)
echo "| proxy | clients | step | RSS MiB | growth per client KiB |"
echo "|---|---|---|---|---|"
PROTOCOL=$SCHEME python3 benches/conn_memory.py nginx "$NG" "$NG_WORKER" "$N"
PROTOCOL=$SCHEME python3 benches/conn_memory.py switchyard "$SY" "$SY_PID" "$N"
