# Sourced by scripts/test and scripts/demo: installs what is missing, idempotently.
# Debian 12 as root: Debian packages through apt, Python packages into ./.venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

need_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The tests and the demo start their own servers on random loopback ports:
    # keep apt from starting the system services (prosody, ejabberd) meanwhile.
    local policy=/usr/sbin/policy-rc.d own_policy=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && own_policy=1
    fi
    local rc=0
    { apt-get update -qq \
        && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
    if [ -n "$own_policy" ]; then rm -f "$policy"; fi
    return "$rc"
  fi
}

need_venv() {
  local extras="${1:-}"
  if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "keysrv needs Python 3.11 or newer as python3" >&2
    exit 1
  fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    need_debs python3-venv
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed$extras"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> installing keysrv into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT$extras" 2>&1 \
      | { grep -v "^WARNING: Location .* is ignored" || true; } >&2
    touch "$stamp"
  fi
}

# The Prosody the tests and the demo start themselves (never the system service).
need_prosody() {
  need_debs prosody prosody-modules
}

# The ejabberd the integration suite starts itself (private Erlang node, never
# the system service).
need_ejabberd() {
  need_debs ejabberd
}
