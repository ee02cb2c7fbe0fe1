#!/bin/sh
# Test fixture: like record.sh, but on freeze waits far longer than any test deadline, in a child
# whose PID it records in hang.pid beside itself.
set -eu
here=$(dirname -- "$0")
printf '%s %s\n' "$(basename -- "$0")" "$1" >>"$here/calls.log"
if [ "$1" = freeze ]; then
  sleep 300 &
  echo "$!" >"$here/hang.pid"
  wait
fi
