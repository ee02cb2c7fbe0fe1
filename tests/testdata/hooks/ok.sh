#!/bin/sh
# Fixture: succeeds. Prints its argument, FSFREEZE_HOOK_DEADLINE, PATH and its cwd, and one line
# on stderr.
# argv: $1 = freeze|thaw
set -eu
echo "phase=$1"
echo "deadline=${FSFREEZE_HOOK_DEADLINE:-unset}"
echo "path=${PATH:-unset}"
echo "cwd=$(pwd)"
echo "to stderr" >&2
