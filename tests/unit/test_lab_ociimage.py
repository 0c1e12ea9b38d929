"""The lab's OCI archives (stackops_lab.ociimage): the layout `buildah push … oci-archive:PATH:NAME` writes, which the
lab node loads (stackops_lab.node.Node.load_image names the image after its index's ref.name annotation)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from stackops_lab import ociimage
from stackops_lab.node import oci_archive_names


def test_archive_holds_an_oci_layout_whose_blobs_match_their_digests(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    archive = ociimage.write_archive(ociimage.pause_image(binary, "stackops.lab/pause:3.4.1"), tmp_path / "a.tar")
    with tarfile.open(archive) as tar:
        members = {member.name: tar.extractfile(member) for member in tar.getmembers() if member.isfile()}
        blobs = {name: file.read() for name, file in members.items() if file is not None}
    assert json.loads(blobs["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in blobs.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.removeprefix("blobs/sha256/")
    index = json.loads(blobs["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "stackops.lab/pause:3.4.1"}
    manifest = json.loads(blobs[f"blobs/sha256/{entry['digest'].removeprefix('sha256:')}"])
    config = json.loads(blobs[f"blobs/sha256/{manifest['config']['digest'].removeprefix('sha256:')}"])
    layer = gzip.decompress(blobs[f"blobs/sha256/{manifest['layers'][0]['digest'].removeprefix('sha256:')}"])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        pause = tar.getmember("pause")
        assert pause.mode == 0o755
        assert tar.extractfile(pause).read() == b"\x7fELF not really"  # type: ignore[union-attr]
    assert oci_archive_names(archive) == ["stackops.lab/pause:3.4.1"]


def test_busybox_image_links_its_applets(tmp_path: Path) -> None:
    image = ociimage.busybox_image("stackops.lab/busybox:test", applets=("sh", "wget"))
    assert image.links == {"/bin/sh": "busybox", "/bin/wget": "busybox"}
    with tarfile.open(fileobj=io.BytesIO(ociimage.layer_tar(image))) as tar:
        names = tar.getnames()
    assert {"bin", "bin/busybox", "bin/sh", "bin/wget", "tmp", "www"} <= set(names)
