#!/usr/bin/env bash
# System packages stackops' tests and lab need (Debian 12). Installs only what is missing.
#   - kube-apiserver is built once from Debian's `kubernetes` source package: golang-go, rsync, jq, dpkg-dev,
#     build-essential, golang-github-modern-go-reflect2-dev (the fix for Go >= 1.18)
#   - etcd-server: the API server's store
#   - the lab node (stackops_lab.node, `stackops lab up --node`): containerd and runc (the node's own containerd,
#     started by the lab with a private config, root, state and socket under the lab directory; the package's
#     service is never started: this machine's containerd is not used), containernetworking-plugins (CNI: bridge,
#     host-local, portmap, loopback), conntrack (kube-proxy), busybox-static (the e2e tests' small image);
#     kubelet, kube-proxy, kube-controller-manager and kube-scheduler are built from the same source as
#     kube-apiserver, the sandbox image from its build/pause (libc6-dev: a static binary)
#   - KVM lab hosts (stackops_lab.hosts): openssh-server, openvswitch-switch, libvirt-daemon-system (with its
#     sysv flavour: no systemd needed), libvirt-clients, qemu-system-x86 + qemu-utils (libvirt's QEMU driver
#     needs an emulator to answer `virsh version`), bridge-utils, iproute2, iputils-ping, iptables
#     (network partitions between the machine and a host: LabHost.cut_off), ifupdown (lab hosts boot through
#     the network configuration a KvmHost writes, /etc/network/interfaces.d/stackops: hostinit.py runs `ifup -a`;
#     its postinst only creates /etc/network/interfaces with the `source /etc/network/interfaces.d/*` line when
#     there is none, adds the netdev group and enables networking.service, which nothing starts here)
#   - CloudStackRelease builds (stackops_lab.release: a CloudStack-like source repository, its build scripts):
#     git, curl (pull-request patches), rpm (rpmbuild for packaging/package.sh), createrepo-c, python3 (the Maven
#     stand-in makes its jars with it)
#   - the virtual environment: python3-venv (Debian's python3 has no `venv` without it), make
#   - default-jdk-headless: agent.properties edits are checked against the real java.util.Properties.load
#   - the lab's signed apt repository (stackops_lab.aptrepo): gpg and gpg-agent (gpg signs through the agent;
#     the hosts' apt verifies with gpgv, which apt depends on)
#   - shellcheck: tests/unit/test_shell_scripts.py checks every shell script (the .sh files that run on hosts,
#     scripts/, .ci/run)
#   - strace: counts the processes the KvmHost probe starts on a lab host (stackops_lab.spawns: the e2e test
#     test_kvmhost_probe_processes and bench/kvmhost_fleet.py)
#   - the operator image (stackops_lab.image, `make image`): buildah builds the Dockerfile (no Docker engine),
#     debootstrap makes its Debian base where no registry is reachable; runc runs the image in its tests
# The daemons of these packages must not run on the machine itself (lab hosts run their own, in namespaces):
# their maintainer scripts are kept from starting them, and any that started anyway are stopped.
set -euo pipefail

packages=(golang-go rsync jq dpkg-dev build-essential golang-github-modern-go-reflect2-dev etcd-server
          containerd runc containernetworking-plugins conntrack busybox-static libc6-dev
          openssl ca-certificates
          openssh-server openvswitch-switch libvirt-daemon-system libvirt-daemon-system-sysv libvirt-clients
          qemu-system-x86 qemu-utils bridge-utils iproute2 iputils-ping iptables sudo ifupdown
          git curl rpm createrepo-c python3 python3-venv make
          default-jdk-headless gpg gpg-agent shellcheck strace
          buildah debootstrap runc)

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

# Without systemd, invoke-rc.d asks /usr/sbin/policy-rc.d whether a package may start its service: while we
# install, the answer is no (101), unless the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=no
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# stackops install-system-deps.sh: no service starts while packages install\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  own_policy=yes
fi
remove_policy() { if [ "$own_policy" = yes ]; then rm -f "$policy"; fi; }
trap remove_policy EXIT

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# stop_machine_daemon NAME PIDFILE: stop NAME if its pidfile names a running NAME of the machine itself (its
# own network namespace: lab hosts' daemons keep their pidfiles in their own /run anyway).
stop_machine_daemon() {
  local name=$1 pidfile=$2 pid
  [ -r "$pidfile" ] || return 0
  pid=$(cat "$pidfile" 2>/dev/null || true)
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 0
  [ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ] || return 0
  echo "stopping $name (pid $pid) that a package started on this machine"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
stop_machine_daemon sshd /run/sshd.pid
stop_machine_daemon ovs-vswitchd /run/openvswitch/ovs-vswitchd.pid
stop_machine_daemon ovsdb-server /run/openvswitch/ovsdb-server.pid
stop_machine_daemon libvirtd /run/libvirtd.pid
stop_machine_daemon virtlogd /run/virtlogd.pid
stop_machine_daemon virtlockd /run/virtlockd.pid
echo "system packages: installed ${missing[*]}"
