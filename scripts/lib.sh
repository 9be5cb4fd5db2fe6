# Shared helpers for Ordo's scripts: sourced, never run.
# Paths, the tool venv on PATH, and small checks. Nothing here installs.

ORDO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORDO_STATE_DIR="${ORDO_STATE_DIR:-$ORDO_ROOT/.ordo}"
ORDO_TOOLS_DIR="${ORDO_TOOLS_DIR:-$HOME/.cache/ordo-tools}"
export PATH="$ORDO_TOOLS_DIR/venv/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ordo-target}"

PG_ADMIN_URL="${ORDO_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/ordo}"
PROCESSOR_DATABASE_URL="${PROCESSOR_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/ordo_processor}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

apt_install() {
  say "installing $* (apt)"
  if [ -z "${ORDO_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    ORDO_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# True when something accepts TCP connections on host:port.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits up to $3 seconds (default 30) for host:port to accept connections.
wait_port() {
  local host=$1 port=$2 tries=$(( ${3:-30} * 10 ))
  while ! port_open "$host" "$port"; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || return 1
    sleep 0.1
  done
}

# host and port of a URL like scheme://user:pass@host:port/path
url_host() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; echo "${rest%%:*}"; }
url_port() {
  local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}
  if [[ $rest == *:* ]]; then echo "${rest##*:}"; else echo "$2"; fi
}
url_database() { local rest=${1#*://}; rest=${rest#*/}; echo "${rest%%\?*}"; }

# Makes a throwaway PKI in $1 with openssl: ca.crt (and ca.key), server.crt
# and server.key for 127.0.0.1 and localhost, client.crt and client.key.
# For TLS runs of the scripts; never for anything real.
make_test_pki() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=Ordo test CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null || return 1
  local name
  for name in server client; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=ordo-$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null || return 1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null || return 1
  done
  chmod 600 "$dir"/*.key
}
