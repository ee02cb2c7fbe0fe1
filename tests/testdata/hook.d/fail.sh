#!/bin/sh
# Test fixture: like record.sh, but fails on freeze (status 3, with a message on stderr).
set -eu
here=$(dirname -- "$0")
printf '%s %s\n' "$(basename -- "$0")" "$1" >>"$here/calls.log"
if [ "$1" = freeze ]; then
  echo "simulated failure" >&2
  exit 3
fi
