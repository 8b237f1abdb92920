#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 / Ubuntu machine that already has
# Rust: PostgreSQL server binaries (15 preferred), psql, pgbouncer and python3, MariaDB server
# and client (src/testkit/mariadb.rs), the real
# drivers of tests/pg_drivers.rs (psycopg 3, asyncpg, Django, SQLAlchemy, node-postgres, Sequelize, knex, pgjdbc with HikariCP and Spring JDBC, a JDK) and of
# the MySQL tests (PyMySQL, mysql-connector-python, mysql2, MariaDB Connector/J), and for
# tests/pg_regress.rs the PostgreSQL source and PGXS (see the end of this file), and curl,
# Chromium and grpcio for the HTTP edge's tests.
# Idempotent: does nothing (and touches no package list) when everything is present.
# The tests run their own servers on free ports; they never use a packaged service.
set -euo pipefail

log() { echo "install-deps: $*" >&2; }

# Same search order as src/testkit/pg.rs: $SWITCHYARD_PG_BIN, /usr/lib/postgresql/15/bin,
# the newest /usr/lib/postgresql/*/bin, then PATH.
find_pg_bin() {
    if [ -n "${SWITCHYARD_PG_BIN:-}" ]; then
        [ -x "$SWITCHYARD_PG_BIN/initdb" ] && { echo "$SWITCHYARD_PG_BIN"; return 0; }
        return 1
    fi
    if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    local d best=""
    for d in $(ls -1 /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n); do
        [ -x "/usr/lib/postgresql/$d/bin/initdb" ] && best="/usr/lib/postgresql/$d/bin"
    done
    [ -n "$best" ] && { echo "$best"; return 0; }
    d=$(command -v initdb 2>/dev/null) && { dirname "$d"; return 0; }
    return 1
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

missing=()
if ! find_pg_bin >/dev/null; then missing+=(server); fi
if ! have psql; then missing+=(postgresql-client); fi
if ! have pgbouncer; then missing+=(pgbouncer); fi
if ! have python3; then missing+=(python3); fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        log "missing ${missing[*]} and not root (no sudo): install them by hand"
        exit 1
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    pkgs=()
    for m in "${missing[@]}"; do
        if [ "$m" = server ]; then
            if apt-cache show postgresql-15 >/dev/null 2>&1; then
                pkgs+=(postgresql-15)
            else
                pkgs+=(postgresql)
            fi
        else
            pkgs+=("$m")
        fi
    done
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
    # The packages may start services (postgresql on 5432, pgbouncer on 6432) that the tests
    # never use: stop the ones this run installed.
    for m in "${missing[@]}"; do
        case "$m" in
            server) "${SUDO[@]}" service postgresql stop >/dev/null 2>&1 || true ;;
            pgbouncer) "${SUDO[@]}" service pgbouncer stop >/dev/null 2>&1 || true ;;
        esac
    done
fi

pg_bin=$(find_pg_bin) || { log "PostgreSQL server binaries not found"; exit 1; }
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    # As root the test harness runs the servers as this unprivileged user.
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
log "PostgreSQL binaries: $pg_bin ($("$pg_bin/postgres" --version 2>/dev/null || echo unknown))"

# MariaDB (src/testkit/mariadb.rs): mariadbd, mariadb-install-db, mariadb and mariadb-admin from
# Debian (10.11 on Debian 12). The package may start a service on 3306 and initialises
# /var/lib/mysql; the tests never use either: they run their own servers on free ports.
if ! have mariadbd || ! have mariadb-install-db || ! have mariadb || ! have mariadb-admin; then
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        log "missing mariadb-server/mariadb-client and not root (no sudo): install them by hand"
        exit 1
    fi
    log "installing: mariadb-server mariadb-client"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends mariadb-server mariadb-client >&2
    "${SUDO[@]}" service mariadb stop >/dev/null 2>&1 || true
    for t in mariadbd mariadb-install-db mariadb mariadb-admin; do
        have "$t" || { log "$t not found after installing mariadb-server"; exit 1; }
    done
fi
if [ "$(id -u)" -eq 0 ] && ! id mysql >/dev/null 2>&1; then
    # As root the test harness runs mariadbd with --user=mysql.
    useradd --system --no-create-home --shell /usr/sbin/nologin mysql
