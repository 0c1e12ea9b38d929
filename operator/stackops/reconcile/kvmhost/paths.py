"""Where KvmHost's files are on a host: the one list the planner, the probe and the host scripts use. The scripts
(scripts/*.sh) get a path in a preamble of shell assignments (`with_paths`), never as a copy of their own."""
from __future__ import annotations

from ..shell import Value, with_values

LIBVIRTD_CONF = "/etc/libvirt/libvirtd.conf"
QEMU_CONF = "/etc/libvirt/qemu.conf"
AGENT_PROPERTIES = "/etc/cloudstack/agent/agent.properties"
AGENT_LOG4J = "/etc/cloudstack/agent/log4j-cloud.xml"
LIBVIRTD_DEFAULTS = {"apt": "/etc/default/libvirtd", "dnf": "/etc/sysconfig/libvirtd", "yum": "/etc/sysconfig/libvirtd"}
SELINUX_CONFIG = "/etc/selinux/config"
APPARMOR_DIR = "/etc/apparmor.d"  # its disable/ holds a link for each profile not loaded at boot

# spec.packages.repositoryURL as a source of the host's package manager, and its signing key (repository.py)
REPOSITORY_SOURCES = {"apt": "/etc/apt/sources.list.d/stackops-cloudstack.list",
                      "dnf": "/etc/yum.repos.d/stackops-cloudstack.repo",
                      "yum": "/etc/yum.repos.d/stackops-cloudstack.repo"}
REPOSITORY_KEYS = {"apt": "/etc/apt/keyrings/stackops-cloudstack.asc",
                   "dnf": "/etc/pki/rpm-gpg/RPM-GPG-KEY-stackops-cloudstack",
                   "yum": "/etc/pki/rpm-gpg/RPM-GPG-KEY-stackops-cloudstack"}

# The OVSDB manager's client key and certificates (client_certificate.py)
PKI_DIR = "/etc/openvswitch"
GENERATED_KEY = f"{PKI_DIR}/ovsclient-privkey.pem"  # ovs-pki's names (clientCertificate: Generate)
GENERATED_CERT = f"{PKI_DIR}/ovsclient-cert.pem"
CA_CERT = f"{PKI_DIR}/cacert.pem"  # where --bootstrap stores the CA it learns
SECRET_KEY = f"{PKI_DIR}/stackops-client-privkey.pem"
SECRET_CERT = f"{PKI_DIR}/stackops-client-cert.pem"
SECRET_CA = f"{PKI_DIR}/stackops-cacert.pem"
SECRET_FILES = (SECRET_KEY, SECRET_CERT, SECRET_CA)
OWNER_REFERENCE = f"{PKI_DIR}/conf.db"  # the files get the owner of Open vSwitch's database

# Guarded changes of the management path (guard.py): one directory per checkpoint
CHECKPOINT_DIR = "/var/lib/stackops/checkpoint"

# The network configuration that brings the spec's bridges, addresses and MTUs back at boot (network.py): apt
# hosts' ifupdown, the file stackops owns and the main file that must source it; EL hosts' network-scripts, one
# ifcfg-<name> per interface (the probe reads every one, IFCFG_FILES is a shell glob).
NETWORK_INTERFACES = "/etc/network/interfaces"
NETWORK_SOURCED_DIR = "/etc/network/interfaces.d"
NETWORK_STACKOPS = f"{NETWORK_SOURCED_DIR}/stackops"
IFCFG_DIR = "/etc/sysconfig/network-scripts"
IFCFG_FILES = f"{IFCFG_DIR}/ifcfg-*"

# The configuration files the probe reads (base64), each once, in this order.
PROBED_FILES = tuple(dict.fromkeys((LIBVIRTD_CONF, QEMU_CONF, AGENT_PROPERTIES, AGENT_LOG4J,
                                    *LIBVIRTD_DEFAULTS.values(), SELINUX_CONFIG, *REPOSITORY_SOURCES.values(),
                                    *REPOSITORY_KEYS.values(), NETWORK_INTERFACES,
                                    NETWORK_STACKOPS)))

# The host's own word that it needs a reboot (Debian/Ubuntu: update-notifier-common's and unattended-upgrades'
# sentinel, written by packages' postinst; /var/run is a link to /run): the file, and the packages that asked, one a
# line (may repeat). Read by the probe with the files, never written by stackops.
REBOOT_REQUIRED = "/var/run/reboot-required"
REBOOT_REQUIRED_PKGS = "/var/run/reboot-required.pkgs"
REBOOT_FILES = (REBOOT_REQUIRED, REBOOT_REQUIRED_PKGS)

# What a script may ask for, by the name it uses.
SHARED: dict[str, Value] = {
    "PROBED_FILES": PROBED_FILES, "GENERATED_CERT": GENERATED_CERT, "SECRET_FILES": SECRET_FILES,
    "SECRET_CERT": SECRET_CERT, "APPARMOR_DIR": APPARMOR_DIR, "CHECKPOINT_DIR": CHECKPOINT_DIR,
    "REBOOT_FILES": REBOOT_FILES, "IFCFG_FILES": IFCFG_FILES,
}


def with_paths(script: str, *names: str) -> str:
    """`script` with the assignments of the paths `names` (keys of SHARED) before it."""
    return with_values(script, "reconcile/kvmhost/paths.py", {name: SHARED[name] for name in names})
