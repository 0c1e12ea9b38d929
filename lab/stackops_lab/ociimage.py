"""Small OCI image archives written directly (no registry, no builder): the node's sandbox ("pause") image and
test images made of a static binary.

`write_archive` writes the layout `buildah push … oci-archive:PATH:NAME` writes (oci-layout, index.json,
blobs/sha256/…, as one tar), so the node loads both the same way (`node.Node.load_image`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class Image:
    """A one-layer image: `files` maps an absolute path in the image to (content, mode); `links` to targets."""

    name: str  # fully qualified, e.g. "stackops.lab/pause:3.4.1"
    files: dict[str, tuple[bytes, int]]
    links: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    directories: tuple[str, ...] = ()


def layer_tar(image: Image) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parents = set(image.directories)
        for path in [*image.files, *image.links]:
            parts = path.strip("/").split("/")[:-1]
            parents.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        for directory in sorted(p.strip("/") for p in parents if p.strip("/")):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for path, (content, mode) in sorted(image.files.items()):
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
        for path, target in sorted(image.links.items()):
            info = tarfile.TarInfo(path.strip("/"))
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return buffer.getvalue()


def write_archive(image: Image, archive: Path) -> Path:
    """Write `image` as an OCI archive at `archive`, named as `buildah push … oci-archive:PATH:NAME` names it."""
    raw_layer = layer_tar(image)
    layer = gzip.compress(raw_layer, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": list(image.entrypoint) or None,
            "Cmd": list(image.cmd) or None,
            "User": image.user,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(raw_layer)]},
    }
    config_blob = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digest(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": LAYER, "digest": digest(layer), "size": len(layer)}],
    }
    manifest_blob = json.dumps(manifest).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": digest(manifest_blob),
            "size": len(manifest_blob),
            "annotations": {"org.opencontainers.image.ref.name": image.name},
        }],
    }
    members = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
    }
    for blob in (layer, config_blob, manifest_blob):
        members[f"blobs/sha256/{digest(blob).removeprefix('sha256:')}"] = blob
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return archive


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pause_image(binary: Path, name: str) -> Image:
    return Image(name=name, files={"/pause": (binary.read_bytes(), 0o755)}, entrypoint=("/pause",),
                 user="65535:65535")


BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static


def busybox_image(name: str, applets: tuple[str, ...] = ("sh", "wget", "nc", "httpd", "cat", "sleep", "ls",
                                                          "echo", "hostname", "ip", "ping", "test", "mkdir")
                  ) -> Image:
    """A static busybox with a few applets linked in /bin: enough for a test Pod's shell, server and probes."""
    links = {f"/bin/{applet}": "busybox" for applet in applets}
    return Image(name=name, files={"/bin/busybox": (BUSYBOX.read_bytes(), 0o755)}, links=links,
                 cmd=("/bin/sh",), directories=("tmp", "etc", "www"))
