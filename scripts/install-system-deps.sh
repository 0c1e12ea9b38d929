#!/usr/bin/env bash
# System packages stackops' tests and lab need (Debian 12). Installs only what is missing.
#   - kube-apiserver is built once from Debian's `kubernetes` source package: golang-go, rsync, jq, dpkg-dev,
#     build-essential, golang-github-modern-go-reflect2-dev (the fix for Go >= 1.18)
#   - etcd-server: the API server's store
set -euo pipefail

packages=(golang-go rsync jq dpkg-dev build-essential golang-github-modern-go-reflect2-dev etcd-server
          openssl ca-certificates)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]} — run this script as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: installed ${missing[*]}"
