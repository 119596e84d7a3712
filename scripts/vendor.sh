#!/usr/bin/env bash
# Install the front-end libraries from the committed lockfile and copy them into app/static/vendor.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p app/static/vendor
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --silent
fi
