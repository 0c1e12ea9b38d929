# shellcheck shell=sh
# The KvmHost probe as it was before issue 18 (reconcile/kvmhost/probe.SCRIPT at commit 9aebef9, its paths
# included), kept for `bench/kvmhost_fleet.py --baseline` only: about 35 processes a host (one dpkg-query per
# package, six ovs-vsctl, a base64 per file, …). Its output is what probe.parse reads as before issue 18.
# set by stackops (reconcile/kvmhost/paths.py)
PROBED_FILES='/etc/libvirt/libvirtd.conf /etc/libvirt/qemu.conf /etc/cloudstack/agent/agent.properties /etc/cloudstack/agent/log4j-cloud.xml /etc/default/libvirtd /etc/sysconfig/libvirtd /etc/selinux/config /etc/apt/sources.list.d/stackops-cloudstack.list /etc/yum.repos.d/stackops-cloudstack.repo /etc/apt/keyrings/stackops-cloudstack.asc /etc/pki/rpm-gpg/RPM-GPG-KEY-stackops-cloudstack'
GENERATED_CERT=/etc/openvswitch/ovsclient-cert.pem
SECRET_FILES='/etc/openvswitch/stackops-client-privkey.pem /etc/openvswitch/stackops-client-cert.pem /etc/openvswitch/stackops-cacert.pem'
SECRET_CERT=/etc/openvswitch/stackops-client-cert.pem
APPARMOR_DIR=/etc/apparmor.d
# shellcheck shell=sh
# The KvmHost probe (probe.py): everything observe needs in one SSH round trip, as sections `@@<name> <argument>`
# followed by their output. probe-checkpoints.sh, the last section, follows this text.
# Positional parameters ($@) are the package names to query, passed quoted by the operator: `apt:name` /
# `yum:name` for a name only that manager uses, the pinned agent as name=version. For packages to install (not
# installed, or not the pinned version) on an apt host it also reports the age of the package index and the
# versions it lists (`apt-cache madison`): nothing more for a host whose packages are all there.
# The paths (PROBED_FILES, GENERATED_CERT, SECRET_FILES, SECRET_CERT, APPARMOR_DIR) come from paths.py.
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
section() { printf '\n@@%s %s\n' "$1" "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }
section os -
# shellcheck source=/dev/null # the host's own file
( . /etc/os-release 2>/dev/null && printf '%s\n' "$PRETTY_NAME" )
section kernel -; uname -r
section pm -
if have apt-get; then echo apt; elif have dnf; then echo dnf; elif have yum; then echo yum; fi
section packages -
todo=; tab=$(printf '\t')
if have dpkg-query; then
  for a in "$@"; do
    case "$a" in yum:*) continue ;; apt:*) a=${a#apt:} ;; esac
    p=${a%%=*}; v=; case "$a" in *=*) v=${a#*=} ;; esac
    line=$(dpkg-query -W -f='${Package}\t${Version}\t${db:Status-Status}\n' "$p" 2>/dev/null) \
      && printf '%s\n' "$line"
    case "$line" in
      *"${tab}installed") if [ -z "$v" ] || [ "$line" = "$p$tab$v${tab}installed" ]; then continue; fi ;;
    esac
    todo="$todo $p"
  done
