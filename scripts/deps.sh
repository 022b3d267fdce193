#!/bin/sh
# Installs the Debian packages normgrad needs (only those missing). Run as root on Debian bookworm.
set -e
PKGS="g++ cmake make libfmt-dev doctest-dev libopenblas-dev zlib1g-dev nlohmann-json3-dev libcli11-dev dataset-fashion-mnist"
[ -n "$NORMGRAD_EXTRA_PKGS" ] && PKGS="$PKGS $NORMGRAD_EXTRA_PKGS"
MISSING=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING="$MISSING $p"
done
if [ -n "$MISSING" ]; then
  echo "normgrad: installing$MISSING"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
fi
