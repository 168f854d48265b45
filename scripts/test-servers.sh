# Storage servers for the tests, sourced by scripts/test.sh: installs (once, into
# the cache) and starts an S3-compatible server (moto, from PyPI) and Azurite (from
# npm) on free ports of 127.0.0.1, exports their endpoints, and stops them on exit.
#   AUDIENCE_TEST_S3_ENDPOINT   http://127.0.0.1:<port>
#   AZURITE_BLOB_STORAGE_URL    http://127.0.0.1:<port>   (read by object_store's emulator mode)

tools="${AUDIENCE_CACHE:-$HOME/.cache/audience}/tools"
MOTO_VERSION=5.2.5
AZURITE_VERSION=3.35.0

install_test_servers() {
  mkdir -p "$tools"
  if ! "$tools/s3env/bin/python" -c "import moto.server" 2>/dev/null; then
    echo "installing moto[server]==$MOTO_VERSION (S3-compatible test server) into $tools/s3env"
    python3 -m venv "$tools/s3env"
    "$tools/s3env/bin/pip" install -q "moto[server]==$MOTO_VERSION"
  fi
  if [ ! -x "$tools/azurite/node_modules/.bin/azurite-blob" ]; then
    echo "installing azurite@$AZURITE_VERSION (Azure Blob test server) into $tools/azurite"
    mkdir -p "$tools/azurite"
    (cd "$tools/azurite" && npm init -y >/dev/null && npm install --no-fund --no-audit -s "azurite@$AZURITE_VERSION")
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # url name log
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not start; its log:" >&2
  cat "$3" >&2
  return 1
}

start_test_servers() {
  install_test_servers
  TEST_SERVERS_DIR=$(mktemp -d)
  local s3_port azure_port
  s3_port=$(free_port)
  "$tools/s3env/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$TEST_SERVERS_DIR/moto.log" 2>&1 &
  TEST_SERVER_PIDS="$!"
  azure_port=$(free_port)
  "$tools/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$azure_port" \
    --location "$TEST_SERVERS_DIR/azurite" --disableTelemetry --skipApiVersionCheck --silent \
    >"$TEST_SERVERS_DIR/azurite.log" 2>&1 &
  TEST_SERVER_PIDS="$TEST_SERVER_PIDS $!"
  trap stop_test_servers EXIT
  wait_for "http://127.0.0.1:$s3_port/" moto "$TEST_SERVERS_DIR/moto.log"
  wait_for "http://127.0.0.1:$azure_port/" azurite "$TEST_SERVERS_DIR/azurite.log"
  export AUDIENCE_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
  export AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$azure_port"
  export AUDIENCE_REQUIRE_TEST_SERVERS=1
  echo "test servers: moto at $AUDIENCE_TEST_S3_ENDPOINT, azurite at $AZURITE_BLOB_STORAGE_URL"
}

stop_test_servers() {
  # shellcheck disable=SC2086
  kill $TEST_SERVER_PIDS 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TEST_SERVERS_DIR"
}
