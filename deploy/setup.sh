#!/usr/bin/env bash
# Installs what glassdrill needs on Debian or Ubuntu: Chromium and
# chromedriver (the drill browser), libudev-dev and pkg-config (for the
# FIDO HID stack), openssh-client (ssh-keygen, to verify evidence), procps
# (pkill, used by the guard that kills a browser whose glassdrill died).
# PostgreSQL's server binaries (a fleet's shared state; the fleet tests
# start a throw-away cluster of their own: no cluster is created or
# started here) and util-linux (setpriv: the tests run the server as
# `nobody` when they run as root).
# Idempotent: installs only what is missing; retries apt, which fails now
# and then on a busy mirror or a held lock.
set -euo pipefail

packages=(chromium chromium-driver libudev-dev pkg-config openssh-client coreutils procps ca-certificates postgresql util-linux)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: everything glassdrill needs is installed"
else
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
    sudo=(sudo)
  fi
  retry() {
    local n
    for n in 1 2 3 4 5; do
      "$@" && return 0
      echo "setup: '$*' failed (attempt $n of 5); retrying in $((n * 5))s" >&2
      sleep $((n * 5))
    done
    return 1
  }
  # Debian's postgresql package makes and starts a "main" cluster unless
  # told not to: glassdrill needs the binaries only.
  if [[ " ${missing[*]} " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    "${sudo[@]}" mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  echo "setup: installing ${missing[*]}"
  retry "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=120 update -q
  retry "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 \
    install -y -q --no-install-recommends "${missing[@]}"
fi

for bin in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$bin" ] || { echo "setup: $bin is missing after install (on Ubuntu, Chromium is a snap: set [browser] chromium/chromedriver in glassdrill.toml)" >&2; exit 1; }
done
command -v cargo >/dev/null || { echo "setup: cargo not found: install the Rust toolchain with rustup" >&2; exit 1; }
echo "setup: $(/usr/bin/chromium --version 2>/dev/null | head -n1); $(/usr/bin/chromedriver --version | head -n1)"
