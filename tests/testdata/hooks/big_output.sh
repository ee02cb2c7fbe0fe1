#!/bin/sh
# Fixture: prints 139,264 bytes of 17-byte lines, then a last marker line.
set -eu
yes 0123456789abcdef | head -n 8192
echo "end-of-output"
