#!/usr/bin/env bash
# Print the Python to build the virtual environment with: 3.12 (the deploy target)
# where present, else python3 (3.11 or newer).
set -eu
for candidate in python3.12 "$(pyenv root 2>/dev/null)/versions/3.12"*/bin/python3.12 python3; do
  if "$candidate" -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1; then
    command -v "$candidate" 2>/dev/null || echo "$candidate"
    exit 0
  fi
done
echo "no Python 3.11 or newer found" >&2
exit 1
