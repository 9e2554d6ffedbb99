#!/usr/bin/env bash
# The playground's browser test drives Debian's chromium (never a downloaded browser). When it is
# missing, this installs it with apt-get (as root, or through sudo), once; where it cannot, it
# says in one line what to run, and npm test stops there rather than skip the test.
set -euo pipefail
command -v chromium >/dev/null && exit 0
as_root=$([[ $(id -u) == 0 ]] || echo sudo)
if command -v apt-get >/dev/null && { [[ -z $as_root ]] || command -v sudo >/dev/null; }; then
  echo "chromium: installing Debian's chromium for the playground test (once)…" >&2
  # shellcheck disable=SC2206 # $as_root is empty or one word
  apt=($as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  if "${apt[@]}" update >&2 && "${apt[@]}" install -y chromium >&2 && command -v chromium >/dev/null; then
    exit 0
  fi
fi
echo "npm test needs Debian's chromium for the playground test: run 'sudo apt-get install chromium', then npm test" >&2
exit 1
