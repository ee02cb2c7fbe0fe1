#!/bin/sh
# Fixture: starts two long-running children in its process group and waits for them (1000 s).
# Exits on SIGTERM (default disposition), and so do the children.
set -eu
sleep 1000 &
sleep 1000 &
echo "children started"
wait
