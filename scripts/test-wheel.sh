#!/usr/bin/env bash
# make test-wheel: installs the wheel as a new user would -- a fresh virtual
# environment in a temporary directory outside the tree, no Go on PATH, only the
# package's own dependencies (numpy, pyarrow, scipy-openblas32; no torch) -- and
# runs tests/wheel/smoke.py there. pip's cache makes reruns fast.
#   $1   the wheel;  PY   the development Python (with torch) that writes the test model
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
whl=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PY:-$root/.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/exitnet-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

PYTHONPATH="$root/python" "$PY" "$root/tests/wheel/make_model.py" "$work"

# PATH without any directory that holds a go binary.
nogo=
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -n "$d" ] && [ ! -x "$d/go" ] && nogo="${nogo:+$nogo:}$d"
done
base=$("$PY" -c 'import sys; print(sys.base_prefix)')/bin/python3
cd "$work"
env -u GOROOT -u GOPATH -u GOFLAGS -u EXITNET_LIBRARY -u PYTHONPATH -u VIRTUAL_ENV PATH="$nogo" bash -c '
  set -euo pipefail
  "$1" -m venv venv
  venv/bin/python -m pip install -q --disable-pip-version-check "$2"
  PATH="$PWD/venv/bin:$PATH" venv/bin/python "$3" "$PWD"
' _ "$base" "$whl" "$root/tests/wheel/smoke.py"
