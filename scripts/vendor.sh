#!/usr/bin/env bash
# Install the front-end libraries from the committed lockfile and copy them into app/static/vendor.
# Nothing is fetched at run time: the pages load these files from the app's own /static.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund --silent
vendor=app/static/vendor
mkdir -p "$vendor"
cp node_modules/htmx.org/dist/htmx.min.js "$vendor/htmx.min.js"
cp node_modules/htmx-ext-sse/dist/sse.min.js "$vendor/sse.js"
cp node_modules/uplot/dist/uPlot.iife.min.js "$vendor/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$vendor/uPlot.min.css"
for pkg in htmx.org htmx-ext-sse uplot; do
  cp "node_modules/$pkg/LICENSE" "$vendor/LICENSE.$pkg" 2>/dev/null || true
done
