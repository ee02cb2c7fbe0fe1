#!/bin/sh
# Fixture: prints one line, then exits 3.
# argv: $1 = freeze|thaw
set -eu
echo "no $1 today"
exit 3
