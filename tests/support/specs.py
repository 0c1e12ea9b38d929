"""Spec data shared by the unit and integration tests: a minimal and a full valid spec of each kind."""
from __future__ import annotations

from typing import Any

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3Xx5h9nJ+ZQ2b9W6zQn0bS3oXnPjV8H3y1s7gYk2Lm"
RSA_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7vbqajDhA/2+3nP5vLe0ZxYp="
SHA512 = "{SHA-512}" + "ab12" * 32

# --- minimal and full specs (as they appear under `spec:` in YAML) ------------------------------------------------

MINIMAL: dict[str, dict[str, Any]] = {
    "XenPool": {
        "members": [{"name": "xen1", "address": "10.0.0.11"}],
        "credentialsSecretRef": {"name": "xen-root"},
        "tls": {"insecureSkipVerify": True},
    },
    "KvmHost": {
        "address": "10.0.1.21",
        "ssh": {"privateKeySecretRef": {"name": "kvm-ssh"}, "hostKey": HOST_KEY},
    },
    "SystemVMTemplate": {
        "cloudstack": {"secretRef": {"name": "cloudstack-admin"}},
        "version": "4.19.1",
        "templates": [{
            "hypervisor": "KVM",
            "url": "https://download.cloudstack.org/systemvm/4.19/systemvmtemplate-4.19.1-kvm.qcow2.bz2",
            "checksum": SHA512,
            "format": "QCOW2",
        }],
    },
    "CloudStackRelease": {
        "source": {"repository": "https://github.com/apache/cloudstack.git", "baseRef": "4.8"},
        "version": "4.8.0.16",
        "builder": {"type": "Local"},
    },
}

