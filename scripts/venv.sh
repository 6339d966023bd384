# Sourced by the other scripts: make sure .venv exists and has the project installed.
# Usage: . scripts/venv.sh [extras]   (extras: "test" for the test tools)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11 or newer is needed (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
EXTRAS="${1:-}"
SPEC="$ROOT"
[ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
LOCK="$ROOT/requirements/action.txt"
# Reinstall only when the project's dependencies, its lock or its packaging changed.
# datasette_action/__init__.py holds the version (pyproject reads it): a bump reinstalls the metadata.
STAMP="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$LOCK" "$ROOT/datasette_action/__init__.py" | sha256sum | cut -c1-16)-${EXTRAS:-base}"
if [ ! -f "$STAMP" ]; then
  # The engine's runtime dependencies at the versions the action installs (scripts/lock), checked
  # against their hashes; then the project and its extras, constrained to those same versions.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
    --only-binary :all: -r "$LOCK" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  CONSTRAINTS="$VENV/.action-constraints.txt"
  sed -e 's/ *\\$//' -e '/^ *--hash/d' -e '/^ *#/d' "$LOCK" > "$CONSTRAINTS"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS" -e "$SPEC" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/python" -c "import datasette_action" # fail here if the install failed
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