fi
log "MariaDB: $(mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version 2>/dev/null || echo unknown)"

# The metrics test parses /metrics with the reference Prometheus parser.
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    log "installing python package prometheus_client"
    python3 -m pip install --quiet prometheus_client >&2 || python3 -m pip install --quiet --break-system-packages prometheus_client >&2
fi

# Real-driver tests (tests/pg_drivers.rs): psycopg 3, asyncpg, Django and SQLAlchemy from PyPI, node-postgres from
# npm into tests/drivers/node, pgjdbc and a JDK from Debian. A driver that cannot be installed
# fails this script: the driver tests never skip silently.
pip_install() {
    python3 -m pip install --quiet "$@" >&2 || python3 -m pip install --quiet --break-system-packages "$@" >&2
}
if ! python3 -c 'import psycopg; psycopg.pq.version()' >/dev/null 2>&1; then
    log "installing python package psycopg[binary]"
    pip_install 'psycopg[binary]>=3.1'
fi
if ! python3 -c 'import asyncpg' >/dev/null 2>&1; then
    log "installing python package asyncpg"
    pip_install asyncpg
fi
if ! python3 -c 'import django' >/dev/null 2>&1; then
    log "installing python package Django"
    pip_install 'Django>=4.2'
fi
# With its asyncio extra: SQLAlchemy 2.1 no longer installs greenlet, which its asyncio
# engines (the asyncpg scenario) need.
if ! python3 -c 'import sqlalchemy, greenlet; assert sqlalchemy.__version__ >= "2"' >/dev/null 2>&1; then
    log "installing python package SQLAlchemy (asyncio)"
    pip_install 'SQLAlchemy[asyncio]>=2.0,<3'
fi
python3 -c 'import psycopg, asyncpg, django, sqlalchemy, greenlet' || { log "psycopg/asyncpg/Django/SQLAlchemy/greenlet still not importable"; exit 1; }
# MySQL drivers (tests/mysql_proxy.rs, tests/mysql_drivers.rs, tests/mysql_faults.rs): PyMySQL
# and mysql-connector-python from PyPI, MariaDB Connector/J from Debian, mysql2 from npm.
if ! python3 -c 'import pymysql' >/dev/null 2>&1; then
    log "installing python package PyMySQL"
    pip_install PyMySQL
fi
if ! python3 -c 'import mysql.connector' >/dev/null 2>&1; then
    log "installing python package mysql-connector-python"
    pip_install mysql-connector-python
fi
python3 -c 'import pymysql, mysql.connector' || { log "PyMySQL/mysql-connector-python still not importable"; exit 1; }

# gRPC server and client (grpcio, the C-core implementation) for tests/edge_grpc.rs.
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
    log "installing python package grpcio"
    pip_install grpcio
fi
python3 -c 'import grpc' || { log "grpcio still not importable"; exit 1; }

apt_missing=()
if ! have javac || ! have java; then apt_missing+=(default-jdk-headless); fi
if [ ! -f /usr/share/java/postgresql.jar ]; then apt_missing+=(libpostgresql-jdbc-java); fi
# Spring's JDBC transactions over HikariCP, as Debian packages them (pgjdbc's Spring scenario).
if [ ! -f /usr/share/java/HikariCP.jar ]; then apt_missing+=(libhikaricp-java); fi
if [ ! -f /usr/share/java/slf4j-nop.jar ]; then apt_missing+=(libslf4j-java); fi
if [ ! -f /usr/share/java/spring3-jdbc.jar ] || [ ! -f /usr/share/java/spring3-transaction.jar ]; then
    apt_missing+=(libspring-jdbc-java libspring-transaction-java)
