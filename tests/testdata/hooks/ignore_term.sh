#!/bin/sh
# Fixture: ignores SIGTERM (its children inherit that) and waits for its child (1000 s):
# only SIGKILL ends it early.
set -eu
trap '' TERM
sleep 1000 &
echo "ignoring SIGTERM"
wait
