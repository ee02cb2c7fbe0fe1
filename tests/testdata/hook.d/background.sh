#!/bin/sh
# Test fixture: on freeze leaves a background child that keeps the script's stdout and stderr
# open, records the child's PID in background.pid beside itself (so the test can end it), and
# exits 0 at once.
set -eu
here=$(dirname -- "$0")
printf '%s %s\n' "$(basename -- "$0")" "$1" >>"$here/calls.log"
if [ "$1" = freeze ]; then
  sleep 300 &
  echo "$!" >"$here/background.pid"
  echo "left a background child"
fi
