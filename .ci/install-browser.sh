#!/usr/bin/env bash
# Install what tests/test_ui_browser.py needs: Debian's Chromium (driven by Playwright with that executable,
# never `playwright install`) and the Python packages playwright + optuna-dashboard in the venv.
# Idempotent: apt runs only when /usr/bin/chromium is missing, pip only when a package is missing.
# Usage: bash .ci/install-browser.sh [VENV]   (VENV defaults to .venv)
set -euo pipefail

VENV="${1:-.venv}"

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q chromium
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "install-browser: chromium was installed but /usr/bin/chromium is missing" >&2
  exit 1
fi
echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"

if [ -x "$VENV/bin/python" ]; then
  if ! "$VENV/bin/python" -c "import playwright.sync_api, optuna_dashboard" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q playwright optuna-dashboard
  fi
  echo "Python: $("$VENV/bin/python" -m pip show playwright optuna-dashboard 2>/dev/null | grep -E '^(Name|Version)' | paste -sd ' ')"
fi
