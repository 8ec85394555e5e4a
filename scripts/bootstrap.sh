#!/usr/bin/env bash
# Installs what EdgePilot's build, demo and tests need on Debian 12: the C libraries, mosquitto, systemd's
# analyzer, the Debian packaging tools (scripts/package-deb.sh and its test: dpkg-dev, chrpath, lintian,
# debootstrap), and a Python venv (.venv) with the pinned simulators and test peers. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libmodbus-dev libsqlite3-dev libmosquitto-dev zlib1g-dev mosquitto pkg-config systemd openssl python3-venv sqlite3
  dpkg-dev chrpath lintian debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  echo "error: the Swift toolchain (6.1 or newer) is not on PATH; install it from swift.org first" >&2
  exit 1
fi

stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> creating the Python venv for simulators and test peers (.venv)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  echo "$want" > "$stamp"
fi
