#!/usr/bin/env bash
# Screenshot an HTML report in headless Chromium (Debian package `chromium`), to look at it as a reader would.
# Usage: benchmarks/screenshot_report.sh REPORT.html OUT.png [WIDTHxHEIGHT, default 1280x2400]
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
    exit 2
fi
html=$(realpath "$1")
png=$(realpath -m "$2")
size=${3:-1280x2400}
[ -f "$html" ] || { echo "$html: report does not exist" >&2; exit 1; }
command -v chromium >/dev/null || { echo "chromium not found: apt-get install -y chromium" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size="${size/x/,}" --screenshot="$png" "file://$html"
echo "$png"
