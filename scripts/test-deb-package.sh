#!/usr/bin/env bash
# The Debian package test: packages the agent twice (version N and N+1) with scripts/package-deb.sh, runs lintian
# on it, then installs, upgrades, removes and purges it with dpkg --root in a throwaway Debian 12 root, never in
# the machine's own. The root is a copy-on-write overlay of a minimal Debian 12 (debootstrap --variant=minbase with
# the package's dependencies), cached in .build-debroot/ for a week; making it needs deb.debian.org once (about a
# minute). Runs as root (mount, chroot). Why this way: docs/decisions/0021-debian-package.md.
#
#   scripts/test-deb-package.sh [--binary PATH]     (default: .build/debug/edgepilot, what the test command built)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

binary="$repo/.build/debug/edgepilot"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$(realpath "$2"); shift 2 ;;
    *) echo "error: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "error: the package test mounts and chroots: run it as root" >&2; exit 1; }
[ -x "$binary" ] || { echo "error: no $binary: build first (swift build)" >&2; exit 1; }

work=$(mktemp -d /tmp/edgepilot-debtest.XXXXXX)
root="$work/root"
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}" || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
pass() { echo "  ok: $*"; }
fail() { echo "  FAILED: $*" >&2; failures=$((failures + 1)); }
# expect DESCRIPTION WANT GOT
expect() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi; }
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# Owner, group and mode as the root's own users and groups name them.
owner_mode() { in_root stat -c '%U:%G %a' "$1" 2>&1; }
status_of() { dpkg-query --root="$root" -W -f='${Status} ${Version}' edgepilot 2>/dev/null || echo "not known"; }
# No terminal: a conffile question would fail the step instead of waiting.
dpkg_in_root() {
  dpkg --root="$root" "$@" </dev/null >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; return 1; }
}

# ── Packages N and N+1 ────────────────────────────────────────────────────────────────────────────────────────────
upstream=$("$binary" --version)
v1="${upstream}~pkgtest1"
v2="${upstream}~pkgtest2"
echo "==> packaging $binary as $v1 and $v2"
package() {
  ./scripts/package-deb.sh --binary "$binary" --version "$1" --output "$work/debs" --xz-level 1 2>"$work/pkg.log" \
    || { cat "$work/pkg.log" >&2; exit 1; }
}
deb1=$(package "$v1")
deb2=$(package "$v2")

echo "==> lintian"
if lintian --pedantic --fail-on error,warning,info,pedantic "$deb1" >"$work/lintian.log" 2>&1; then
  overrides=$(grep -c -v -E '^(#|$)' packaging/deb/lintian-overrides)
  pass "lintian --pedantic: clean but for $overrides explained override(s)"
else
  cat "$work/lintian.log" >&2
  fail "lintian found something (above)"
fi

# ── The throwaway root ────────────────────────────────────────────────────────────────────────────────────────────
# Cached per ISO week (security updates arrive weekly at worst) and per dependency list (the package's Depends, so
# that dpkg checks them against real Debian packages, offline).
includes=$(dpkg-deb -f "$deb1" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/ //g' | grep . | sort -u \
  | paste -sd,)
key="bookworm-$(date -u +%G-W%V)-$(echo "$includes" | sha256sum | cut -c1-12)"
cache="$repo/.build-debroot/$key"
if [ ! -d "$cache" ]; then
  echo "==> making the Debian 12 root $key (debootstrap, once a week)"
  mkdir -p "$repo/.build-debroot"
  find "$repo/.build-debroot" -mindepth 1 -maxdepth 1 -name 'bookworm-*' -exec rm -rf {} +
  debootstrap --variant=minbase --include="$includes" bookworm "$cache.tmp" \
    "${EDGEPILOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; rm -rf "$cache.tmp"; exit 1; }
  rm -rf "$cache.tmp/var/cache/apt/archives/"*.deb
  mv -T "$cache.tmp" "$cache"
fi
mkdir -p "$work/upper" "$work/overlay-work" "$root"
overlay="lowerdir=$cache,upperdir=$work/upper,workdir=$work/overlay-work"
if mount -t overlay overlay -o "$overlay" "$root" 2>/dev/null; then
  mounts+=("$root")
