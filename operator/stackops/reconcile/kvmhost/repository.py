"""spec.packages.repositoryURL as a source of the host's package manager, verified with the repository's OpenPGP
key: a flat apt repository (as dpkg-scanpackages and CloudStack's package builds publish one) with
`signed-by=<keyring>`, or a yum/dnf repository with `gpgcheck=1`, `repo_gpgcheck=1` and `gpgkey=file://<key>`.

repo_gpgcheck makes dnf/yum verify the repository metadata (`repodata/repomd.xml.asc`) as apt verifies the
`Release` file: without it, whoever sits between host and repository can hide updates or offer an older, still
validly signed package. An unsigned repository (`allowUnsigned`) is written as before: apt `[trusted=yes]`,
dnf/yum `gpgcheck=0`.

The key comes from a Secret (a public key, but one the spec names by reference like every other credential) and
is written as armored text: apt reads an armored keyring when its name ends in `.asc` (apt 2.6 on Debian 12), rpm
imports armored keys. Pure functions; the planner calls plan_repository.
"""
from __future__ import annotations

import base64
import binascii
import re

from .actions import HostAction, RunCommand, WriteFile
from .paths import REPOSITORY_KEYS, REPOSITORY_SOURCES

SOURCE_FILES = REPOSITORY_SOURCES
KEY_FILES = REPOSITORY_KEYS
MARKER = "# Written by stackops from the KvmHost's spec.packages.repositoryURL"

BEGIN, END = "-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----END PGP PUBLIC KEY BLOCK-----"
_ARMOR_HEADER = re.compile(r"[A-Za-z][A-Za-z0-9-]*: [\x20-\x7e]*")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_CHECKSUM_LINE = re.compile(r"=[A-Za-z0-9+/]{4}")
PUBLIC_KEY_PACKET = 6  # RFC 4880 4.3: a transferable public key starts with a Public-Key packet


class KeyInvalid(ValueError):
    """The Secret's value is not one ASCII-armored OpenPGP public key (the message never quotes it)."""


def _first_packet_tag(data: bytes) -> int:
    """The packet tag of the first OpenPGP packet (RFC 4880 4.2: old or new format header)."""
    first = data[0]
    if not first & 0x80:
        raise KeyInvalid("its data is not an OpenPGP packet")
    return first & 0x3F if first & 0x40 else (first >> 2) & 0x0F


def armored_public_key(text: str) -> str:
    """The key as it is written to the host (CRLF read as LF, surrounding blank space dropped, one final newline);
    KeyInvalid unless it is exactly one armored public key block: a private key, a binary key, a fingerprint or
    anything else is refused before it reaches a host."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").strip().split("\n")]
    if "PRIVATE KEY" in lines[0]:
        raise KeyInvalid("it is a private key: give the public key (`gpg --armor --export <key id>`)")
    if lines[0] != BEGIN or lines[-1] != END or len(lines) < 3:
        raise KeyInvalid(f"it must be one ASCII-armored OpenPGP public key, from `{BEGIN}` to `{END}` "
                         "(`gpg --armor --export <key id>`)")
    body = lines[1:-1]
    while body and _ARMOR_HEADER.fullmatch(body[0]):
        body.pop(0)
    if body and body[0] == "":
        body.pop(0)
    if body and _CHECKSUM_LINE.fullmatch(body[-1]):
        body.pop()
    if not body or not all(_BASE64_LINE.fullmatch(line) for line in body):
        raise KeyInvalid("its armored data is not base64 (one key block only, nothing after the checksum)")
    try:
        data = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise KeyInvalid("its armored data is not valid base64") from None
    if not data or _first_packet_tag(data) != PUBLIC_KEY_PACKET:
        raise KeyInvalid("its data does not start with an OpenPGP public key packet")
    return "\n".join(lines) + "\n"


def source(manager: str, url: str, signed: bool) -> str:
    """The source file's content: verified with the key file when `signed`, else trusted as it is."""
    if manager == "apt":
        option = f"signed-by={KEY_FILES['apt']}" if signed else "trusted=yes"
        return f"{MARKER}\ndeb [{option}] {url.rstrip('/')} /\n"
    checks = f"gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://{KEY_FILES[manager]}\n" if signed else "gpgcheck=0\n"
    return f"{MARKER}\n[stackops-cloudstack]\nname=CloudStack packages (stackops)\nbaseurl={url}\nenabled=1\n{checks}"


def plan_repository(manager: str, url: str | None, key: str | None, files: dict[str, str | None]) -> list[HostAction]:
    """The changes that make the host's source file (and key file) say what the spec says: `key` is the armored
    public key (armored_public_key's result) or None for an unsigned repository; `files` the host's files as
    observed. The key is written before a source that names it and removed after a source that no longer does,
    so that the package manager never reads a source whose key is missing. A source stackops wrote (it starts
    with MARKER) is removed when the spec drops the URL; the key file bears stackops' name and is removed with it.
    """
    path, key_path = SOURCE_FILES.get(manager), KEY_FILES.get(manager)
    if path is None or key_path is None:
        return []
    have, have_key = files.get(path), files.get(key_path)
    remove_key = [RunCommand(f"remove the package repository key {key_path} (no longer in the spec)",
                             operation="remove", command=("rm", "-f", key_path))
                  ] if have_key is not None and key is None else []
    if url is None:
        if have is not None and have.startswith(MARKER):
            return [RunCommand(f"remove the package repository source {path} (no longer in the spec)",
                               operation="remove", command=("rm", "-f", path)), *remove_key]
        return remove_key
    actions: list[HostAction] = []
    if key is not None and have_key != key:
        actions.append(WriteFile(f"{'add' if have_key is None else 'update'} the signing key of the package "
                                 f"repository {url} ({key_path})", operation="add" if have_key is None else "change",
                                 path=key_path, content=key, backup=False, readable=True))
    content = source(manager, url, signed=key is not None)
    if have != content:
        actions.append(WriteFile(f"{'add' if have is None else 'update'} the package repository {url} ({path})",
                                 operation="add" if have is None else "change", path=path, content=content,
                                 backup=False))
    return actions + remove_key
