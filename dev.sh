#!/usr/bin/env bash
# edgefleet developer entry point: sets itself up on a fresh machine.
#   ./dev.sh demo   - local broker + controller (SQLite) + simulated fleet
#   ./dev.sh test   - lint, import contracts, type checks and the test-suite
#   ./dev.sh setup [extras]  - only create/refresh the virtualenv
set -euo pipefail
cd "$(dirname "$0")"

VENV="${EDGEFLEET_VENV:-.venv}"
PY="${PYTHON:-python3}"

log() { printf '\033[1m[dev]\033[0m %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; return 1; fi
}

ensure_system() {
    local missing=()
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    "$PY" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing system packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        # Debian starts the packaged broker on 1883; ours run on free ports, so leave it be.
    fi
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { log "Python >= 3.10 required"; exit 1; }
}

ensure_venv() {
    local extras="$1"
    local stamp="$VENV/.edgefleet-$(echo "$extras" | tr ',' '-')"
    local want
    want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtualenv $VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing edgefleet[$extras] (first run takes a few minutes)"
        "$VENV/bin/python" -m pip install -q -e ".[$extras]"
        echo "$want" >"$stamp"
    fi
}

cmd_setup() {
    ensure_system
    ensure_venv "${1:-controller,litert,compress,postgres,dev}"
}

cmd_demo() {
    ensure_system
    ensure_venv "controller,litert"
    exec "$VENV/bin/edgefleet" -v demo "$@"
}

cmd_test() {
    ensure_system
    ensure_venv "controller,litert,compress,postgres,dev"
    local bin="$VENV/bin"
    log "ruff"
    "$bin/ruff" check shared agent controller simulators tests benchmarks edgefleet_cli.py
    log "import contracts"
    "$bin/lint-imports"
    log "mypy --strict (shared, agent, controller, simulators)"
    "$bin/mypy" --strict shared agent controller simulators
    log "pytest"
    local rc=0
    "$bin/python" -m pytest -p no:cacheprovider "$@" || rc=$?
    if [ "$rc" = 5 ]; then log "pytest collected no tests"; exit 1; fi
    exit "$rc"
}

case "${1:-}" in
    setup) shift; cmd_setup "$@" ;;
    demo) shift; cmd_demo "$@" ;;
    test) shift; cmd_test "$@" ;;
    *) echo "usage: ./dev.sh {demo|test|setup} [args]"; exit 2 ;;
esac
