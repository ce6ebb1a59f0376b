#!/usr/bin/env bash
# Print the Python to build the virtual environment with: 3.13, the version the app
# deploys with (docs/running.md, "Python version and the worker"), because from 3.13 the worker runtime that
# runs the app in Azure is a pinned package the tests load (azure-functions-runtime).
set -eu
for candidate in "$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"/versions/3.13*/bin/python3.13 \
                 "$(command -v python3.13 || true)" "$(command -v python3 || true)"; do
  if [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done
echo "Python 3.13 not found: the app deploys with 3.13 and its tests load the 3.13 worker runtime" >&2
echo "(install it with your package manager, 'pyenv install 3.13' or 'uv python install 3.13')" >&2
exit 1
