#!/usr/bin/env bash
# Makes sure the given Python (3.11) and its venv module exist; installs them with apt on Debian/Ubuntu.
set -euo pipefail
py="${1:-python3.11}"
if "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing $py and its venv module with apt-get ..."
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "$py" "$py-venv"
  exit 0
fi
echo "error: $py with the venv module is required (Debian/Ubuntu: apt-get install $py $py-venv)" >&2
exit 1
