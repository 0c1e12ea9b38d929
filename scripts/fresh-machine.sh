#!/usr/bin/env bash
# A machine that has never run the project: a Debian 12 root built with debootstrap (minbase, plus git and make,
# what a user needs to clone and type `make`), a fresh clone of this repository's HEAD in it, and the given make
# targets run there, each alone (one failing does not stop the next), with the time each took. Nothing of this machine's comes in but how it reaches
# the package registries (apt sources and options, CA certificates, pip's settings): no package, no cache, no
# /run, no /tmp. It runs in a mount namespace of its own with fresh /proc, /sys, /dev/pts, /run and /tmp, so
# everything the targets start is gone with it.
#
#   sudo scripts/fresh-machine.sh                   # make test, then make demo and make demo-down
#   sudo scripts/fresh-machine.sh test              # only make test
#   sudo scripts/fresh-machine.sh --keep demo       # leave the root for a look afterwards
#
# The bare Debian root is made once into FRESH_BASE (default /var/tmp/stackops-fresh-base: it holds nothing of
# the project) and copied for each run into a new directory under /var/tmp, removed at the end unless --keep.
# Each target's log is <that directory>/<target>.log; its last lines are printed.
set -euo pipefail

keep=no
targets=()
for argument in "$@"; do
  case "$argument" in
    --keep) keep=yes ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) targets+=("$argument") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(test demo demo-down)

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-machine.sh needs root (debootstrap, chroot, namespaces)" >&2
  exit 1
fi

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
base=${FRESH_BASE:-/var/tmp/stackops-fresh-base}
work=$(mktemp -d /var/tmp/stackops-fresh.XXXXXX)
root=$work/root

stamp() { date -u +%H:%M:%S; }
# shellcheck disable=SC2317 # run by the EXIT trap below, which shellcheck 0.9 does not follow
cleanup() {
  if [ "$keep" = no ]; then
    rm -rf --one-file-system "$root"
  else
    echo "kept: $root"
  fi
}
trap cleanup EXIT
started=$SECONDS

if ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# The Debian mirror this machine uses (deb822 sources first, then the one-line format).
mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
mirror=${mirror:-$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*debian\) .*/\2/p' /etc/apt/sources.list 2>/dev/null \
  | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}

if [ ! -x "$base/usr/bin/make" ]; then
  echo "[$(stamp)] debootstrap bookworm (minbase + git, make, ca-certificates) from $mirror into $base"
  rm -rf --one-file-system "$base"
  debootstrap --variant=minbase --include=git,make,ca-certificates bookworm "$base.partial" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log"; exit 1; }
  mv "$base.partial" "$base"
  echo "[$(stamp)] bare root built in $((SECONDS - started)) s"
fi
cp -a "$base" "$root"

# How this machine reaches the registries, and nothing else of it.
cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/" 2>/dev/null || true
# this machine's sources replace debootstrap's (the same archive twice makes apt warn)
if [ -f /etc/apt/sources.list ]; then cp /etc/apt/sources.list "$root/etc/apt/sources.list"
else rm -f "$root/etc/apt/sources.list"; fi
for file in /etc/apt/apt.conf.d/*; do
  grep -qs '^Acquire::' "$file" && cp "$file" "$root/etc/apt/apt.conf.d/"
done
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
fi
[ -f /etc/pip.conf ] && sed '/find-links\|extra-index-url\|file:\/\//d' /etc/pip.conf >"$root/etc/pip.conf"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

rm -rf "$root/root/stackops"
git clone -q "$repo" "$root/root/stackops"
echo "[$(stamp)] fresh clone of $(git -C "$repo" rev-parse --short HEAD) in $root/root/stackops"

# The machine's side: mount and PID namespaces of its own. The root becomes its / with pivot_root (not chroot: a
# chrooted process may not make user namespaces, which a machine may), with fresh kernel filesystems and an empty
# /run and /tmp; then each target in a clean environment, as a login shell of root would have it. Whatever the
# targets leave running ends with the namespace's first process.
mkdir -p "$root/var/log/fresh-machine"
inside=$(cat <<'SCRIPT'
set -eu
root=$1; shift
mount --make-rprivate /
mount --bind "$root" "$root"  # a mount point, to pivot to (and `ip netns exec` remounts /)
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 run "$root/run"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
mkdir -p "$root/run/lock" "$root/.old-root" && chmod 1777 "$root/run/lock"
cd "$root"
pivot_root . .old-root
exec /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=180 /bin/bash -c '
set -u
umount -l /.old-root && rmdir /.old-root
status=0
for target in "$@"; do
  started=$(date +%s)
  log=/var/log/fresh-machine/$target.log
  echo "[$(date -u +%H:%M:%S)] make $target"
  if (cd /root/stackops && make "$target") >"$log" 2>&1 </dev/null; then
    result=passed
  else
    result="FAILED ($?)"; status=1
  fi
  echo "[$(date -u +%H:%M:%S)] make $target: $result in $(( $(date +%s) - started )) s"
  tail -n 5 "$log"
done
exit $status
' fresh-machine "$@"
SCRIPT
)
status=0
unshare --mount --pid --fork bash -c "$inside" fresh-machine "$root" "${targets[@]}" || status=$?
cp "$root"/var/log/fresh-machine/*.log "$work/" 2>/dev/null || true
echo "[$(stamp)] all in $((SECONDS - started)) s; logs: $work/*.log"
exit $status
