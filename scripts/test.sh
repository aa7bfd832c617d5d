#!/usr/bin/env bash
# Install everything the test suite needs (Debian's chromium included), lint, and run the whole suite.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium (browser tests drive it; no browser is downloaded by Playwright)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium || { echo "could not install chromium"; exit 1; }
fi

echo "== installing the project with its test extras"
python -m pip install --quiet --disable-pip-version-check -e ".[test]" || { echo "pip install failed"; exit 1; }

echo "== linting (ruff check .; a finding fails the run)"
python -m ruff check . || { echo "ruff check found problems"; exit 1; }

echo "== running the test suite (tests/ and every notebook)"
python -m pytest tests notebooks --nbmake --nbmake-timeout=600 -p no:cacheprovider --durations=20 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a broken suite, not a pass"
  exit 1
fi
exit "$rc"
