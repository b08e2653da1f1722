#!/bin/sh
# npm.sh: installs the npm packages the tests run as third-party clients (tests/js: tuf-js),
# exactly as package-lock.json pins them, with this machine's Node.js. Only when the lockfile
# changed since the last install.
set -eu
cd "$(dirname "$0")/../tests/js"
if ! command -v npm >/dev/null 2>&1; then
    echo "npm.sh: node and npm are needed for the test clients in tests/js (Node.js 20)" >&2
    exit 1
fi
stamp=node_modules/.keyfleet-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
cp package-lock.json "$stamp"
