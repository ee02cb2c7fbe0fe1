#!/bin/sh
# Fixture: exits 3 without any output.
set -eu
exit 3
