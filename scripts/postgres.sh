# A throwaway PostgreSQL for the tests, sourced by scripts/test and scripts/with-postgres.
# `postgres_start` initialises a cluster in a temporary directory (as `nobody` when run as
# root: PostgreSQL refuses to run as root), starts it on a free loopback port with durability
# off (the data dies with the run), creates a database, exports NIMBUS_TEST_POSTGRES_URL and
# arranges for the server to be stopped and its directory removed when the shell exits.
# Without PostgreSQL's binaries it says so and returns 1; the caller decides whether that is
# fatal (CI) or a skip.

postgres_bindir() {
  local dir
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  # Debian keeps the server binaries off PATH, one directory per major version.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return
    fi
  done
  return 1
}

postgres_free_port() {
  "${python:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

postgres_stop() {
  if [ -n "${_pg_dir:-}" ]; then
    _pg_as "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$_pg_dir"
    _pg_dir=
  fi
}

postgres_start() {
  _pg_bin=$(postgres_bindir) || {
    echo "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql" >&2
    return 1
  }
  _pg_dir=$(mktemp -d -t nimbus-pg.XXXXXX)
  trap postgres_stop EXIT
  trap 'exit 130' INT TERM
  if [ "$(id -u)" = 0 ]; then
    chown nobody: "$_pg_dir"
    _pg_as() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups -- "$@"; }
  else
    _pg_as() { "$@"; }
  fi
  # An ICU default collation where the server has ICU, so the suite would notice a key
  # column that sorted by locale rather than byte by byte, as SQLite does.
  if ! _pg_as "$_pg_bin/initdb" -D "$_pg_dir/data" -U nimbus --auth=trust --no-sync --no-instructions \
      -E UTF8 --locale=C.UTF-8 --locale-provider=icu --icu-locale=en-US >"$_pg_dir/initdb.log" 2>&1; then
    rm -rf "$_pg_dir/data"
    _pg_as "$_pg_bin/initdb" -D "$_pg_dir/data" -U nimbus --auth=trust --no-sync --no-instructions \
      -E UTF8 --locale=C.UTF-8 >"$_pg_dir/initdb.log" 2>&1 || {
      cat "$_pg_dir/initdb.log" >&2
      echo "initdb failed" >&2
      return 1
    }
  fi
  local port attempt
  for attempt in 1 2 3; do
    port=$(postgres_free_port)
    if _pg_as "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" -w -t 30 -o \
        "-p $port -k $_pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null; then
      break
    fi
    port=
  done
  if [ -z "$port" ]; then
    cat "$_pg_dir/server.log" >&2
    echo "PostgreSQL did not start" >&2
    return 1
  fi
  _pg_as "$_pg_bin/createdb" -h 127.0.0.1 -p "$port" -U nimbus nimbus_test || return 1
  export NIMBUS_TEST_POSTGRES_URL="postgres://nimbus@127.0.0.1:$port/nimbus_test"
  echo "throwaway PostgreSQL $("$_pg_bin/pg_ctl" --version | awk '{print $3}') at $NIMBUS_TEST_POSTGRES_URL"
}
