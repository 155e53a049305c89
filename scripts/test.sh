#!/usr/bin/env bash
# Installs everything, then runs the whole suite: lint (ruff), types (mypy), and pytest over
# every tier (unit; kernel and e2e in throwaway network namespaces, as root).
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
export PATH="$PWD/.venv/bin:$PATH"
# byte-compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on some CI machines)
# every netbay process of the suite would otherwise compile its modules again (~0.35 s each)
python -m compileall -q -j0 src tests benchmarks >/dev/null

echo "==> ruff"; ruff check src tests benchmarks
echo "==> mypy"; mypy
echo "==> pytest"
set +e
pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no test: that is a failure here" >&2
  exit 1
fi

# --- VM tier (issue 5) ------------------------------------------------------------------
# tests/vm (ipvlan, 802.1q vlan, dummy): natively where the kernel has those device types,
# else under QEMU in one boot (~2-3 min); skipped, loudly, only where neither works. Only on
# a full run: extra pytest arguments mean a chosen subset.
vm_code=0
if [ "$#" -eq 0 ]; then
  echo "==> vm tier"
  ./scripts/vm-tests.sh || vm_code=$?
fi
[ "$code" -ne 0 ] && exit "$code"
exit "$vm_code"
