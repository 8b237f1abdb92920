#!/usr/bin/env bash
# Writes small seed corpora to fuzz/corpus/<target>/seed-* (fuzz/corpus is not committed).
# Usage: fuzz/seeds.sh            (from anywhere; needs only bash, od and printf)
set -euo pipefail
cd "$(dirname "$0")"

# ---- byte helpers: everything is built as a hex string, written out at the end ----
hex_of() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }  # text -> hex
cs() { printf '%s00' "$(hex_of "$1")"; }                           # C string (NUL-terminated)
be32() { printf '%08x' "$1"; }
be16() { printf '%04x' "$1"; }
# msg TAG BODYHEX -> tagged message: tag, Int32 length (includes itself), body
msg() { printf '%s%s%s' "$(hex_of "$1")" "$(be32 $(( ${#2} / 2 + 4 )))" "$2"; }
# startup BODYHEX -> untagged packet: Int32 length then body
untagged() { printf '%s%s' "$(be32 $(( ${#1} / 2 + 4 )))" "$1"; }
# put TARGET NAME HEX
put() {
    mkdir -p "corpus/$1"
    printf '%b' "$(printf '%s' "$3" | sed 's/../\\x&/g')" > "corpus/$1/seed-$2"
}
put_text() { mkdir -p "corpus/$1"; printf '%s' "$3" > "corpus/$1/seed-$2"; }

# ---- pg_startup ----
startup=$(untagged "$(be32 196608)$(cs user)$(cs app)$(cs database)$(cs db)$(cs application_name)$(cs psql)00")
ssl=$(untagged "$(be32 80877103)")
gss=$(untagged "$(be32 80877104)")
put pg_startup startup "$startup"
put pg_startup ssl "$ssl"
put pg_startup ssl-then-startup "$ssl$startup"
put pg_startup gssenc-then-startup "$gss$startup"
put pg_startup cancel "$(untagged "$(be32 80877102)$(be32 4242)$(be32 2864434397)")"
put pg_startup protocol-3.2 "$(untagged "$(be32 196610)$(cs user)$(cs app)00")"
put pg_startup startup-no-params "$(untagged "$(be32 196608)00")"

# ---- pg_frontend ----
q() { msg Q "$(cs "$1")"; }
sync=$(msg S "")
put pg_frontend query "$(q 'SELECT 1;')"
put pg_frontend query-session "$(q "SET search_path = x; BEGIN; DISCARD ALL; DEALLOCATE PREPARE ALL")$(q "/* c */ select \$\$;\$\$, E'\\\\';' ; LISTEN ch")"
parse=$(msg P "$(cs s1)$(cs 'select $1::int, $2')$(be16 2)$(be32 23)$(be32 25)")
bind=$(msg B "$(cs p1)$(cs s1)$(be16 1)$(be16 0)$(be16 2)$(be32 1)31$(be32 4294967295)$(be16 1)$(be16 0)")
describe=$(msg D "$(hex_of P)$(cs p1)")
execute=$(msg E "$(cs p1)$(be32 0)")
close=$(msg C "$(hex_of S)$(cs s1)")
put pg_frontend extended "$parse$bind$describe$execute$sync$close$sync"
put pg_frontend unnamed "$(msg P "$(cs '')$(cs 'select 1')$(be16 0)")$(msg B "$(cs '')$(cs '')$(be16 0)$(be16 0)$(be16 0)")$(msg D "$(hex_of S)$(cs '')")$(msg E "$(cs '')$(be32 0)")$sync"
put pg_frontend flush-terminate "$(msg H "")$(msg X "")"
put pg_frontend copy "$(q 'COPY t FROM STDIN')$(msg d "$(hex_of $'1\t2\n')")$(msg c "")"

# ---- pg_backend ----
err=$(msg E "$(hex_of S)$(cs FATAL)$(hex_of V)$(cs FATAL)$(hex_of C)$(cs 28P01)$(hex_of M)$(cs 'password authentication failed for user "app"')00")
notice=$(msg N "$(hex_of S)$(cs NOTICE)$(hex_of C)$(cs 00000)$(hex_of M)$(cs hi)$(hex_of D)$(cs detail)00")
put pg_backend error "$err"
put pg_backend login "$(msg R "$(be32 0)")$(msg S "$(cs server_version)$(cs 16.2)")$(msg S "$(cs client_encoding)$(cs UTF8)")$(msg K "$(be32 7)$(be32 9)")$(msg Z "$(hex_of I)")"
put pg_backend query-result "$(msg 1 "")$(msg 2 "")$(msg T "$(be16 1)$(cs '?column?')$(be32 0)$(be16 0)$(be32 23)$(be16 4)$(be32 4294967295)$(be16 0)")$(msg D "$(be16 1)$(be32 1)31")$(msg C "$(cs 'SELECT 1')")$notice$(msg Z "$(hex_of T)")"
put pg_backend sasl "$(msg R "$(be32 10)$(cs SCRAM-SHA-256)00")$(msg R "$(be32 11)$(hex_of 'r=abc,s=QSXCR+Q6sek8bf92,i=4096')")"

