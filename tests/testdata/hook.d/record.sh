#!/bin/sh
# Test fixture: appends "<name> <phase>" to calls.log beside itself and prints its deadline.
# Copied into a test's hook directory under names that set its place in the order.
set -eu
here=$(dirname -- "$0")
printf '%s %s\n' "$(basename -- "$0")" "$1" >>"$here/calls.log"
echo "deadline=${FSFREEZE_HOOK_DEADLINE:-unset}"