elif have rpm; then
  for a in "$@"; do
    case "$a" in apt:*) continue ;; yum:*) a=${a#yum:} ;; esac
    rpm -q --qf '%{NAME}\t%{VERSION}-%{RELEASE}\tinstalled\n' "${a%%=*}" 2>/dev/null | grep -v 'not installed'
  done
fi
section apt-index -
if [ -n "$todo" ] && have apt-cache; then
  newest=$(find /var/lib/apt/lists -maxdepth 1 -type f -name '*_Packages*' -printf '%T@\n' 2>/dev/null \
    | sort -n | tail -n 1)
  if [ -n "$newest" ]; then printf 'age %s\n' "$(( $(date +%s) - ${newest%.*} ))"; else echo 'age none'; fi
  for p in $todo; do
    apt-cache madison "$p" 2>/dev/null \
      | awk -F'|' -v p="$p" '$3 ~ /Packages/ { gsub(/[ \t]/, "", $2); print "available " p " " $2 }'
  done
fi
section ovs-version -; have ovs-vsctl && ovs-vsctl --version 2>/dev/null | head -n 1
if have ovs-vsctl && ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
  section ovs-bridge -
  ovs-vsctl --timeout=5 --format=json --data=json --columns=_uuid,name,datapath_type,ports,external_ids list Bridge
  section ovs-port -
  ovs-vsctl --timeout=5 --format=json --data=json \
    --columns=_uuid,name,interfaces,tag,fake_bridge,bond_mode,lacp,other_config,external_ids list Port
  section ovs-interface -
  ovs-vsctl --timeout=5 --format=json --data=json --columns=_uuid,name,type,options,mtu_request,mtu,external_ids \
    list Interface
  section ovs-manager -
  ovs-vsctl --timeout=5 --format=json --data=json --columns=target,is_connected list Manager
  section ovs-ssl -; ovs-vsctl --timeout=5 get-ssl 2>/dev/null
fi
section libvirt-version -; have libvirtd && libvirtd --version 2>/dev/null | head -n 1
section qemu-version -
for q in qemu-system-x86_64 /usr/libexec/qemu-kvm qemu-kvm; do
  if have "$q"; then "$q" --version 2>/dev/null | head -n 1; break; fi
done
for f in $PROBED_FILES; do
  section file "$f"; if [ -f "$f" ]; then base64 < "$f"; else echo @@missing; fi
done
section ip-addr -; have ip && ip -j -4 addr show 2>/dev/null
section ip-link -; have ip && ip -j link show 2>/dev/null
section services -
for s in libvirtd openvswitch-switch openvswitch cloudstack-agent; do
  if have systemctl; then printf '%s %s\n' "$s" "$(systemctl is-active "$s" 2>/dev/null)"; fi
done
section apparmor -
if [ -r /sys/module/apparmor/parameters/enabled ]; then cat /sys/module/apparmor/parameters/enabled; fi
section apparmor-disabled -; ls "$APPARMOR_DIR/disable" 2>/dev/null
section selinux -; have getenforce && getenforce 2>/dev/null
section certificate -
if [ -f "$GENERATED_CERT" ] && have openssl; then
  openssl x509 -in "$GENERATED_CERT" -noout -fingerprint -sha1 2>/dev/null
fi
section client-files -
for f in $SECRET_FILES; do
  if [ -f "$f" ]; then printf '%s %s %s\n' "$(stat -c %a "$f")" "$(sha256sum < "$f" | cut -d' ' -f1)" "$f"; fi
done
section client-certificate -
if [ -f "$SECRET_CERT" ] && have openssl; then
  openssl x509 -in "$SECRET_CERT" -noout -fingerprint -sha1 2>/dev/null
fi
section listening -; have ss && ss -Hltn 2>/dev/null
# set by stackops (reconcile/kvmhost/paths.py)
CHECKPOINT_DIR=/var/lib/stackops/checkpoint
# shellcheck shell=sh
# The probe's last section (after probe.sh, whose `section` it uses): this machine's checkpoints of guarded
# changes (guard.py), one line each, values base64 (guard.parse_checkpoints). CHECKPOINT_DIR comes from paths.py.
section checkpoints -
if [ -d "$CHECKPOINT_DIR" ]; then
  machine=$(cat /etc/machine-id 2>/dev/null || true)
  printf 'now %s\n' "$(date +%s)"
  for d in "$CHECKPOINT_DIR"/*/; do
    d=${d%/}
    [ -d "$d" ] || continue
    [ "$(cat "$d/machine-id" 2>/dev/null || true)" = "$machine" ] || continue
    printf 'checkpoint %s' "${d##*/}"
    for f in owner generation digest changes started expires applied progress rolled-back; do
      if [ -f "$d/$f" ]; then printf ' %s=%s' "$f" "$(base64 < "$d/$f" | tr -d '\n')"; fi
    done
    if [ -e "$d/confirmed" ]; then printf ' confirmed='; fi
    if [ -d "$d/decided" ]; then printf ' decided='; fi
    printf '\n'
  done
fi
true
