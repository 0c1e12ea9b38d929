"""A configuration file's bytes that are not UTF-8 (an admin's Latin-1 comment or value in agent.properties,
qemu.conf, log4j-cloud.xml) survive the operator's edits: the probe's reading of the file, the plan's key-by-key
edit and the write (run here by sh, fed as the SSH driver feeds it, and through the guarded apply) change the
edited line only; every other byte stays as it was, and the written file plans nothing more."""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.kvmhost_probe import LOG4J_STOCK, OWNER, probe_output
from support.specs import HOST_KEY
from stackops.api.kvmhost import KvmHostSpec
from stackops.reconcile.kvmhost import guard
from stackops.reconcile.kvmhost.actions import WriteFile
from stackops.reconcile.kvmhost.plan import AGENT_LOG4J, AGENT_PROPERTIES, QEMU_CONF, plan
from stackops.reconcile.kvmhost.probe import parse

SPEC = KvmHostSpec.model_validate({
    "address": "10.250.0.11", "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
    "cloudstackAgent": {"logLevel": "DEBUG", "properties": {"guest.cpu.model": "host-passthrough"}},
    "qemu": {"vncListen": "127.0.0.1"},
})

# Latin-1 (é ü), UTF-8 (é), bytes that are no UTF-8 at all (a lone \xff, a truncated sequence, an encoded surrogate,
# an overlong /) and a \r\n line: (before, after) the edit.
PROPERTIES = (b"# Configuration de l'agent \xe9crite \xe0 la main\nzone=Z\xfcrich\nguest.cpu.model=qemu64\n"
              b"name=Caf\xc3\xa9\r\nbad=\xff \xe2\x82 \xed\xa0\x80 \xc0\xaf\nworkers=5\n",
              b"# Configuration de l'agent \xe9crite \xe0 la main\nzone=Z\xfcrich\nguest.cpu.model=host-passthrough\n"
              b"name=Caf\xc3\xa9\r\nbad=\xff \xe2\x82 \xed\xa0\x80 \xc0\xaf\nworkers=5\n")
QEMU = (b'# R\xe9seau de l\'h\xf4te\nvnc_listen = "0.0.0.0"\n# fin \xff\n',
        b'# R\xe9seau de l\'h\xf4te\nvnc_listen = "127.0.0.1"\n# fin \xff\n')
LOG4J = (b"<!-- modifi\xe9 par l'administrateur -->\n" + LOG4J_STOCK.encode(),
         b"<!-- modifi\xe9 par l'administrateur -->\n" + LOG4J_STOCK.replace("INFO", "DEBUG").encode())
FILES = {AGENT_PROPERTIES: PROPERTIES, QEMU_CONF: QEMU, AGENT_LOG4J: LOG4J}


def writes(files: dict[str, Any]) -> dict[str, WriteFile]:
    actions = plan(SPEC, parse(probe_output(files=files), 16509), OWNER)
    return {a.path: a for a in actions if isinstance(a, WriteFile) and a.path in FILES}


def stdin_bytes(action: WriteFile) -> bytes | None:
    """What the SSH driver sends as the command's stdin (text as UTF-8)."""
    data = action.stdin()
    return data.encode("utf-8") if isinstance(data, str) else data


def test_the_probe_reads_a_file_whose_bytes_are_not_utf8_without_losing_one() -> None:
    observed = parse(probe_output(files={path: before for path, (before, _) in FILES.items()}), 16509)
    for path, (before, _) in FILES.items():
        text = observed.files[path]
        assert text is not None and text.encode("utf-8", "surrogateescape") == before, path
    assert "Zürich" not in (observed.files[AGENT_PROPERTIES] or ""), "Latin-1 is not taken for UTF-8"
    assert "name=Café\r\n" in (observed.files[AGENT_PROPERTIES] or ""), "UTF-8 is read as UTF-8"


@pytest.mark.parametrize("path", list(FILES))
def test_writing_an_edited_file_keeps_every_byte_not_edited(tmp_path: Path, path: str) -> None:
    before, after = FILES[path]
    target = tmp_path / "file"
    target.write_bytes(before)
    action = dataclasses.replace(writes({path: before})[path], path=str(target))
    subprocess.run(action.argv(), input=stdin_bytes(action), capture_output=True, check=True, timeout=30)
    assert target.read_bytes() == after
    assert (tmp_path / "file.stackops-backup").read_bytes() == before
    assert path not in writes({path: after}), "the written file is converged: nothing more to write"


def test_the_guarded_apply_writes_the_same_bytes(tmp_path: Path) -> None:
    """A file written under a management-path checkpoint: the apply script feeds stdin itself (base64)."""
    before, after = PROPERTIES
    target = tmp_path / "agent.properties"
    target.write_bytes(before)
    action = dataclasses.replace(writes({AGENT_PROPERTIES: before})[AGENT_PROPERTIES], path=str(target))
    script = tmp_path / "apply.sh"
    script.write_text(guard.apply_script([action]))
    subprocess.run(["sh", str(script), str(tmp_path)], capture_output=True, check=True, timeout=30)
    assert target.read_bytes() == after and (tmp_path / "progress").read_text().strip() == "1"
