"""Reading ConfigMaps by reference, for values a spec may keep out of Secrets because they are not secret: the
operator's reader gets each one by name (`get` only; `data`, and `binaryData` decoded) and names what is missing or
refused (ConfigMapNotFound, ConfigMapKeyMissing, ConfigMapForbidden, ConfigMapUnreadable), never a value;
`stackops plan` takes them from ConfigMap manifests in the files, matched by namespace and name, and names a broken
one by field and line."""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.configmaps import KEY, NAME, PATH, READ_FAILURES, CoreAPI, config_map, stored

from stackops.api.common import ConfigMapKeySelector, Model
from stackops.api.references import NeededConfigMap as Needed, needed_config_maps
from stackops.drivers.configmaps import ConfigMapError, ConfigMapReader, read_config_maps
from stackops.plan_configmaps import ManifestConfigMaps
from stackops.plan_manifests import read as read_manifests

VALUE = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEaxZNOxYJKwYBBAHaRw8BAQdA\n-----END PGP PUBLIC KEY BLOCK-----\n"
NEEDED = Needed(PATH, NAME, (KEY,))


class Inner(Model):
    key_ref: ConfigMapKeySelector


class Outer(Model):
    items: list[Inner] = []
    one: ConfigMapKeySelector | None = None


def test_every_config_map_reference_of_a_spec_is_found_with_its_path() -> None:
    spec = Outer.model_validate({"items": [{"keyRef": {"name": "a", "key": "k1"}}], "one": {"name": "b", "key": "k2"}})
    assert list(needed_config_maps(spec)) == [Needed("spec.items[0].keyRef", "a", ("k1",)),
                                              Needed("spec.one", "b", ("k2",))]
    assert list(needed_config_maps(Outer())) == []


def read(core: CoreAPI, *needed: Needed) -> dict[str, dict[str, str]]:
    return asyncio.run(ConfigMapReader(core).read("lab", list(needed or (NEEDED,))))


def test_the_reader_gets_each_config_map_once_by_name_with_data_and_binary_data() -> None:
    encoded = base64.b64encode(VALUE.encode()).decode()
    core = CoreAPI({NAME: stored({KEY: VALUE}), "binary": stored(binary_data={"k.asc": encoded})})
    assert read(core, NEEDED, Needed("spec.other", NAME, (KEY,)), Needed("spec.b", "binary", ("k.asc",))) == {
        NAME: {KEY: VALUE}, "binary": {"k.asc": VALUE}}
    assert core.calls == [("lab", NAME), ("lab", "binary")]


@pytest.mark.parametrize(("maps", "status", "reason", "message"), READ_FAILURES)
def test_the_reader_names_what_is_missing_or_refused(maps: dict, status: int | None, reason: str, message: str) -> None:
    with pytest.raises(ConfigMapError) as failed:
        read(CoreAPI(maps, status))
    assert failed.value.reason == reason and str(failed.value) == message


def test_a_spec_without_config_maps_needs_no_reader_and_one_with_them_does() -> None:
    assert asyncio.run(read_config_maps(None, "lab", list(needed_config_maps(Outer())))) == {}
    core = CoreAPI({"b": stored({"k2": VALUE})})
    spec = Outer.model_validate({"one": {"name": "b", "key": "k2"}})
    needed = list(needed_config_maps(spec))
    assert asyncio.run(read_config_maps(ConfigMapReader(core), "lab", needed)) == {"b": {"k2": VALUE}}
    with pytest.raises(ConfigMapError) as failed:
        asyncio.run(read_config_maps(None, "lab", needed))
    assert failed.value.reason == "ConfigMapUnreadable" and "spec.one: ConfigMap lab/b" in str(failed.value)


# ------------------------------------------------------------------------------------------------ stackops plan


def manifests(tmp_path: Path, *documents: dict[str, Any]) -> ManifestConfigMaps:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    found = ManifestConfigMaps()
    for manifest in read_manifests([path]):
        found.add(manifest.document["metadata"].get("namespace", "default"), manifest.document, manifest)
    return found


def test_plan_matches_config_map_manifests_by_namespace_and_name(tmp_path: Path) -> None:
    encoded = base64.b64encode(VALUE.encode()).decode()
    found = manifests(tmp_path, config_map(data={KEY: VALUE}), config_map("other", binaryData={KEY: encoded}))
    assert found.read("site", [NEEDED]) == {NAME: {KEY: VALUE}}
    assert found.read("other", [NEEDED]) == {NAME: {KEY: VALUE}}
    with pytest.raises(ConfigMapError) as missing:
        found.read("elsewhere", [NEEDED])
    assert missing.value.reason == "ConfigMapNotFound" and str(missing.value).startswith(
        "spec.packages.signingKeyConfigMapRef: no ConfigMap elsewhere/repo-key in the files")
    with pytest.raises(ConfigMapError) as no_key:
        manifests(tmp_path, config_map(data={"other": VALUE})).read("site", [NEEDED])
    assert no_key.value.reason == "ConfigMapKeyMissing"


@pytest.mark.parametrize(("sections", "what"), [
    ({"data": {KEY: 42}}, "data.signing-key.asc is not a string"),
    ({"data": [KEY]}, "data is not a mapping of keys to values"),
    ({"binaryData": {KEY: "not base64!"}}, "binaryData.signing-key.asc is not base64"),
])
def test_plan_names_the_field_and_line_of_a_broken_config_map(tmp_path: Path, sections: dict, what: str) -> None:
    with pytest.raises(ConfigMapError) as broken:
        manifests(tmp_path, config_map(**sections)).read("site", [NEEDED])
    assert broken.value.reason == "ConfigMapUnreadable"
    assert str(broken.value).startswith(f"ConfigMap site/repo-key ({tmp_path / 'site.yaml'}, document 1, line ")
    assert str(broken.value).endswith(what)
