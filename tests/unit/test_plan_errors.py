"""`stackops plan` errors say where a manifest is broken — file, document, field, line — and never print a Secret's
values: not the offending line PyYAML quotes, not what it found (an alias name), not a value of a Secret of the
wrong shape, whether the broken document is the Secret itself or an object next to one."""
from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest

from stackops import status as st
from stackops.plan import plan_files
from stackops.reconcile.base import Context, Outcome, Reconciler
from support.specs import MINIMAL

SECRET = "s3cr3t-Pa55w0rd"  # in every Secret below; never in the output


class Converged(Reconciler):
    kind = "KvmHost"

    async def reconcile(self, ctx: Context) -> Outcome:
        return Outcome(conditions=st.ready("Configured"), drift=[])


def plan(tmp_path: Path, text: str) -> tuple[int, str, Path]:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    out = StringIO()
    code = plan_files([path], out, reconcilers={"KvmHost": Converged()}, environ={})
    return code, out.getvalue(), path


KVMHOST = """\
apiVersion: stackops.io/v1alpha1
kind: KvmHost
metadata: {name: kvm01, namespace: site}
spec:
  address: 10.0.0.11
  ssh:
    privateKeySecretRef: {name: kvm01-ssh, key: ssh-privatekey}
    hostKey: HOSTKEY
"""
SECRET_DOC = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: kvm01-ssh, namespace: site}}
stringData:
  ssh-privatekey: {SECRET}
"""


def kvmhost(address: str = "10.0.0.11") -> str:
    return KVMHOST.replace("HOSTKEY", MINIMAL["KvmHost"]["ssh"]["hostKey"]).replace("10.0.0.11", address)


@pytest.mark.parametrize(("secret_doc", "line", "field", "problem"), [
    # a second ': ' in a plain value
    (SECRET_DOC.replace(f"{SECRET}", f"{SECRET}: oops"), "line 5", "field stringData", "mapping values are not "
     "allowed here"),
    # an unclosed quote, ended by the next document
    (SECRET_DOC.replace(f"{SECRET}", f'"{SECRET}'), "line 6, column 1 (from line 5)", "field stringData."
     "ssh-privatekey", "while scanning a quoted scalar: found unexpected document separator"),
    # a value starting with * is an alias, which PyYAML names
    (SECRET_DOC.replace(f"{SECRET}", f"*{SECRET}"), "line 5", "field stringData.ssh-privatekey",
     "found undefined alias '…'"),
])
def test_a_malformed_secret_is_located_without_its_values(tmp_path: Path, secret_doc: str, line: str, field: str,
                                                          problem: str) -> None:
    code, out, path = plan(tmp_path, secret_doc + "---\n" + kvmhost())
    assert code == 1 and SECRET not in out, out
    assert out.startswith(f"stackops plan: cannot read the manifests: {path}, document 1, {line}"), out
    assert field in out and problem in out, out


def test_a_malformed_object_next_to_a_secret_is_located_and_the_secret_not_printed(tmp_path: Path) -> None:
    broken = kvmhost().replace("  address: 10.0.0.11\n", "  address: [10.0.0.11\n")
    code, out, path = plan(tmp_path, SECRET_DOC + "---\n" + broken + "---\n" + SECRET_DOC)
    assert code == 1 and SECRET not in out, out
    assert f"{path}, document 2, line 12, column 6 (from line 11), field spec.address: while parsing a flow " \
        "sequence: expected ',' or ']', but got ':'" in out, out


def test_a_tab_in_an_object_is_located(tmp_path: Path) -> None:
    code, out, path = plan(tmp_path, kvmhost().replace("  ssh:\n", "\tssh:\n") + "---\n" + SECRET_DOC)
    assert code == 1 and SECRET not in out
    assert f"{path}, document 1, line 6, column 1, field spec: while scanning for the next token: found character " \
        "'…' that cannot start any token" in out, out


@pytest.mark.parametrize(("string_data", "field", "line", "what"), [
    (f"stringData: {SECRET}\n", "stringData", 4, "is not a mapping of keys to values"),
    (f"stringData:\n  ssh-privatekey: [{SECRET}]\n", "stringData.ssh-privatekey", 5, "is not a string"),
    (f"data:\n  ssh-privatekey: {SECRET}!\n", "data.ssh-privatekey", 5, "is not base64"),
])
def test_a_secret_of_the_wrong_shape_is_located_where_a_resource_needs_it(tmp_path: Path, string_data: str,
                                                                         field: str, line: int, what: str) -> None:
    secret_doc = SECRET_DOC.split("stringData:")[0] + string_data
    code, out, path = plan(tmp_path, secret_doc + "---\n" + kvmhost())
    assert code == 1 and SECRET not in out, out
    assert (f"cannot plan: SecretUnreadable: Secret site/kvm01-ssh ({path}, document 1, line {line}): {field} "
            f"{what}") in out, out
    assert f"KvmHost site/kvm01 ({path}, document 2)" in out


def test_an_invalid_spec_names_each_field_with_its_line(tmp_path: Path) -> None:
    code, out, path = plan(tmp_path, SECRET_DOC + "---\n" + kvmhost(address="not an address"))
    assert code == 1 and SECRET not in out
    assert f"KvmHost site/kvm01 ({path}, document 2): cannot plan: InvalidSpec: spec.address (line 11): String " \
        "should match pattern" in out, out


def test_a_good_file_still_plans(tmp_path: Path) -> None:
    code, out, _ = plan(tmp_path, SECRET_DOC + "---\n" + kvmhost())
    assert code == 0 and "KvmHost site/kvm01" in out and "no changes" in out and SECRET not in out


def test_the_field_of_a_deep_list_item(tmp_path: Path) -> None:
    text = kvmhost() + "  openvswitch:\n    bridges:\n      - name: cloudbr0\n      - name: cloudbr1\n" \
        "        bonds: [{name: bond0, interfaces: [eno1 eno2}]\n"
    code, out, path = plan(tmp_path, text)
    assert code == 1
    assert "field spec.openvswitch.bridges[1].bonds[0].interfaces" in out, out