# ---- sql_lexer ----
put_text sql_lexer select 'SELECT a, b FROM t WHERE c = 1; select 2'
put_text sql_lexer session 'SET LOCAL x = 1; set session y = 2; CREATE GLOBAL TEMP TABLE t (a int); RESET ALL'
put_text sql_lexer comments '/* a /* nested */ b */ -- line
INSERT INTO t VALUES (1) -- trailing'
put_text sql_lexer quotes $'select \'a;b\', "x;y", E\'\\\';\' ; begin; select U&"d\\0061t" from "t"""'
put_text sql_lexer dollar 'DO $body$ BEGIN; END $body$; select $1, $$;$$, $a1$ x $a1$; commit'
put_text sql_lexer unicode 'sélect ünïcode_ñame, "☃" from tæble; ДЕЛАЙ что-то'
put_text sql_lexer unterminated "select 'abc; /* x ; \$t\$ y"

# ---- scram_server (byte 0 = length of client-first; "%n" = the server's nonce) ----
first='n,,n=user,r=rOprNGfwEbeRWgbNEkqO'
put scram_server rfc7677 "$(printf '%02x' ${#first})$(hex_of "$first")$(hex_of 'c=biws,r=%n,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=')"
first='y,,n=,r=abc,x=1'
put scram_server y-flag "$(printf '%02x' ${#first})$(hex_of "$first")$(hex_of 'c=eSws,r=%n,e=1,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')"
first='p=tls-server-end-point,,n=,r=abc'
put scram_server channel-binding "$(printf '%02x' ${#first})$(hex_of "$first")$(hex_of 'c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=%n,p=AAAA')"
put scram_server verifier "00$(hex_of 'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')"
put scram_server md5 "00$(hex_of 'md5a3556571e93b0d20722ba62be61e8c2d')"

# ---- config_toml ----
put_text config_toml full '[general]
workers = 2
max_client_connections = 100
client_login_timeout = "2.5s"
max_message_bytes = 1048576
drain_timeout = "250ms"

[postgres]
listen = "127.0.0.1:6432"
pool_mode = "session"

[pool]
size = 4
checkout_timeout = "1m"
connect_timeout = "1h"
reset_query = "DISCARD ALL"

[[user]]
name = "app"
password = "secret"

[[user]]
name = "md5user"
md5_hash = "md5a3556571e93b0d20722ba62be61e8c2d"

[[user]]
name = "scram"
auth = "scram-sha-256"
scram_verifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

[[user]]
name = "dev"
auth = "trust"

[[cluster]]
name = "main"
protocol = "postgres"
database = "app"
backend_database = "app_prod"
primary = "127.0.0.1:5432"
replicas = ["[::1]:5433", "localhost:5434"]
user = "postgres"
password = "pg"
pool_size = 8
'
put_text config_toml minimal '[[cluster]]
name = "c"
database = "d"
primary = "localhost:5432"
user = "u"
'
put_text config_toml empty ''

# ---- pg_mux_answers: a batch of three then one statement alone (see fuzz_answers) ----
rd=$(msg T "$(be16 1)$(cs '?column?')$(be32 0)$(be16 0)$(be32 23)$(be16 4)$(be32 4294967295)$(be16 0)")
row=$(msg D "$(be16 1)$(be32 1)31")
cc=$(msg C "$(cs 'SELECT 1')")
ok="$(msg 1 "")$(msg 2 "")$rd$row$cc"
zi=$(msg Z "$(hex_of I)")
divzero=$(msg E "$(hex_of S)$(cs ERROR)$(hex_of C)$(cs 22012)$(hex_of M)$(cs 'division by zero')00")
put pg_mux_answers all-ok "$ok$ok$ok$zi$rd$row$cc$zi"
put pg_mux_answers batch-fails "$ok$(msg 1 "")$(msg 2 "")$divzero$zi$rd$row$cc$zi"
put pg_mux_answers commit-notice "$ok$ok$ok$(msg N "$(hex_of S)$(cs WARNING)$(hex_of C)$(cs 01000)00")$zi"

