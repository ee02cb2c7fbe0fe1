#!/bin/sh
# Fixture: prints one line, then kills itself with SIGKILL.
set -eu
echo "about to die"
kill -KILL $$
