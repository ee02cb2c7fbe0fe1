#!/bin/sh
# Fixture: leaves a background child that holds stdout and stderr open, prints its pid, exits 0
# (like a hook that keeps a database lock until thaw).
set -eu
sleep 1000 &
echo "child=$!"
