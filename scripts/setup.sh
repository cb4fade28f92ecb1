#!/usr/bin/env bash
# Set consultd up on a fresh Debian machine: system packages, a virtualenv with the
# package, and the built browser client. Idempotent; safe to run again.
#   scripts/setup.sh          the server
#   scripts/setup.sh --dev    the server plus what the tests and the bench need
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "$dev" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v redis-server >/dev/null || need+=(redis-server)
  # the imaging bench's side-by-side comparison (bench/orthanc.py runs its own instance)
  [ -x /usr/sbin/Orthanc ] && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
    || need+=(orthanc orthanc-dicomweb orthanc-gdcm)
fi
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
  if [[ " ${need[*]} " == *" orthanc "* ]] && command -v systemctl >/dev/null; then
    # Debian starts Orthanc as a system service (HTTP 8042, DICOM 4242): the bench needs none
    $sudo systemctl disable --now orthanc 2>/dev/null || true
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e .
fi

(cd web_client && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
echo "consultd is set up (.venv, web_client/dist)"