fi
if [ ! -f /usr/share/java/mariadb-java-client.jar ]; then apt_missing+=(libmariadb-java); fi
if ! have node || ! have npm; then apt_missing+=(nodejs npm); fi
# PHP's mysqlnd (PDO, mysqli): tests/drivers/mysql/scenarios.php.
if ! have php || ! php -m 2>/dev/null | grep -qx pdo_mysql; then apt_missing+=(php-cli php-mysql); fi
# PHP's pdo_pgsql (Laravel's and Doctrine's driver): tests/drivers/php/scenarios.php.
if ! have php || ! php -m 2>/dev/null | grep -qx pdo_pgsql; then apt_missing+=(php-cli php-pgsql); fi
# Perl's DBI on DBD::Pg: tests/drivers/perl/scenarios.pl.
if ! perl -MDBD::Pg -e 1 >/dev/null 2>&1; then apt_missing+=(libdbd-pg-perl); fi
# Active Record (Rails' ORM) on ruby-pg and on mysql2: tests/drivers/ruby/scenarios.rb.
if ! have ruby || ! ruby -e 'require "active_record"; require "pg"; require "mysql2"' >/dev/null 2>&1; then
    apt_missing+=(ruby ruby-activerecord ruby-pg ruby-mysql2)
fi
# The HTTP edge's tests (tests/edge.rs): curl for HTTP/2 over TLS, headless Chromium for the
# browser test (a page over TLS with a WebSocket and two routes through the edge).
if ! have curl; then apt_missing+=(curl); fi
# The fuzz crate's libFuzzer (checked by scripts/test.sh) is C++.
if ! have g++; then apt_missing+=(g++); fi
if ! have chromium; then apt_missing+=(chromium); fi
# openssl: the MySQL RSA key exchange test writes a key with it and decrypts with it.
if ! have openssl; then apt_missing+=(openssl); fi
# haproxy: the load balancer that sends the PROXY protocol headers in the proxy_protocol tests.
if ! have haproxy; then apt_missing+=(haproxy); fi
# libnss-wrapper: the edge's DNS re-resolution test answers name lookups from its own hosts file.
if [ ! -e /usr/lib/x86_64-linux-gnu/libnss_wrapper.so ] && ! ls /usr/lib/*/libnss_wrapper.so >/dev/null 2>&1; then
    apt_missing+=(libnss-wrapper)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        log "missing ${apt_missing[*]} and not root (no sudo): install them by hand"
        exit 1
    fi
    log "installing: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${apt_missing[@]}" >&2
fi
for t in java javac node npm curl chromium php ruby haproxy; do
    have "$t" || { log "$t not found after installing"; exit 1; }
done
for j in postgresql HikariCP slf4j-api slf4j-nop spring3-jdbc spring3-transaction spring3-core spring3-beans commons-logging; do
    [ -f "/usr/share/java/$j.jar" ] || { log "/usr/share/java/$j.jar missing"; exit 1; }
done
[ -f /usr/share/java/mariadb-java-client.jar ] || { log "/usr/share/java/mariadb-java-client.jar missing"; exit 1; }

# MariaDB Connector/Python (server-side cursors, COM_STMT_FETCH): built by pip against MariaDB
# Connector/C, whose headers and mariadb_config come with libmariadb-dev.
if ! python3 -c 'import mariadb' >/dev/null 2>&1; then
    if ! have mariadb_config; then
        log "installing: libmariadb-dev"
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get install -y -q --no-install-recommends libmariadb-dev >&2 \
            || { "${SUDO[@]}" apt-get update -q >&2 && "${SUDO[@]}" apt-get install -y -q --no-install-recommends libmariadb-dev >&2; }
    fi
    log "installing python package mariadb"
    pip_install mariadb
fi
python3 -c 'import mariadb' || { log "MariaDB Connector/Python (mariadb) still not importable"; exit 1; }

node_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/drivers/node"
if [ ! -d "$node_dir/node_modules/pg" ] || [ ! -d "$node_dir/node_modules/mysql2" ] ||
    [ ! -d "$node_dir/node_modules/mariadb" ] || [ ! -d "$node_dir/node_modules/playwright-core" ] ||
    [ ! -d "$node_dir/node_modules/postgres" ] || [ ! -d "$node_dir/node_modules/sequelize" ] ||
    [ ! -d "$node_dir/node_modules/knex" ]; then
    log "installing node-postgres, postgres.js, Sequelize, knex, mysql2, mariadb and playwright-core into $node_dir"
    (cd "$node_dir" && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; }) >&2
fi
[ -d "$node_dir/node_modules/pg" ] || { log "node-postgres (pg) not installed in $node_dir"; exit 1; }
[ -d "$node_dir/node_modules/postgres" ] || { log "postgres.js (postgres) not installed in $node_dir"; exit 1; }
[ -d "$node_dir/node_modules/sequelize" ] || { log "Sequelize not installed in $node_dir"; exit 1; }
[ -d "$node_dir/node_modules/knex" ] || { log "knex not installed in $node_dir"; exit 1; }
[ -d "$node_dir/node_modules/mysql2" ] || { log "mysql2 not installed in $node_dir"; exit 1; }
# playwright-core drives Debian's Chromium in tests/edge.rs (it downloads no browser).
[ -d "$node_dir/node_modules/playwright-core" ] || { log "playwright-core not installed in $node_dir"; exit 1; }
# PostgreSQL's own regression suite (tests/pg_regress.rs, tests/pg_regress/run.sh) needs the
# source of the installed server package (through a deb-src entry), postgresql-server-dev-N of
# exactly that version (PGXS and pg_regress) and a C toolchain; run.sh --prepare then builds
# the test modules once into a cache. A problem here is reported, not fatal: the rest of the
# suite does not need it, and the pg_regress test fails with the reason.
regress_sh="$(cd "$(dirname "$0")/.." && pwd)/tests/pg_regress/run.sh"
pg_regress_deps() {
    local major server_pkg server_ver dev_pkg dev_ver
    major=$("$pg_bin/postgres" --version 2>/dev/null | sed -E 's/.* ([0-9]+)\.[0-9]+.*/\1/')
    server_pkg="postgresql-$major"
    server_ver=$(dpkg-query -W -f='${Version}' "$server_pkg" 2>/dev/null || true)
    if [ -z "$server_ver" ]; then
        log "pg_regress: $server_pkg is not an installed Debian package; set PG_REGRESS_SRC to a PostgreSQL $major source tree to run tests/pg_regress.rs"
        return 0
    fi
    if bash "$regress_sh" --is-prepared 2>/dev/null &&
        [ "$(dpkg-query -W -f='${Version}' "postgresql-server-dev-$major" 2>/dev/null)" = "$server_ver" ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        log "pg_regress: needs postgresql-server-dev-$major=$server_ver, gcc, make, bzip2 and a deb-src entry; not root (no sudo): install them by hand"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # A deb-src twin of the distribution's own deb822 sources (debian.sources / ubuntu.sources)
    # or of the official "deb" lines of sources.list, unless the source is already known.
    if ! apt-cache showsrc "$server_pkg" 2>/dev/null | grep -qx "Version: $server_ver"; then
        local src_list=/etc/apt/sources.list.d/switchyard-deb-src.sources
        local f
        for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/ubuntu.sources; do
            [ -f "$f" ] || continue
            if ! grep -qE '^Types:.*deb-src' "$f"; then
                sed -E 's/^Types:.*/Types: deb-src/' "$f" | "${SUDO[@]}" tee "$src_list" >/dev/null
            fi
        done
        if [ ! -f "$src_list" ] && [ -f /etc/apt/sources.list ]; then
            grep -E '^deb https?://' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
                "${SUDO[@]}" tee /etc/apt/sources.list.d/switchyard-deb-src.list >/dev/null
        fi
        log "pg_regress: added a deb-src entry; apt-get update"
        "${SUDO[@]}" apt-get update -q >&2 || true
    fi
    dev_pkg="postgresql-server-dev-$major"
    dev_ver=$(dpkg-query -W -f='${Version}' "$dev_pkg" 2>/dev/null || true)
    local pkgs=()
    [ "$dev_ver" = "$server_ver" ] || pkgs+=("$dev_pkg=$server_ver")
    have gcc || pkgs+=(gcc)
    have make || pkgs+=(make)
    have bzip2 || pkgs+=(bzip2)
    if [ ${#pkgs[@]} -gt 0 ]; then
        log "pg_regress: installing ${pkgs[*]}"
        if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; then
            "${SUDO[@]}" apt-get update -q >&2 || true
            "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2 || {
                log "pg_regress: could not install ${pkgs[*]} (is $server_ver still in the archive?)"
                return 1
            }
        fi
    fi
    # Fetches the source of exactly $server_ver and builds regress.so, autoinc.so, refint.so.
    bash "$regress_sh" --prepare >&2
}
pg_regress_deps || log "pg_regress: not ready; tests/pg_regress.rs will fail (SWITCHYARD_SKIP_PG_REGRESS=1 skips it)"
