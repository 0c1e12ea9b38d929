"""Lab system VM images the simulator serves at GET /images/<file>, so templates can be registered from a URL
that really downloads.

File names follow the upstream download server (download.cloudstack.org/systemvm/<x.y>/):
`systemvmtemplate-<version>-<kvm|xen|vmware|hyperv|ovm|lxc>.<ext>`. Any version works; the bytes are
pseudo-random, a few hundred KB, and always the same for the same file name.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re

# hypervisor (as CloudStack names it, lowercased) → (file tag, extension, CloudStack format)
HYPERVISOR_FILES: dict[str, tuple[str, str, str]] = {
    "kvm": ("kvm", "qcow2.bz2", "QCOW2"),
    "xenserver": ("xen", "vhd.bz2", "VHD"),
    "vmware": ("vmware", "ova", "OVA"),
    "hyperv": ("hyperv", "vhd.zip", "VHD"),
    "ovm3": ("ovm", "raw.bz2", "RAW"),
    "lxc": ("lxc", "qcow2.bz2", "QCOW2"),
}
_FILE = re.compile(r"^systemvmtemplate-(?P<version>[0-9A-Za-z.]+(?:-[0-9A-Za-z.]+)*?)-"
                   r"(?P<tag>kvm|xen|vmware|hyperv|ovm|lxc)\.(?P<ext>[a-z0-9.]+)$")
ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384",
              "SHA-512": "sha512"}


def file_name(hypervisor: str, version: str) -> str:
    key = hypervisor.lower()
    if key not in HYPERVISOR_FILES:
        raise ValueError(f"no lab image for hypervisor {hypervisor!r}; known: {', '.join(HYPERVISOR_FILES)}")
    tag, extension, _ = HYPERVISOR_FILES[key]
    return f"systemvmtemplate-{version}-{tag}.{extension}"


def image_format(hypervisor: str) -> str:
    """The registerTemplate `format` of the lab image for this hypervisor (QCOW2 for KVM, VHD for XenServer…)."""
    return HYPERVISOR_FILES[hypervisor.lower()][2]


def is_image(name: str) -> bool:
    return bool(_FILE.match(name))


@functools.lru_cache(maxsize=32)
def image_bytes(name: str) -> bytes:
    """The content of /images/<name>: deterministic, 256-320 KiB. Raises KeyError for names that are no image."""
    if not _FILE.match(name):
        raise KeyError(name)
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    size = 256 * 1024 + seed % (64 * 1024)
    return random.Random(seed).randbytes(size)


def checksum(data: bytes, algorithm: str = "SHA-512") -> str:
    """CloudStack's checksum notation: "{SHA-512}<hex>"."""
    name = ALGORITHMS.get(algorithm.upper())
    if name is None:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    return "{" + algorithm.upper() + "}" + hashlib.new(name, data).hexdigest()
