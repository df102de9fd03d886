#!/usr/bin/env bash
# A throw-away PostgreSQL server for the learning store's tests (CI, or a developer's machine).
#
#   url=$(bash scripts/postgres_test_cluster.sh start DIR)   # prints a SQLAlchemy URL for it
#   KUBIK_TEST_POSTGRES_URL=$url make test                    # the store tests then use it
#   bash scripts/postgres_test_cluster.sh stop DIR            # stops it and deletes DIR
#
# start: finds a PostgreSQL server (Debian's /usr/lib/postgresql/<version>/bin, or initdb on the
# PATH); when there is none and we are root, installs Debian's `postgresql` package with apt-get
# (and drops the `main` cluster that the package creates, so nothing outlives the run). Then it
# creates a new cluster in DIR/data with initdb and starts it on 127.0.0.1 on a free port, with
# its socket in DIR. PostgreSQL refuses to run as root: as root the cluster belongs to the
# `postgres` system user that the package creates. The cluster holds test data only, so it
# trusts local TCP connections (it listens on 127.0.0.1 alone) and skips fsync.
# Everything but the URL goes to stderr.
set -euo pipefail

USER_NAME=kubik_test
DATABASE=kubik_test
MARKER=.kubik-postgres-test-cluster

say() { echo "postgres_test_cluster: $*" >&2; }
die() { say "$*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Run a PostgreSQL program as the cluster's owner (the postgres user when we are root).
as_owner() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

server_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
    if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; return 0; fi
    return 1
}

install_server() {
    is_root && command -v apt-get >/dev/null ||
        die "no PostgreSQL server found: install one (Debian: sudo apt-get install postgresql), or run as root to let this script install it"
    say "installing PostgreSQL from Debian's packages (apt-get install postgresql)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    # The package creates (and may start) a default cluster, `main`, on port 5432; it was made by
    # this install alone, so drop it: the tests use their own cluster.
    local version
    for version in $(ls /usr/lib/postgresql 2>/dev/null); do
        if [ -d "/etc/postgresql/$version/main" ]; then
            pg_dropcluster --stop "$version" main >/dev/null 2>&1 || say "note: could not drop the package's default cluster $version/main"
        fi
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 bindir port attempt
    bindir=$(server_bindir) || { install_server; bindir=$(server_bindir) || die "PostgreSQL was installed but initdb is not found"; }
    [ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || die "$dir is not empty: give a new or empty folder"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    touch "$dir/$MARKER"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "there is no 'postgres' user to run the server as (PostgreSQL refuses to run as root)"
        chown postgres: "$dir"
    fi
    as_owner test -w "$dir" || die "$dir is not writable by the server's user (is its parent folder closed to it?)"
    as_owner "$bindir/initdb" --pgdata="$dir/data" --username="$USER_NAME" --auth=trust \
        --encoding=UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
        die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
    # The last setting of a name wins, so each attempt appends its own port.
    as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
# throw-away test cluster (scripts/postgres_test_cluster.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        echo "port = $port" | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
        if as_owner "$bindir/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
                start >/dev/null 2>&1; then
            "$bindir/createdb" --host=127.0.0.1 --port="$port" --username="$USER_NAME" "$DATABASE" >&2
            say "$("$bindir/postgres" --version) runs on 127.0.0.1:$port (cluster $dir)"
            echo "postgresql+psycopg://$USER_NAME@127.0.0.1:$port/$DATABASE"
            return 0
        fi
        say "start on port $port failed (attempt $attempt): $(tail -n 2 "$dir/server.log" 2>/dev/null)"
    done
    die "PostgreSQL did not start; its log: $dir/server.log"
}

stop() {
    local dir=$1 bindir
    [ -d "$dir" ] || return 0
    # Never delete a folder this script did not make.
    [ -e "$dir/$MARKER" ] || die "$dir was not made by this script; leaving it alone"
    if [ -f "$dir/data/postmaster.pid" ] && bindir=$(server_bindir); then
        as_owner "$bindir/pg_ctl" --pgdata="$dir/data" --mode=fast --wait stop >/dev/null 2>&1 ||
            say "note: pg_ctl stop failed; see $dir/server.log"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 start DIR | stop DIR" ;;
esac
