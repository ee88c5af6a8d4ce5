# Sourced by scripts/run and scripts/test: make .venv hold exactly scripts/requirements.lock.
# First run: creates .venv and installs the pinned dependencies (a one-time pip install, mostly Ray).
# Later runs: one hash comparison, nothing installed.
set -euo pipefail
TICKVISOR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TICKVISOR_ROOT"
lock=scripts/requirements.lock
venv=.venv
stamp=$venv/.lock-sha256
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  py=${PYTHON:-}
  if [ -z "$py" ]; then
    for cand in python3.13 python3.12 python3.11 python3; do
      # stderr muted: a pyenv shim for a version not selected says "command not found" and exits 127.
      if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        py=$cand; break
      fi
    done
  fi
  if [ -z "$py" ]; then
    echo "tickvisor needs Python >= 3.11 on PATH (or set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  echo "bootstrap: creating $venv with $($py --version) and installing $lock ..." >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
  echo "$want" > "$stamp"
  echo "bootstrap: done" >&2
fi
export PATH="$TICKVISOR_ROOT/$venv/bin:$PATH"
export PYTHONPATH="$TICKVISOR_ROOT${PYTHONPATH:+:$PYTHONPATH}"
