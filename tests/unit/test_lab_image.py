"""The pure parts of the operator image's build (stackops_lab/image.py): which mirror the Debian base comes from, what
pip inside the build is told, what the build context is and when its hash changes."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stackops_lab import image
from stackops_lab.controlplane import LabError, parse_deb822_sources, parse_one_line_sources

REPO = Path(__file__).resolve().parents[2]

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://packages.example.org/other
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/other.gpg
"""


def test_the_base_comes_from_the_mirror_the_machine_uses_for_the_release() -> None:
    sources = parse_deb822_sources(DEB822)
    assert image.debian_mirror(sources, "bookworm") == "http://mirror.example/debian"
    one_line = parse_one_line_sources("deb http://other.example/debian-security bookworm-security main\n"
                                      "deb [arch=amd64] http://other.example/debian bookworm main contrib\n")
    assert image.debian_mirror(one_line, "bookworm") == "http://other.example/debian"


def test_no_debian_mirror_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="no Debian trixie mirror"):
        image.debian_mirror(parse_deb822_sources(DEB822), "trixie")
    with pytest.raises(LabError, match="no Debian bookworm mirror"):
        image.debian_mirror(parse_one_line_sources("deb [signed-by=/usr/share/keyrings/other.gpg] "
                                                    "https://packages.example.org/other bookworm main\n"),
                            "bookworm")


def test_the_base_s_apt_sources_are_the_machine_s_debian_archives() -> None:
    """Release, updates and security from the machine's mirrors (tini and upgrades inside the build come from them);
    not another repository the machine happens to have."""
    assert image.apt_lines(parse_deb822_sources(DEB822), "bookworm") == (
        "deb http://mirror.example/debian bookworm main\n"
        "deb http://mirror.example/debian bookworm-updates main\n"
        "deb http://mirror.example/debian-security bookworm-security main\n")


def test_pip_config_listing_parsed_with_the_environment_last() -> None:
    listing = ("global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
               "global.extra-index-url='file:///opt/pypi/simple https://pypi.example/simple'\n"
               "global.find-links='/opt/wheels'\n"
               "user.something='ignored'\n"
               ":env:.index-url='https://index.example/simple'\n"
               ":env:.cert='/etc/proxy-ca.pem'\n")
    settings = image.parse_pip_config(listing)
    assert settings["cert"] == "/etc/proxy-ca.pem"
    assert settings["index-url"] == "https://index.example/simple"
    assert "something" not in settings


def test_the_build_s_pip_conf_has_the_index_settings_and_the_mounted_ca_but_no_local_path() -> None:
    text = image.build_pip_conf({"cert": "/etc/proxy-ca.pem", "index-url": "https://index.example/simple",
                                 "extra-index-url": "file:///opt/pypi/simple https://pypi.example/simple",
                                 "find-links": "/opt/wheels", "constraint": "/etc/xdg/pip/constraints.txt",
                                 "default-timeout": "180"})
    assert text.splitlines() == ["[global]", f"cert = {image.BUILD_SETTINGS_DIR}/ca.crt",
                                 "index-url = https://index.example/simple",
                                 "extra-index-url = https://pypi.example/simple", "default-timeout = 180"]


def test_the_mount_point_of_the_build_settings_exists_in_every_debian_image() -> None:
    """A mount point the image lacks would be created and left behind, empty, in every RUN's layer."""
    assert image.BUILD_SETTINGS_DIR == "/mnt"


def copy_context(destination: Path) -> Path:
    image.stage_context(REPO, destination)
    return destination


def test_the_context_is_what_the_dockerfile_copies_and_never_the_lab(tmp_path: Path) -> None:
    files = [p.as_posix() for p in image.context_files(REPO)]
    assert {"Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "operator/stackops/cli.py"} <= set(files)
    assert [f for f in files if f.startswith("lab/") or "stackops_lab" in f or "__pycache__" in f
            or ".egg-info" in f or f.endswith(".pyc")] == []
    assert {f.split("/")[0] for f in files} == {"Dockerfile", ".dockerignore", "pyproject.toml", "README.md",
                                                 "operator"}


def test_the_context_hash_changes_with_a_source_file_and_nothing_else(tmp_path: Path) -> None:
    context = copy_context(tmp_path / "a")
    before = image.context_hash(context)
    assert image.context_hash(copy_context(tmp_path / "b")) == before  # where the tree is does not matter
    (context / "operator" / "stackops" / "__pycache__").mkdir(exist_ok=True)
    (context / "operator" / "stackops" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    (context / "operator" / "stackops.egg-info").mkdir(exist_ok=True)
    (context / "operator" / "stackops.egg-info" / "PKG-INFO").write_text("x")
    (context / "lab").mkdir()
    (context / "lab" / "anything.py").write_text("x = 1\n")
    assert image.context_hash(context) == before
    module = context / "operator" / "stackops" / "plugins.py"
    module.write_text(module.read_text() + "\n# changed\n")
    changed = image.context_hash(context)
    assert changed != before
    module.chmod(0o755)
    assert image.context_hash(context) != changed  # the executable bit is in the image too
    shutil.copy(REPO / "Dockerfile", context / "Dockerfile")
    (context / "Dockerfile").write_text((REPO / "Dockerfile").read_text() + "\n# changed\n")
    assert image.context_hash(context) not in (before, changed)


def test_the_version_comes_from_pyproject() -> None:
    assert image.project_version(REPO) == "0.1.0"
    assert image.base_name("bookworm") == f"localhost/stackops-base:bookworm-{image.BASE_RECIPE}"


def test_the_images_a_build_made_or_reused_are_read_from_its_output() -> None:
    """The next build's cache: pruning keeps these and removes the untagged images of earlier builds."""
    output = ("[1/2] STEP 2/8: ARG PIP_CONFIG_FILE\n"
              "--> Using cache 492c0734d29e7ed681cabf5564b44c57ece1141ed41363bf9d715670dc0c4a33\n"
              "--> 492c0734d29\n"
              "Saved /wheels/deps/a.whl\n"
              "--> fe1ad9ab3ca\n"
              "COMMIT localhost/stackops:0.1.0\n"
              "--> 8cfc21e300d\n"
              "  --> not an id\n")
    assert image.built_image_ids(output) == {"492c0734d29", "fe1ad9ab3ca", "8cfc21e300d"}