else
  echo "  (no overlayfs here: copying the root)"
  cp -a "$cache/." "$root/"
fi
# A box has /proc: systemd-tmpfiles refuses to work without it, and Swift reads its arguments from /proc/self.
mount -t proc proc "$root/proc"
mounts+=("$root/proc")
list_paths() {
  (cd "$root" && find . -xdev -not -path './proc/*' -not -path './tmp/*' -not -path './var/tmp/*' | sort)
}
list_paths >"$work/paths.before"

# systemd does not run in the root; a stand-in deb-systemd-invoke records what the maintainer scripts ask of it, and
# /run/systemd/system makes them believe systemd runs, so that "starts nothing" and "stops on remove" are checked.
mkdir -p "$root/run/systemd/system"
mv "$root/usr/bin/deb-systemd-invoke" "$root/usr/bin/deb-systemd-invoke.real"
printf '#!/bin/sh\necho "$*" >> /var/tmp/deb-systemd-invoke.log\n' >"$root/usr/bin/deb-systemd-invoke"
chmod 0755 "$root/usr/bin/deb-systemd-invoke"
invoked() {
  paste -sd';' "$root/var/tmp/deb-systemd-invoke.log" 2>/dev/null || true
  : >"$root/var/tmp/deb-systemd-invoke.log"
}

# A debug binary finds the toolchain's Swift runtime through the RUNPATH the package strips: lend it to the root
# only while the agent runs there.
runtime_dir=$(ldd "$binary" | awk '/libswiftCore\.so/ { print $3 }' | xargs -r dirname)
run_agent() {
  local rc=0
  if [ -n "$runtime_dir" ]; then
    mkdir -p "$root/opt/swift-runtime"
    mount --bind -o ro "$runtime_dir" "$root/opt/swift-runtime"
    mounts+=("$root/opt/swift-runtime")
    in_root env LD_LIBRARY_PATH=/opt/swift-runtime "$@" || rc=$?
    umount "$root/opt/swift-runtime"
    unset 'mounts[${#mounts[@]}-1]'
    rmdir "$root/opt/swift-runtime" "$root/opt" 2>/dev/null || true
  else
    in_root "$@" || rc=$?
  fi
  return $rc
}

# ── Install N ─────────────────────────────────────────────────────────────────────────────────────────────────────
echo "==> install $v1"
dpkg_in_root -i "$deb1"
expect "installed" "install ok installed $v1" "$(status_of)"
expect "binary" "root:root 755" "$(owner_mode /usr/bin/edgepilot)"
expect "unit" "root:root 644" "$(owner_mode /lib/systemd/system/edgepilot.service)"
expect "unit starts the packaged binary" "ExecStart=/usr/bin/edgepilot run --config /etc/edgepilot/edgepilot.yaml" \
  "$(grep '^ExecStart=' "$root/lib/systemd/system/edgepilot.service")"
expect "sysusers entry" "root:root 644" "$(owner_mode /usr/lib/sysusers.d/edgepilot.conf)"
expect "tmpfiles entry" "root:root 644" "$(owner_mode /usr/lib/tmpfiles.d/edgepilot.conf)"
expect "configuration directory" "root:root 755" "$(owner_mode /etc/edgepilot)"
expect "default configuration (conffile)" "root:root 644" "$(owner_mode /etc/edgepilot/edgepilot.yaml)"
expect "conffile registered" "/etc/edgepilot/edgepilot.yaml" \
  "$(dpkg-query --root="$root" -W -f='${Conffiles}' edgepilot | awk 'NF { print $1 }')"
expect "state directory" "edgepilot:edgepilot 750" "$(owner_mode /var/lib/edgepilot)"
passwd=$(in_root getent passwd edgepilot || true)
uid=$(echo "$passwd" | cut -d: -f3)
if [ -n "$uid" ] && [ "$uid" -lt 1000 ]; then
  pass "system user edgepilot (uid $uid)"
else
  fail "system user edgepilot: '$passwd'"