# ---- mysql_packet (framed) and mysql_handshake (selector byte + one payload) ----
le16() { printf '%02x%02x' $(( $1 & 255 )) $(( ($1 >> 8) & 255 )); }
le32() { printf '%s%s' "$(le16 $(( $1 & 65535 )))" "$(le16 $(( ($1 >> 16) & 65535 )))"; }
# mpkt SEQ PAYLOADHEX -> 3-byte little-endian length, sequence id, payload
mpkt() { local n=$(( ${#2} / 2 )); printf '%02x%02x%02x%02x%s' $(( n & 255 )) $(( (n >> 8) & 255 )) $(( n >> 16 )) "$1" "$2"; }
lenstr() { printf '%02x%s' $(( ${#1} / 2 )) "$1"; }   # short length-encoded string of HEX
# MySQL documentation examples: HandshakeV10 (5.5.2-m2) and HandshakeResponse41 (user pam).
my_hs="0a$(cs 5.5.2-m2)0b00000064764840492d434a00fff7080200000000000000000000000000002a34647c635a776b345e5d3a00"
my_resp="8da60f00000000010800000000000000000000000000000000000000000000007061$(printf '6d00')14ab09eef6bcb1323e61143865c0991d957d75d447$(hex_of test)00$(cs mysql_native_password)"
# MariaDB 10.11 handshake: CLIENT_MYSQL clear, extended capabilities 0x1d in the reserved bytes.
maria_hs="0a$(cs 5.5.5-10.11.6-MariaDB)2a000000$(hex_of abcdefgh)00fef7$(printf '2d')0200ffb915$(printf '000000000000')1d000000$(hex_of ijklmnopqrst)00$(cs mysql_native_password)"
ok_track="000001$(le16 16386)0000$(lenstr "")$(lenstr "0103$(lenstr "$(hex_of app)")0502$(lenstr "$(hex_of 1)")050a$(lenstr "$(hex_of ________)")")"
ok_track="00$(printf '0001')$(le16 16386)0000$(lenstr "")$(lenstr "0104$(lenstr "$(hex_of app)")020201310509$(lenstr "$(hex_of T_______)")")"
err="ff1504$(hex_of '#28000')$(hex_of "Access denied for user 'app'")"
eof="fe00000200"
attrs="$(lenstr "$(hex_of _client_name)")$(lenstr "$(hex_of libmysql)")$(lenstr "$(hex_of _os)")$(lenstr "$(hex_of Linux)")"
resp8="$(le32 $(( 0x3aa20d | (1 << 21) | (1 << 20) | (1 << 8) )))$(le32 16777216)ff$(printf '%046d' 0)$(cs app)$(lenstr "$(printf '07%.0s' {1..32})")$(cs shop)$(cs caching_sha2_password)$(lenstr "$attrs")"
put mysql_packet connect "$(mpkt 0 "$my_hs")$(mpkt 1 "$my_resp")$(mpkt 2 "fe$(cs mysql_native_password)$(hex_of 01234567890123456789)00")$(mpkt 3 "$(printf '07%.0s' {1..20})")$(mpkt 4 "$ok_track")"
put mysql_packet mariadb-connect "$(mpkt 0 "$maria_hs")$(mpkt 1 "$resp8")$(mpkt 2 0103)$(mpkt 3 000000020000)"
put mysql_packet query-result "$(mpkt 0 "03$(hex_of 'select 1')")$(mpkt 1 01)$(mpkt 2 "$(lenstr "$(hex_of def)")000000$(lenstr "$(hex_of 1)")$(lenstr "$(hex_of 1)")0c3f000100000008810000000000")$(mpkt 3 "$eof")$(mpkt 4 "$(lenstr 31)")$(mpkt 5 fb)$(mpkt 6 "$eof")"
put mysql_packet query-attrs "$(mpkt 0 "03020100$(printf '01')fe00$(lenstr "$(hex_of trace)")0800$(lenstr 6e)$(lenstr "$(hex_of abc)")0700000000000000$(hex_of 'select 2')")"
put mysql_packet prepared "$(mpkt 0 "16$(hex_of 'select ?')")$(mpkt 1 "000700000001000100000000")$(mpkt 0 "170700000000010000000001fe00$(lenstr 41)")$(mpkt 0 "18070000000000$(hex_of chunk)")$(mpkt 0 1c0700000064000000)$(mpkt 0 1a07000000)$(mpkt 0 1907000000)"
put mysql_packet commands "$(mpkt 0 "02$(hex_of shop)")$(mpkt 0 0e)$(mpkt 0 1f)$(mpkt 0 1b0100)$(mpkt 0 "11$(cs other)14$(printf '09%.0s' {1..20})$(cs db2)2d00$(cs mysql_native_password)$(lenstr "$attrs")")$(mpkt 0 01)"
put mysql_packet err-progress "$(mpkt 1 "$err")$(mpkt 1 "ffffff010103$(printf 'c80000')$(lenstr "$(hex_of 'copy to tmp table')")")$(mpkt 2 "fb$(hex_of /tmp/x.csv)")"
put mysql_packet continuation "$(printf 'ffffff00')"
put mysql_handshake mysql-handshake "ff$my_hs"
put mysql_handshake mariadb-handshake "00$maria_hs"
put mysql_handshake response41 "63$my_resp"
put mysql_handshake response-mysql8 "ff$resp8"
put mysql_handshake ssl-request "01$(le32 $(( 0x0aaa0d )))$(le32 16777216)2d$(printf '%046d' 0)"
put mysql_handshake auth-switch "00fe$(cs caching_sha2_password)$(hex_of 01234567890123456789)00"
put mysql_handshake ok-tracked "03$ok_track"
put mysql_handshake err "01$err"

# ---- mysql_backend: selector byte, then packets of a length byte (<= 127) and a payload ----
bpk() { printf '%02x%s' $(( ${#1} / 2 )) "$1"; }
okp="0000000200""0000"
coldef="$(lenstr "$(hex_of def)")000000$(lenstr "$(hex_of 1)")$(lenstr "$(hex_of 1)")0c3f000100000008810000000000"
put mysql_backend login-ok "00$(bpk "$maria_hs")$(bpk "$okp")"
put mysql_backend login-switch "00$(bpk "$maria_hs")$(bpk "fe$(cs mysql_native_password)$(hex_of 01234567890123456789)00")$(bpk "$okp")"
put mysql_backend login-sha2-full "00$(bpk "$my_hs")$(bpk "fe$(cs caching_sha2_password)$(hex_of 01234567890123456789)00")$(bpk 0104)$(bpk "01$(hex_of '-----BEGIN PUBLIC KEY-----')")"
put mysql_backend login-refused "00$(bpk "$maria_hs")$(bpk "$err")"
put mysql_backend answer-rows "00$(bpk 01)$(bpk "$coldef")$(bpk "$eof")$(bpk "$(lenstr 31)")$(bpk fb)$(bpk "$eof")"
put mysql_backend answer-multi "03$(bpk "00000008400000")$(bpk "$ok_track")"

# ---- edge_headers: selector byte, request headers, "--", response headers ----
put edge_headers cache-vary "00$(hex_of 'cache-control: max-age=60
accept-encoding: gzip
--
cache-control: s-maxage=10, max-age=5
vary: accept-encoding
age: 3
connection: keep-alive, x-a
x-a: 1')"
put edge_headers expires-head "01$(hex_of 'if-none-match: "v1"
--
expires: Thu, 01 Dec 1994 16:00:00 GMT
date: Thu, 01 Dec 1994 15:00:00 GMT
etag: "v1"')"

# ---- edge_h1: selector byte (bit 0: HEAD; the split point), then a response head or body ----
put edge_h1 chunked-head "00$(printf 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nVia: 1.0 a\r\nConnection: x-b\r\nX-B: 1\r\n\r\n' | od -An -tx1 | tr -d ' \n')"
put edge_h1 length-head "01$(printf 'HTTP/1.0 304 Not Modified\r\nConnection: keep-alive\r\nContent-Length: 10\r\n\r\n' | od -An -tx1 | tr -d ' \n')"
put edge_h1 chunked-body "05$(printf '4;x=y\r\nabcd\r\n0\r\nTrailer: 1\r\n\r\nHTTP/1.1' | od -An -tx1 | tr -d ' \n')"

# ---- proxy_header: PROXY protocol v1 lines and v2 blocks ----
put proxy_header v1-tcp4 "$(printf 'PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET /' | od -An -tx1 | tr -d ' \n')"
put proxy_header v1-unknown "$(printf 'PROXY UNKNOWN\r\n' | od -An -tx1 | tr -d ' \n')"
put proxy_header v2-inet "0d0a0d0a000d0a515549540a2111000cc0000207$(echo 0a000001)dc0401bb"
put proxy_header v2-inet6-tlv "0d0a0d0a000d0a515549540a21210027200100000000000000000000000000010000000000000000000000000000000115380000ea0000"
put proxy_header v2-local "0d0a0d0a000d0a515549540a20000000"

printf "seed corpus: %s files, %s bytes\n" "$(ls corpus/*/seed-* | wc -l)" "$(cat corpus/*/seed-* | wc -c)"
