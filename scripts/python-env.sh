#!/usr/bin/env bash
# Makes .venv with models/requirements.txt, once: training, export and the Python tests use it.
# Offline on this kind of machine: pip is pointed at the local wheel mirror when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=models/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then exit 0; fi
if [[ -z ${PIP_INDEX_URL:-} && -d /opt/pypi/simple ]]; then export PIP_INDEX_URL=file:///opt/pypi/simple; fi
echo "python-env: installing $requirements into .venv (once)…" >&2
[[ -x .venv/bin/python ]] || python3 -m venv .venv   # an existing one (or a link to one) is updated in place
.venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
echo "$want" > "$stamp"
