#!/usr/bin/env bash
# CI check of the Debian package: builds it with `cargo deb` (PROFILE=dev
# by default: the debug build the test suite made), inspects it with
# dpkg-deb, then installs, upgrades and purges it in a throw-away root
# (dpkg --root, maintainer scripts run with DPKG_ROOT) and checks the user,
# the enabled unit (systemd-analyze verify), the conffile, and that an
# upgrade keeps config, state and evidence and a purge keeps the evidence.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-package: FAIL: $*" >&2; exit 1; }
if ! command -v cargo-deb >/dev/null; then
  echo "check-package: installing cargo-deb"
  cargo install cargo-deb --locked -q
fi
deb=$(PROFILE=${PROFILE:-dev} bash deploy/package.sh | tail -1)
[ -f "$deb" ] || fail "no package built"
echo "check-package: $deb"

# 1. What the package holds, with modes.
contents=$(dpkg-deb --contents "$deb" | awk '{print $1, $6}')
want() { grep -qx -- "$1 ./$2" <<<"$contents" || fail "missing or wrong mode: $1 $2"; }
want -rwxr-xr-x usr/bin/glassdrill
want -rw-r--r-- usr/lib/systemd/system/glassdrill.service
want -rw-r--r-- usr/lib/udev/rules.d/70-glassdrill-fido.rules
want -rw-r----- etc/glassdrill/glassdrill.toml
want -rw-r--r-- usr/share/man/man1/glassdrill.1.gz
want -rw-r--r-- usr/share/man/man1/glassdrill-run.1.gz
want -rw-r--r-- usr/share/man/man1/glassdrill-daemon.1.gz
want -rw-r--r-- usr/share/man/man5/glassdrill.toml.5.gz
want -rw-r--r-- usr/share/bash-completion/completions/glassdrill
want -rw-r--r-- usr/share/zsh/vendor-completions/_glassdrill
want -rw-r--r-- usr/share/fish/vendor_completions.d/glassdrill.fish
dpkg-deb --info "$deb" conffiles | grep -qx /etc/glassdrill/glassdrill.toml || fail "glassdrill.toml is not a conffile"
depends=$(dpkg-deb -f "$deb" Depends)
for d in chromium chromium-driver openssh-client; do
  grep -qE "(^|, )$d(,|$| )" <<<"$depends" || fail "Depends lacks $d: $depends"
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/x"
bash -n "$work/x/usr/share/bash-completion/completions/glassdrill" || fail "bash completion does not parse"
zcat "$work/x/usr/share/man/man1/glassdrill.1.gz" | grep -q "EXIT STATUS" || fail "glassdrill(1) has no EXIT STATUS"

# 2. Install into a throw-away root.
root="$work/root"
mkdir -p "$root/etc" "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
printf 'root:*::\n' > "$root/etc/gshadow"
# The unit is enabled and verified in that root, with the host's own units beside it
# (the targets it is wanted by and ordered after).
mkdir -p "$root/usr/lib/systemd/system"
cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
dpkgr() {
  dpkg --root="$root" --force-script-chrootless --force-depends --force-not-root "$@" \
    >"$work/dpkg.out" 2>"$work/dpkg.err" || { cat "$work/dpkg.out" "$work/dpkg.err" >&2; fail "dpkg $*"; }
}
dpkgr -i "$deb"
grep -q '^glassdrill:x:[0-9]*:[0-9]*:.*:/var/lib/glassdrill:/usr/sbin/nologin$' "$root/etc/passwd" || fail "no glassdrill system user"
grep -q '^glassdrill:' "$root/etc/group" || fail "no glassdrill group"
[ -L "$root/etc/systemd/system/multi-user.target.wants/glassdrill.service" ] || fail "the unit is not enabled"
[ "$(stat -c %a "$root/etc/glassdrill/secrets")" = 700 ] || fail "secrets dir mode"
[ "$(stat -c %a "$root/etc/glassdrill/drills")" = 750 ] || fail "drills dir mode"
[ "$(stat -c %a "$root/var/lib/glassdrill")" = 700 ] || fail "state dir mode"
[ "$(stat -c %u "$root/var/lib/glassdrill")" = "$(awk -F: '$1 == "glassdrill" { print $3 }' "$root/etc/passwd")" ] || fail "state dir owner"
systemd-analyze verify --man=no --root="$root" glassdrill.service || fail "systemd-analyze verify"

# 3. Upgrade: config, state and evidence kept.
echo '# edited by the admin' >> "$root/etc/glassdrill/glassdrill.toml"
mkdir -p "$root/var/lib/glassdrill/evidence/bg1/run-1"
echo state > "$root/var/lib/glassdrill/state.db"
echo bundle > "$root/var/lib/glassdrill/evidence/bg1/run-1/drill.json"
dpkgr -i "$deb"
grep -q 'edited by the admin' "$root/etc/glassdrill/glassdrill.toml" || fail "upgrade lost the config"
[ -f "$root/var/lib/glassdrill/state.db" ] || fail "upgrade lost the state"
[ -f "$root/var/lib/glassdrill/evidence/bg1/run-1/drill.json" ] || fail "upgrade lost evidence"

# 4. Purge: state and config gone, evidence kept (audit material).
dpkgr --purge glassdrill
grep -q "evidence .* is kept" "$work/dpkg.err" || fail "purge did not say the evidence is kept"
[ ! -e "$root/var/lib/glassdrill/state.db" ] || fail "purge kept the state"
[ ! -e "$root/etc/glassdrill/glassdrill.toml" ] || fail "purge kept the conffile"
[ -f "$root/var/lib/glassdrill/evidence/bg1/run-1/drill.json" ] || fail "purge deleted the evidence"
[ ! -e "$root/usr/bin/glassdrill" ] || fail "purge left the binary"
echo "check-package: OK (contents, modes, conffile, dependencies, install, upgrade, purge)"
