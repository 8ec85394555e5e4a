#!/usr/bin/env bash
# The test command: installs what is needed, checks formatting, builds, and runs every test suite
# (Swift unit and integration tests against real pymodbus / asyncua / mosquitto / SQLite peers, and the
# simulators' own pytest suite). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh

echo "==> swift format lint"
swift format lint --strict --recursive --parallel Package.swift Sources Tests Benchmarks

echo "==> swift build"
swift build --build-tests -j 2

echo "==> swift test"
EDGEPILOT_PYTHON="$PWD/.venv/bin/python" swift test --skip-build

echo "==> simulator tests (pytest)"
.venv/bin/python -m pytest -q Simulators

echo "==> Debian package: lintian, install, upgrade, remove, purge in a throwaway Debian 12 root"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO ./scripts/test-deb-package.sh
