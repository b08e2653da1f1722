#!/bin/sh
# `make run`: create a deployment in ./keyfleet-data and show what was made.
# An existing deployment is never touched: it is shown instead.
set -eu
BUILD=${1:-build}
KF="$BUILD/src/cli/keyfleet"
DIR=${KEYFLEET_DIR:-keyfleet-data}

if [ -e "$DIR/keyfleet.conf" ]; then
    echo "$DIR already holds a deployment; keyfleet never overwrites one."
    echo "(for a fresh one: rm -rf $DIR && make run)"
    echo
    "$KF" --dir "$DIR" ca show
    echo
    "$KF" --dir "$DIR" audit verify
    exit 0
fi

"$KF" --dir "$DIR" init
echo
echo "What is in it:"
(cd "$DIR" && find . -type f | sort | while read -r f; do
    printf '  %-22s %s\n' "$f" "$(stat -c '%A' "$f")"
done)
echo
"$KF" --dir "$DIR" audit list
echo
echo "Try:"
echo "  $KF --dir $DIR --help"
echo "  $KF --dir $DIR ca show"
echo "  $KF --dir $DIR audit verify"
