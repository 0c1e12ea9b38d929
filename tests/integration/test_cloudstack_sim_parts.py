"""Pieces of the lab CloudStack simulator on their own: the signature rule, expiry parsing, version comparison
and parsing, lab image names. Needs no Kubernetes and no server."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cs import CloudStack

from stackops_lab.cloudstack import images, signing, versions


def test_the_signature_is_the_one_cs_computes() -> None:
    params = {"command": "listZones", "response": "json", "apiKey": "KEY", "name": "a b/c*d+e",
              "signatureVersion": "3", "expires": "2030-01-01T00:00:00+0000"}
    signed = dict(params)
    CloudStack("http://unused/client/api", "KEY", "SECRET")._sign(signed)
    assert signing.signature(params, "SECRET") == signed["signature"]
    assert signing.verify(signed, "SECRET") and not signing.verify(signed, "OTHER")
    assert signing.unsigned_request(params).startswith("apiKey=KEY&command=listZones&expires=2030-01-01T00%3A00")
    assert "name=a%20b%2Fc*d%2Be" in signing.unsigned_request(params)


def test_java_url_encoding_encodes_the_tilde() -> None:
    assert signing.java_url_encode("a~b c*d.e-f_g") == "a%7Eb%20c*d.e-f_g"


@pytest.mark.parametrize("text, expected", [
    ("2030-01-02T03:04:05+0000", datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2030-01-02T05:04:05+0200", datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2030-01-02T03:04:05-01:30", datetime(2030, 1, 2, 4, 34, 5, tzinfo=timezone.utc)),
    ("2030-01-02T03:04:05.250Z", datetime(2030, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)),
    ("2030-01-02T03:04:05Z", None),
    ("2030-13-02T03:04:05+0000", None),
    ("tomorrow", None),
])
def test_expires_formats(text: str, expected: datetime | None) -> None:
    assert signing.parse_expires(text) == expected


def test_an_expired_v3_request_does_not_verify() -> None:
    past = (datetime.now(timezone.utc) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S%z")
    params = {"command": "listZones", "apiKey": "K", "signatureVersion": "3", "expires": past}
    params["signature"] = signing.signature(params, "S")
    assert not signing.verify(params, "S")
    del params["expires"]
    params["signature"] = signing.signature(params, "S")
    assert not signing.verify(params, "S")  # version 3 needs expires


@pytest.mark.parametrize("left, right, result", [
    ("4.18.0", "4.18.0.0", 0), ("4.18.0", "4.18.0.1", -1), ("4.19.1", "4.18.2", 1), ("4.9.3", "4.10.0", -1),
    ("4.20", "4.19.9", 1), ("UNKNOWN", "4.10.0", -1),
])
def test_versions_compare_numerically_part_by_part(left: str, right: str, result: int) -> None:
    assert versions.compare(left, right) == result


def test_requires_upgrade_and_template_versions() -> None:
    assert versions.requires_upgrade(None, "4.10.0") and versions.requires_upgrade("UNKNOWN", "4.10.0")
    assert versions.requires_upgrade("4.18.0", "4.19.1") and not versions.requires_upgrade("4.19.1.0", "4.19.1")
    assert versions.template_version("systemvm-kvm-4.19.1", None) == "4.19.1"
    assert versions.template_version("custom router", "http://h/systemvmtemplate-4.18.2.1-kvm.qcow2.bz2") == "4.18.2.1"
    assert versions.template_version("custom router", "http://h/router.qcow2") == "UNKNOWN"


def test_lab_image_names_and_bytes() -> None:
    assert images.file_name("KVM", "4.19.1") == "systemvmtemplate-4.19.1-kvm.qcow2.bz2"
    assert images.file_name("XenServer", "4.19.1") == "systemvmtemplate-4.19.1-xen.vhd.bz2"
    assert images.file_name("VMware", "4.19.1.0-custom") == "systemvmtemplate-4.19.1.0-custom-vmware.ova"
    first = images.image_bytes("systemvmtemplate-4.19.1-kvm.qcow2.bz2")
    assert first == images.image_bytes("systemvmtemplate-4.19.1-kvm.qcow2.bz2")
    assert first != images.image_bytes("systemvmtemplate-4.19.2-kvm.qcow2.bz2")
    assert images.is_image("systemvmtemplate-4.19.1.0-custom-vmware.ova")
    with pytest.raises(KeyError):
        images.image_bytes("../../etc/passwd")
    with pytest.raises(ValueError):
        images.file_name("Bhyve", "1.0")