fi
expect "user's home and shell" "/var/lib/edgepilot:/usr/sbin/nologin" "$(echo "$passwd" | cut -d: -f6,7)"
case ",$(in_root getent group dialout | cut -d: -f4)," in
  *,edgepilot,*) pass "edgepilot is in dialout (RTU serial ports)" ;;
  *) fail "edgepilot is not in group dialout" ;;
esac
if in_root getent group edgepilot-ro >/dev/null; then
  pass "group edgepilot-ro (read-only CLI users)"
else
  fail "no group edgepilot-ro"
fi
expect "service not enabled" "disabled" "$(systemctl --root="$root" is-enabled edgepilot.service 2>&1 || true)"
expect "no enable symlink" "" "$(find "$root/etc/systemd" -name 'edgepilot*' | paste -sd' ')"
expect "nothing started" "" "$(invoked)"
# grep -c reads to the end: with pipefail, grep -q could fail the pipe by closing it early.
if zcat "$root/usr/share/man/man1/edgepilot.1.gz" | grep -c '^\.Dt EDGEPILOT 1' >/dev/null; then
  pass "man page"
else
  fail "man page"
fi
for f in /usr/share/bash-completion/completions/edgepilot /usr/share/zsh/vendor-completions/_edgepilot \
  /usr/share/fish/vendor_completions.d/edgepilot.fish; do
  if grep -q 'edgepilot' "$root$f"; then pass "completion $f"; else fail "completion $f"; fi
done
if bash -n "$root/usr/share/bash-completion/completions/edgepilot"; then
  pass "bash completion parses"
else
  fail "bash completion does not parse"
fi
if run_agent edgepilot --help >"$work/help.txt" 2>&1 && grep -q '^USAGE: edgepilot' "$work/help.txt"; then
  pass "edgepilot --help runs in the root"
else
  cat "$work/help.txt" >&2
  fail "edgepilot --help in the root"
fi
expect "default configuration checks" "/etc/edgepilot/edgepilot.yaml: OK (0 devices, 0 tags)" \
  "$(run_agent edgepilot config check /etc/edgepilot/edgepilot.yaml 2>&1)"

# The agent as the unit runs it: user edgepilot, default configuration; /run/edgepilot is the unit's
# RuntimeDirectory=, made here by hand. It must be able to make its history in the packaged state directory.
install -d -m 0750 -o "$uid" -g "$(echo "$passwd" | cut -d: -f4)" "$root/run/edgepilot"
run_agent timeout -s TERM 4 setpriv --reuid=edgepilot --regid=edgepilot --init-groups \
  edgepilot run --config /etc/edgepilot/edgepilot.yaml >"$work/agent.log" 2>&1 || true
rm -rf "$root/run/edgepilot"
if [ -s "$root/var/lib/edgepilot/history.db" ]; then
  expect "history made by the agent as user edgepilot" "edgepilot:edgepilot" \
    "$(owner_mode /var/lib/edgepilot/history.db | cut -d' ' -f1)"
else
  cat "$work/agent.log" >&2
  fail "the agent made no history in /var/lib/edgepilot"
fi

# ── Site data and a changed configuration, then upgrade to N+1 ────────────────────────────────────────────────────
state=/var/lib/edgepilot
echo 7 >"$root$state/sparkplug.bdseq"
mkdir -p "$root$state/pki/own" "$root$state/pki/trusted" "$root$state/pki/rejected"
head -c 900 /dev/urandom >"$root$state/pki/own/cert.der"
head -c 1200 /dev/urandom >"$root$state/pki/own/key.der"
head -c 800 /dev/urandom >"$root$state/pki/trusted/server.der"
chmod 0600 "$root$state/pki/own/key.der"
chown -R "$uid:$(echo "$passwd" | cut -d: -f4)" "$root$state"
sed -i 's/^  log_level: info$/  log_level: debug/' "$root/etc/edgepilot/edgepilot.yaml"
echo "# changed on site" >>"$root/etc/edgepilot/edgepilot.yaml"
echo secret >"$root/etc/edgepilot/plc.password"
chmod 0640 "$root/etc/edgepilot/plc.password"
chgrp "$(echo "$passwd" | cut -d: -f4)" "$root/etc/edgepilot/plc.password"
kept="$state/history.db $state/sparkplug.bdseq $state/pki/own/cert.der $state/pki/own/key.der"
kept="$kept $state/pki/trusted/server.der /etc/edgepilot/edgepilot.yaml /etc/edgepilot/plc.password"
fingerprint() { for f in $kept; do echo "$f $(owner_mode "$f") $(sha256sum <"$root$f" | cut -c1-16)"; done; }
fingerprint >"$work/kept.before"
grep -q 'log_level: debug' "$root/etc/edgepilot/edgepilot.yaml" || fail "the test could not change the configuration"

