#!/usr/bin/env bash
# The VM tier (tests/vm): ipvlan, 802.1q VLAN and dummy links, which this machine's kernel
# lacks. Runs `pytest -m vm tests/vm` natively where the running kernel makes those device
# types; otherwise boots Debian's stock kernel under QEMU (virtme-ng, this machine's own
# filesystem shared read-only, so the project's venv runs inside) and runs them all in ONE
# boot. Installs what it needs first (quick when present). Recipe and traps:
# ../shared/notes/kernel-vm.md. Run as root. Extra arguments go to pytest.
#
#   NETBAY_VM_RESULTS  where status, junit.xml and summary.txt go (default /tmp/netbay-vm)
#   NETBAY_VM_TIMEOUT  seconds the VM may take in all (default 900)
#   NETBAY_VM=force    boot the VM even where the kernel has the device types
#   NETBAY_VM_STRICT=1 fail instead of skipping (loudly) when neither way can run
#
# (`vm-tests.sh --inside DIR` is what runs in the guest: pytest, its status into DIR;
# `vm-tests.sh --install` only installs the prerequisites.)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv
results=${NETBAY_VM_RESULTS:-/tmp/netbay-vm}
limit=${NETBAY_VM_TIMEOUT:-900}

run_pytest() {  # run_pytest DIR ARGS...: the tier's pytest, output also in DIR/summary.txt
  local out=$1
  shift
  set +e
  "$venv/bin/python" -m pytest -m vm tests/vm -p no:cacheprovider -rA \
    --junitxml="$out/junit.xml" "$@" 2>&1 | tee "$out/summary.txt"
  local code=${PIPESTATUS[0]}
  set -e
  echo "$code" >"$out/status"
}

if [ "${1:-}" = "--inside" ]; then
  out=$2
  shift 2
  export PYTHONDONTWRITEBYTECODE=1  # the shared root filesystem is read-only in the guest
  echo "==> inside the VM: kernel $(uname -r)"
  run_pytest "$out" "$@"
  exit 0
fi

not_run() {  # neither natively nor in a VM: loud, and a failure only if asked for
  echo
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!! VM TIER NOT RUN !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! $1"
  echo "!!! tests/vm (ipvlan, 802.1q vlan, dummy) did not run: nothing was tested there"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  [ "${NETBAY_VM_STRICT:-0}" = 1 ] && exit 1
  exit 0
}

finish() {  # finish HOW SECONDS: report and exit with pytest's status
  local code
  code=$(cat "$results/status")
  echo "==> vm tier ($1): pytest exit $code in $2 s; junit: $results/junit.xml," \
    "summary: $results/summary.txt"
  if [ "$code" = 5 ]; then
    echo "vm tier: pytest collected no test: that is a failure here" >&2
    exit 1
  fi
  exit "$code"
}

native_kinds() {  # the running kernel makes all three device types (in a throwaway netns)
  unshare -n sh -c 'ip link add nbprobe1 type veth peer name nbprobe2 &&
    ip link add nbprobe0 type dummy &&
    ip link add link nbprobe1 name nbprobe1.10 type vlan id 10 &&
    ip link add link nbprobe1 name nbprobe3 type ipvlan mode l3' >/dev/null 2>&1
}

ensure_prerequisites() {
  local missing=() p
  for p in qemu-system-x86 linux-image-amd64 busybox-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> apt-get install ${missing[*]} (once: ~85 s, ~480 MB)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null || return 1
  fi
  if [ ! -x "$venv/bin/vng" ]; then
    echo "==> pip install virtme-ng"
    "$venv/bin/pip" install -q --disable-pip-version-check virtme-ng || return 1
  fi
}

[ "$(id -u)" = 0 ] || not_run "needs root"
[ -x "$venv/bin/python" ] || not_run "no project venv at $venv (run scripts/install.sh --test)"
if [ "${1:-}" = "--install" ]; then  # only the prerequisites (benchmarks/dataplane_vm.py)
  ensure_prerequisites
  exit
fi
rm -rf "$results"
mkdir -p "$results"
started=$SECONDS

if [ "${NETBAY_VM:-}" != force ] && native_kinds; then
  echo "==> vm tier natively: kernel $(uname -r) has ipvlan, 802.1q vlan and dummy"
  run_pytest "$results" "$@"
  finish native "$((SECONDS - started))"
fi

ensure_prerequisites || not_run "cannot install qemu-system-x86, linux-image-amd64, virtme-ng"
kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' | sort -V | tail -n 1)
[ -n "$kernel" ] || not_run "no Debian kernel image in /boot"
version=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$version" ] || not_run "no modules for $version in /lib/modules"

# Compile here what the guest would otherwise compile on every start (it cannot write
# the shared filesystem): the package, and pytest's rewritten test modules.
"$venv/bin/python" -m compileall -q src tests >/dev/null || true
"$venv/bin/python" -m pytest -m vm tests/vm --collect-only -q >/dev/null 2>&1 || true

echo "==> vm tier under QEMU: booting $kernel (TCG emulation; one boot for all tests)"
inner="cd $(printf %q "$root") && bash scripts/vm-tests.sh --inside $(printf %q "$results")"
[ "$#" -gt 0 ] && inner+=" $(printf '%q ' "$@")"
set +e
# vng crashes with stdin closed (CI): </dev/null. QEMU reopens its output truncating: | cat.
PATH="$venv/bin:$PATH" timeout -k 30 "$limit" vng --disable-kvm --force-9p --run "$kernel" \
  --user root --memory 1G --rwdir="$results" --exec "$inner" </dev/null 2>&1 | cat
set -e
if [ ! -s "$results/status" ]; then
  echo "vm tier: the VM wrote no status (timeout after ${limit} s, panic or boot failure)" >&2
  exit 1
fi
finish "QEMU, kernel $version" "$((SECONDS - started))"