FULL: dict[str, dict[str, Any]] = {
    "XenPool": {
        "managementPolicy": "Observe",
        "members": [
            {"name": "xen1", "address": "10.0.0.11", "sshHostKey": HOST_KEY},
            {"name": "xen2", "address": "xen2.example.com", "sshHostKey": HOST_KEY},
            {"name": "xen3", "address": "fd00::13", "sshHostKey": RSA_KEY},
        ],
        "master": "xen1",
        "credentialsSecretRef": {"name": "xen-root"},
        "tls": {"caSecretRef": {"name": "xen-ca", "key": "ca.pem"}, "insecureSkipVerify": False},
        "ha": {
            "enabled": True,
            "heartbeatSR": {"uuid": "2b3c4d5e-6f70-8192-a3b4-c5d6e7f80912"},
            "timeoutSeconds": 240,
            "hostFailuresToTolerate": 1,
            "allowOvercommit": False,
            "allowFewerThanThreeHosts": False,
        },
        "vswitchController": {"address": "10.0.0.5"},
        "vmHARestartPriority": {"policy": "Ignore"},
        "hostRecovery": {"enableDisabledHosts": False},
        "masterFailover": {"policy": "EmergencyTransition", "delaySeconds": 600},
        "uniqueness": {
            "policy": "MakeUnique",
            "ssh": {"user": "root", "port": 2222, "privateKeySecretRef": {"name": "xen-ssh", "key": "id_ed25519"},
                    "connectTimeoutSeconds": 20},
        },
        "cloudstack": {
            "connection": {"secretRef": {"name": "cloudstack-admin"}},
            "zone": "zone1", "pod": "pod1", "cluster": "xen-cluster-1",
        },
        "allowedDestructiveActions": ["Eject"],
        "deletionPolicy": "Delete",
        "resyncIntervalSeconds": 600,
    },
    "KvmHost": {
        "managementPolicy": "Manage",
        "address": "kvm1.example.com",
        "ssh": {"user": "stackops", "port": 22, "privateKeySecretRef": {"name": "kvm-ssh", "key": "ssh-privatekey"},
                "hostKey": HOST_KEY, "sudo": True, "connectTimeoutSeconds": 15},
        "packages": {"install": True, "repositoryURL": "http://repo.example.com:8080/cloudstack/4.19/",
                     "signingKeySecretRef": {"name": "cloudstack-repo-key", "key": "signing-key.asc"},
                     "allowPlainHTTP": True,
                     "cloudstackAgentVersion": "4.19.1.0-1.el8", "extra": ["qemu-guest-agent", "libvirt-daemon-kvm"]},
        "openvswitch": {
            "bridges": [
                {
                    "name": "cloudbr0",
                    "datapathType": "system",
                    "mtu": 9000,
                    "addresses": ["10.0.1.21/24"],
                    "ports": ["eno1"],
                    "bonds": [{"name": "bond0", "interfaces": ["eno49", "eno50"], "bondMode": "balance-tcp",
                               "lacp": "active", "lacpTime": "fast"}],
                    "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": ["10.1.0.21/24"], "mtu": 1500}],
                    "tunnels": [{"name": "vxlan0", "type": "vxlan", "remoteIP": "10.0.1.22", "key": 5000}],
                    "internalPorts": [{"name": "vi0", "addresses": ["10.2.0.21/24"], "mtu": 1500}],
                },
                {"name": "cloudbr1", "datapathType": "netdev", "ports": ["eno2"]},
            ],
            "manager": {"protocol": "ssl", "address": "nsx.example.com", "port": 6632,
                        "clientCertificate": "Secret", "certificateSecretRef": {"name": "ovs-client"},
                        "bootstrapCA": False},
            "rollbackTimeoutSeconds": 120,
        },
        "libvirt": {"listenTls": False, "listenTcp": True, "tcpPort": 16509, "authTcp": "sasl", "mdnsAdv": False},
        "qemu": {"vncListen": "0.0.0.0"},
        "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch", "guest.cpu.mode": "host-passthrough"},
                            "logLevel": "DEBUG"},
        "securityPolicy": {"appArmor": "DisableLibvirt", "seLinux": "Permissive"},
        "cloudstack": {"connection": {"secretRef": {"name": "cloudstack-admin"}}, "zone": "zone1", "pod": "pod1",
                       "cluster": "kvm-cluster-1", "hostTags": ["ssd", "gpu.a100"]},
        "deletionPolicy": "Delete",
        "resyncIntervalSeconds": 900,
    },
    "SystemVMTemplate": {
        "managementPolicy": "Manage",
        "cloudstack": {"secretRef": {"name": "cloudstack-admin"}},
        "version": "4.19.1",
        "templates": [
            {"hypervisor": "KVM", "url": "https://download.example.com/systemvm-kvm.qcow2.bz2", "checksum": SHA512,
             "format": "QCOW2", "zones": ["zone1", "zone-2"], "name": "systemvm-kvm-4.19.1",
             "osType": "Debian GNU/Linux 12 (64-bit)"},
            {"hypervisor": "XenServer", "url": "http://download.example.com/systemvm-xen.vhd.bz2",
             "checksum": "0123456789abcdef0123456789abcdef", "format": "VHD"},
        ],
        "activation": {"setRouterTemplate": True, "setMinimumRequiredVersion": False},
        "rollout": {
            "systemVMs": {"replace": False},
            "routers": {"enabled": True, "maxUnavailable": "10%", "onlyRequiringUpgrade": False,
                        "respectRedundantPairs": True, "maxRetries": 5,
                        "maintenanceWindow": {"days": ["Sat", "Sun"], "start": "02:30", "durationMinutes": 180,
                                              "timeZone": "Europe/Amsterdam"}},
        },
        "notifications": {"webhookURLSecretRef": {"name": "tenant-webhook", "key": "url"}},
        "deletionPolicy": "Delete",
        "resyncIntervalSeconds": 60,
    },
    "CloudStackRelease": {
        "managementPolicy": "Manage",
        "source": {
            "repository": "ssh://git@git.example.com:2222/cloud/cloudstack.git",
            "baseRef": "release/4.8",
            "upstream": {"repository": "https://github.com/apache/cloudstack.git", "ref": "4.8"},
        },
        "version": "4.8.0.16",
        "versionRule": "FourPart",
        "allowSchemaUpgrade": True,
        "pullRequests": [{"number": 1234}, {"number": 1301, "patchURL": "https://github.com/apache/cloudstack/pull/1301.patch"}],
        "builder": {"type": "SSH", "ssh": {"address": "10.0.3.5", "ssh": {"user": "builder",
                                                                          "privateKeySecretRef": {"name": "builder-ssh"},
                                                                          "hostKey": HOST_KEY, "sudo": True}},
                    "workDir": "/srv/build"},
        "build": {"mavenProfiles": ["systemvm", "noredist"], "skipTests": False,
                  "mavenCommand": ["mvn", "-T", "4", "clean", "install", "-Psystemvm,noredist"],
                  "versionCommand": ["tools/build/setnextversion.sh", "--version", "4.8.0.16"],
                  "timeoutMinutes": 240},
        "packaging": {"enabled": True, "distribution": "el8"},
        "publish": {"directory": "/srv/repo/4.8", "baseURL": "https://repo.example.com/4.8/"},
        "deletionPolicy": "Orphan",
    },
}