echo "==> upgrade to $v2"
dpkg_in_root -i "$deb2"
expect "upgraded" "install ok installed $v2" "$(status_of)"
fingerprint >"$work/kept.after"
if diff "$work/kept.before" "$work/kept.after" >&2; then
  pass "history, bdSeq, PKI, changed configuration and site files kept, with owners and modes"
else
  fail "files changed across the upgrade (diff above)"
fi
expect "no conffile prompt or copy" "" "$(find "$root/etc/edgepilot" -name '*.dpkg-*' | paste -sd' ')"
expect "upgrade enables nothing" "disabled" "$(systemctl --root="$root" is-enabled edgepilot.service 2>&1 || true)"
expect "upgrade restarts the agent only if it runs" "try-restart edgepilot.service" "$(invoked)"

# An enabled service stays enabled across an upgrade (here a reinstall of N+1).
systemctl --root="$root" enable edgepilot.service >/dev/null 2>&1
dpkg_in_root -i "$deb2"
expect "enabled service stays enabled" "enabled" "$(systemctl --root="$root" is-enabled edgepilot.service 2>&1 || true)"
invoked >/dev/null

# ── Remove, then purge ────────────────────────────────────────────────────────────────────────────────────────────
echo "==> remove"
dpkg_in_root -r edgepilot
expect "removed, configuration left" "deinstall ok config-files $v2" "$(status_of)"
expect "remove stops the agent" "stop edgepilot.service" "$(invoked)"
expect "binary gone" "" "$(ls "$root/usr/bin/edgepilot" "$root/lib/systemd/system/edgepilot.service" 2>/dev/null)"
fingerprint >"$work/kept.removed"
if diff "$work/kept.before" "$work/kept.removed" >&2; then
  pass "remove leaves data and configuration"
else
  fail "remove changed data (diff above)"
fi

echo "==> purge"
dpkg_in_root -P edgepilot
expect "purged" "not known" "$(status_of)"
expect "data and configuration gone" "" "$(ls -d "$root/var/lib/edgepilot" "$root/etc/edgepilot" 2>/dev/null)"
expect "no enable symlink left" "" "$(find "$root/etc/systemd" -name 'edgepilot*' | paste -sd' ')"
if in_root getent passwd edgepilot >/dev/null; then pass "user edgepilot stays (Debian's practice for system users)"; fi
# Everything the package made is gone; what may remain is dpkg's and deb-systemd-helper's bookkeeping, the logs,
# and the user in the account files (checked above), besides this test's stand-in.
rm "$root/usr/bin/deb-systemd-invoke"
mv "$root/usr/bin/deb-systemd-invoke.real" "$root/usr/bin/deb-systemd-invoke"
rm -rf "$root/run/systemd/system"
list_paths >"$work/paths.after"
left=$(comm -13 "$work/paths.before" "$work/paths.after" \
  | grep -v -E '^\./var/lib/dpkg/|^\./var/log/|^\./var/lib/systemd/deb-systemd-helper-' \
  | grep -v -E '^\./etc/(passwd|group|shadow|gshadow)-$' \
  | paste -sd' ' || true)
expect "nothing else left behind" "" "$left"

echo "==> package test: $((SECONDS - started)) s"
if [ "$failures" -gt 0 ]; then
  echo "error: $failures package check(s) failed" >&2
  exit 1
fi
