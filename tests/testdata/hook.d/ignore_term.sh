#!/bin/sh
# Test fixture: on freeze ignores SIGTERM and never finishes, so only SIGKILL ends it.
set -eu
here=$(dirname -- "$0")
printf '%s %s\n' "$(basename -- "$0")" "$1" >>"$here/calls.log"
if [ "$1" = freeze ]; then
  trap '' TERM
  while :; do sleep 1; done
fi
