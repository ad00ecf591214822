# shellcheck shell=bash
# A real S3-compatible server for the tests, sourced by scripts/test: s3s-fs from
# crates.io (a server that checks SigV4 signatures and keeps objects in a directory),
# installed once into the build cache outside the clone, started on a free loopback
# port with a temporary root and fixed test credentials, with its bucket created.
# Exports NIMBUS_TEST_S3_* for the S3 tests (crates/store/src/blobs/conformance.rs).

# The newest s3s-fs that builds with the machine's rustc (0.15+ need rustc 1.96).
S3S_FS_VERSION=0.14.1

# Installs s3s-fs into "$1/tools" unless it is there; prints the binary's path. A
# failed install is an error under CI=true; elsewhere the S3 tests are skipped, loudly.
install_s3s_fs() {
  local root="$1/tools/s3s-fs-$S3S_FS_VERSION"
  local bin="$root/bin/s3s-fs"
  if [ ! -x "$bin" ]; then
    echo "installing s3s-fs $S3S_FS_VERSION into $root (about 5 minutes on 2 cores, once)" >&2
    local started=$SECONDS
    # Its own temporary target directory: nothing of it mixes with the workspace's.
    if ! env -u CARGO_TARGET_DIR cargo install s3s-fs --version "$S3S_FS_VERSION" \
      --features binary --locked --quiet --root "$root" >&2; then
      if [ "${CI:-}" = true ]; then
        echo "error: could not install s3s-fs $S3S_FS_VERSION: the S3 tests need it" >&2
        return 1
      fi
      echo "WARNING: could not install s3s-fs: the S3 blob tests will be SKIPPED" >&2
      return 0
    fi
    echo "installed s3s-fs in $((SECONDS - started)) s" >&2
  fi
  echo "$bin"
}

# Starts s3s-fs (binary "$1") with its data under a new directory in "$2", creates the
# bucket, and exports NIMBUS_TEST_S3_*. Sets S3_PID and S3_DIR for stop_s3.
start_s3() {
  local bin="$1" python="${NIMBUS_TEST_PYTHON:-python3}"
  S3_DIR=$(mktemp -d "$2/s3-data.XXXXXX")
  local key=nimbus-test secret=nimbus-test-secret bucket=nimbus-test port
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # The root must exist before the server starts: it opens it at once.
  mkdir -p "$S3_DIR/root"
  "$bin" --host 127.0.0.1 --port "$port" --access-key "$key" --secret-key "$secret" \
    "$S3_DIR/root" >"$S3_DIR/server.log" 2>&1 &
  S3_PID=$!
  local endpoint="http://127.0.0.1:$port" empty_sha256
  empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  # Ready when it answers a signed CreateBucket (s3s wants the payload hash sent).
  local tries=0 status=000
  while [ "$status" != 200 ]; do
    if ! kill -0 "$S3_PID" 2>/dev/null || [ $tries -ge 100 ]; then
      echo "error: s3s-fs did not start on $endpoint; its log:" >&2
      cat "$S3_DIR/server.log" >&2
      return 1
    fi
    sleep 0.1
    tries=$((tries + 1))
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$endpoint/$bucket" \
      --aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" \
      -H "x-amz-content-sha256: $empty_sha256" || true)
  done
  export NIMBUS_TEST_S3_ENDPOINT="$endpoint" NIMBUS_TEST_S3_BUCKET="$bucket" \
    NIMBUS_TEST_S3_ACCESS_KEY_ID="$key" NIMBUS_TEST_S3_SECRET_ACCESS_KEY="$secret" \
    NIMBUS_TEST_S3_REGION=us-east-1
  echo "s3s-fs $S3S_FS_VERSION serving bucket $bucket at $endpoint"
}

# Stops the server start_s3 started and removes its data.
stop_s3() {
  if [ -n "${S3_PID:-}" ]; then
    kill "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=
  fi
  if [ -n "${S3_DIR:-}" ]; then
    rm -rf "$S3_DIR"
    S3_DIR=
  fi
}
