"""KvmHost packages without a host: the commands planned to install missing packages and a pinned cloudstack-agent
(apt, dnf, yum), when the package index is refreshed first, the spec's repository as a source file, and how a
failed install is reported."""
from __future__ import annotations

import asyncio
import copy
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from support.kvmhost_probe import INSTALLED, OWNER, probe_output
from support.specs import HOST_KEY
from support.credentials import secret
from stackops.api.kvmhost import KvmHostSpec
from stackops.drivers.ssh import CommandFailed, CommandResult
from stackops.reconcile.base import Context, PartialApply
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.actions import (WRITE_FILE, WRITE_FILE_NO_BACKUP, InstallPackages,
                                                RefreshPackageIndex, RunCommand, WriteFile)
from stackops.reconcile.kvmhost.plan import (APT_INDEX_MAX_AGE_SECONDS, REPOSITORY_MARKER, PlanError, plan,
                                             probe_arguments)
from stackops.reconcile.kvmhost.probe import SCRIPT, parse

SPEC: dict[str, Any] = {
    "address": "10.250.0.11",
    "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
}
APT_SOURCE = "/etc/apt/sources.list.d/stackops-cloudstack.list"
YUM_REPO = "/etc/yum.repos.d/stackops-cloudstack.repo"
WITHOUT_AGENT = {k: v for k, v in INSTALLED.items() if k != "cloudstack-agent"}
APT_INSTALL = ("env", "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_SUSPEND=1", "apt-get", "install", "-y", "-q",
               "--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef", "-o",
               "Dpkg::Options::=--force-confold", "-o", "DPkg::Lock::Timeout=300", "-o", "APT::Cmd::Pattern-Only=1",
               "--no-remove")


def spec(**packages: Any) -> KvmHostSpec:
    data = copy.deepcopy(SPEC)
    data["packages"] = packages
    return KvmHostSpec.model_validate(data)


def host(*, packages: dict[str, str] | None = None, index_age: int | None = None,
         available: dict[str, tuple[str, ...]] | None = None, manager: str = "apt",
         files: dict[str, str | None] | None = None) -> str:
    """Probe output of a host; the apt-index section as the probe prints it for packages to install."""
    text = probe_output(packages=packages, files=files)
    if manager != "apt":
        text = text.replace("@@pm -\napt\n", f"@@pm -\n{manager}\n")
    index = [] if index_age is None else [f"age {index_age}"]
    if available is not None and index_age is None:
        index = ["age none"]
    for name, versions in (available or {}).items():
        index += [f"available {name} {version}" for version in versions]
    return text + "@@apt-index -\n" + "".join(f"{line}\n" for line in index)


def planned(s: KvmHostSpec, text: str) -> list:
    return plan(s, parse(text, 16509), OWNER)


def package_actions(actions: list) -> list:
    return [a for a in actions if isinstance(a, (RefreshPackageIndex, InstallPackages))]


# --------------------------------------------------------------------------------------------------------- apt


def test_apt_install_never_asks_and_keeps_edited_config_files() -> None:
    actions = planned(spec(), host(packages=WITHOUT_AGENT, index_age=60,
                                   available={"cloudstack-agent": ("4.19.2.0", "4.19.1.0")}))
    assert len(actions) == 1 and isinstance(actions[0], InstallPackages), "a fresh index listing it: no refresh"
    assert actions[0].argv() == (*APT_INSTALL, "cloudstack-agent")
    assert actions[0].describe() == "install cloudstack-agent with apt"


def test_nothing_else_is_planned_while_packages_are_installed() -> None:
    actions = planned(spec(), host(packages=WITHOUT_AGENT, index_age=60, available={"cloudstack-agent": ("1.0",)}))
    assert all(isinstance(a, InstallPackages) for a in actions), "files and services come once the package is there"


@pytest.mark.parametrize(("index_age", "available", "reason"), [
    (None, None, "the host has no package index yet"),
    (3 * 3600 + 120, {"cloudstack-agent": ("4.19.2.0",)}, "the index is 3 h 2 min old"),
    (60, {}, "cloudstack-agent is not in the index"),
])
def test_the_apt_index_is_refreshed_when_it_may_not_list_the_package(index_age, available, reason) -> None:
    actions = planned(spec(), host(packages=WITHOUT_AGENT, index_age=index_age, available=available))
    refresh, install = actions
    assert isinstance(refresh, RefreshPackageIndex) and isinstance(install, InstallPackages)
    assert refresh.argv() == ("env", "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_SUSPEND=1", "apt-get", "-q",
                              "update")
    assert refresh.describe() == f"refresh the package index (apt-get update): {reason}"


def test_an_index_younger_than_the_limit_that_lists_the_package_is_used_as_it_is() -> None:
    actions = planned(spec(), host(packages=WITHOUT_AGENT, index_age=APT_INDEX_MAX_AGE_SECONDS,
                                   available={"cloudstack-agent": ("4.19.2.0",)}))
    assert [type(a) for a in actions] == [InstallPackages]


def test_pinned_agent_version_is_installed_exactly() -> None:
    s = spec(cloudstackAgentVersion="4.19.1.0")
    actions = planned(s, host(packages=WITHOUT_AGENT, index_age=60,
                              available={"cloudstack-agent": ("4.19.2.0", "4.19.1.0")}))
    assert [a.argv() for a in actions] == [(*APT_INSTALL, "cloudstack-agent=4.19.1.0")]
    assert actions[0].describe() == "install cloudstack-agent 4.19.1.0 with apt"


def test_pinned_version_not_in_the_index_refreshes_it_first() -> None:
    s = spec(cloudstackAgentVersion="4.19.3.0")
    refresh, install = planned(s, host(packages=WITHOUT_AGENT, index_age=60,
                                       available={"cloudstack-agent": ("4.19.2.0",)}))
    assert refresh.describe().endswith("cloudstack-agent 4.19.3.0 is not in the index")
    assert install.argv()[-1] == "cloudstack-agent=4.19.3.0"


def test_another_installed_agent_version_is_changed_to_the_pinned_one() -> None:
    s = spec(cloudstackAgentVersion="4.19.2.0")
    packages = {**INSTALLED, "cloudstack-agent": "4.19.1.0"}
    actions = planned(s, host(packages=packages, index_age=60, available={"cloudstack-agent": ("4.19.2.0",)}))
    assert [a.argv() for a in actions] == [(*APT_INSTALL, "--allow-downgrades", "cloudstack-agent=4.19.2.0")]
    assert actions[0].describe() == "install cloudstack-agent 4.19.1.0 → 4.19.2.0 with apt"
    assert package_actions(planned(s, host(packages={**INSTALLED, "cloudstack-agent": "4.19.2.0"}))) == []


def test_install_false_refuses_with_what_would_be_installed() -> None:
    with pytest.raises(PlanError) as refused:
        planned(spec(install=False, cloudstackAgentVersion="4.19.2.0"),
                host(packages={**INSTALLED, "cloudstack-agent": "4.19.1.0"}))
    assert refused.value.reason == "PackagesMissing" and "cloudstack-agent 4.19.1.0 → 4.19.2.0" in str(refused.value)


def test_the_probe_looks_up_the_pinned_agent_version() -> None:
    arguments = probe_arguments(spec(cloudstackAgentVersion="4.19.2.0", extra=["tcpdump"]))
    assert "cloudstack-agent=4.19.2.0" in arguments and "cloudstack-agent" not in arguments
    assert {"tcpdump", "bridge-utils", "apt:qemu-system-x86", "yum:qemu-kvm", "apt:libvirt-daemon-system",
            "yum:libvirt"} <= set(arguments), "each manager's hosts skip the other's names"
    assert "apt-cache madison" in SCRIPT and "${a%%=*}" in SCRIPT


def test_parse_reads_the_index_age_and_the_versions_it_lists() -> None:
    observed = parse(host(packages=WITHOUT_AGENT, index_age=125,
                          available={"cloudstack-agent": ("4.19.2.0", "4.19.1.0")}), 16509)
    assert observed.package_index_age == 125
    assert observed.available == {"cloudstack-agent": ("4.19.2.0", "4.19.1.0")}
    assert parse(probe_output(), 16509).package_index_age is None


# ------------------------------------------------------------------------------------------ spec's repository


UNSIGNED_HTTP = {"allowUnsigned": True, "allowPlainHTTP": True}  # as every repository was before signing keys


def test_the_spec_repository_becomes_an_apt_source_written_atomically_without_backup() -> None:
    s = spec(repositoryURL="http://repo.example.com/cloudstack/4.19/", **UNSIGNED_HTTP)
    write, refresh, install = planned(s, host(packages=WITHOUT_AGENT, index_age=60,
                                              available={"cloudstack-agent": ("4.19.1.0",)}))
    assert isinstance(write, WriteFile) and write.path == APT_SOURCE and not write.backup
    assert write.content == f"{REPOSITORY_MARKER}\ndeb [trusted=yes] http://repo.example.com/cloudstack/4.19 /\n"
    assert write.argv() == ("sh", "-c", WRITE_FILE_NO_BACKUP, "stackops-write-file", APT_SOURCE)
    assert "stackops-backup" not in WRITE_FILE_NO_BACKUP and "stackops-backup" in WRITE_FILE
    assert 'mv -f "$f.stackops-new" "$f"' in WRITE_FILE_NO_BACKUP
    assert write.describe() == f"add the package repository http://repo.example.com/cloudstack/4.19/ ({APT_SOURCE})"
    assert refresh.describe().endswith("the repository source changed")
    assert install.argv()[-1] == "cloudstack-agent"


def test_a_repository_source_in_place_plans_nothing_and_a_changed_one_does_not_hold_the_rest() -> None:
    s = spec(repositoryURL="http://repo.example.com/cloudstack/4.19/", **UNSIGNED_HTTP)
    source = f"{REPOSITORY_MARKER}\ndeb [trusted=yes] http://repo.example.com/cloudstack/4.19 /\n"
    assert package_actions(planned(s, host(files={APT_SOURCE: source}))) == []
    assert not any(getattr(a, "path", None) == APT_SOURCE for a in planned(s, host(files={APT_SOURCE: source})))
    other = planned(spec(repositoryURL="http://repo.example.com/cloudstack/4.20/", **UNSIGNED_HTTP),
                    host(files={APT_SOURCE: source}))
    assert isinstance(other[0], WriteFile) and other[0].describe().startswith("update the package repository")
    assert len(other) > 1, "nothing to install: the rest of the plan goes on in the same pass"


def test_a_dropped_repository_is_removed_only_when_stackops_wrote_it() -> None:
    source = f"{REPOSITORY_MARKER}\ndeb [trusted=yes] http://repo.example.com/cloudstack/4.19 /\n"
    removed = [a for a in planned(spec(), host(files={APT_SOURCE: source})) if isinstance(a, RunCommand)]
    assert [a.argv() for a in removed] == [("rm", "-f", APT_SOURCE)]
    foreign = planned(spec(), host(files={APT_SOURCE: "deb http://mirror.example.com/cloudstack /\n"}))
    assert not any(APT_SOURCE in a.argv() for a in foreign)
    assert not any(getattr(a, "path", None) == APT_SOURCE
                   for a in planned(spec(install=False, repositoryURL="http://r.example.com/", **UNSIGNED_HTTP),
                                    host()))


# ------------------------------------------------------------------------------------------------ dnf and yum


@pytest.mark.parametrize("manager", ["dnf", "yum"])
def test_dnf_and_yum_expire_their_metadata_and_install_name_version(manager: str) -> None:
    s = spec(cloudstackAgentVersion="4.19.1.0-1.el8", repositoryURL="https://repo.example.com/el8/4.19/",
             allowUnsigned=True)
    names = {"qemu-kvm": "6.2.0-1.el8", "libvirt": "8.0.0-1.el8", "libvirt-client": "8.0.0-1.el8",
             "bridge-utils": "1.7-1.el8", "openvswitch": "2.17-1.el8"}
    write, refresh, install = planned(s, host(packages=names, manager=manager))
    assert write.path == YUM_REPO and write.content == (
        f"{REPOSITORY_MARKER}\n[stackops-cloudstack]\nname=CloudStack packages (stackops)\n"
        "baseurl=https://repo.example.com/el8/4.19/\nenabled=1\ngpgcheck=0\n")
    assert refresh.argv() == (manager, "clean", "expire-cache")
    assert install.argv() == (manager, "install", "-y", "cloudstack-agent-4.19.1.0-1.el8")


def test_rpm_version_release_matches_a_pin_without_release() -> None:
    names = {"qemu-kvm": "6.2.0-1.el8", "libvirt": "8.0.0-1.el8", "libvirt-client": "8.0.0-1.el8",
             "bridge-utils": "1.7-1.el8", "openvswitch": "2.17-1.el8", "cloudstack-agent": "4.19.1.0-1.el8"}
    assert package_actions(planned(spec(cloudstackAgentVersion="4.19.1.0"), host(packages=names,
                                                                                 manager="dnf"))) == []
    changed = package_actions(planned(spec(cloudstackAgentVersion="4.19.1"), host(packages=names, manager="dnf")))
    assert changed[-1].argv()[-1] == "cloudstack-agent-4.19.1"


# ------------------------------------------------------------------------------------------- a failed install


class FailingConnection:
    def __init__(self, probe_text: str, stderr: str, stdout: str = ""):
        self.probe_text, self.stderr, self.stdout = probe_text, stderr, stdout
        self.ran: list[tuple[str, ...]] = []

    async def run_script(self, script, *, args=(), timeout=60.0, check=True, mutation=False, label="script"):
        return CommandResult(0, self.probe_text, "")

    async def run(self, argv, *, input=None, timeout=60.0, check=True, mutation=False, label=None):
        self.ran.append(tuple(argv))
        if "install" in argv:
            raise CommandFailed(f"{label} exited with status 100 on root@10.250.0.11", host="root@10.250.0.11",
                                exit_status=100, result=CommandResult(100, self.stdout, self.stderr))
        return CommandResult(0, "", "")


class OnePool:
    def __init__(self, connection: FailingConnection):
        self.connection_ = connection

    def connection(self, target: Any) -> FailingConnection:
        return self.connection_


def test_a_failed_install_is_reported_with_apts_error_lines_and_nothing_after_it() -> None:
    text = host(packages=WITHOUT_AGENT, index_age=None)
    connection = FailingConnection(text, stdout="Reading package lists...\nBuilding dependency tree...\n",
                                   stderr="W: some warning\nE: Version '9.9' for 'cloudstack-agent' was not found\n")
    s = spec(cloudstackAgentVersion="9.9")
    events: list = []
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=s, status={},
                  secrets={"k": secret({"ssh-privatekey": "unused"}, s.address)}, event=lambda *e: events.append(e),
                  logger=logging.getLogger("test"))
    with pytest.raises(PartialApply) as failed:
        asyncio.run(KvmHostReconciler(OnePool(connection)).reconcile(ctx))  # type: ignore[arg-type]
    error = failed.value
    assert error.reason == "PackageInstallFailed" and error.retry
    assert str(error) == ("install cloudstack-agent 9.9 with apt failed on root@10.250.0.11 (exit status 100): "
                          "E: Version '9.9' for 'cloudstack-agent' was not found")
    assert "Traceback" not in str(error)
    assert [c.type for c in error.conditions] == ["Reachable", "Configured"]
    assert error.conditions[1].reason == "PackageInstallFailed"
    assert [type(a) for a in error.applied] == [RefreshPackageIndex], "the refresh ran, the install failed"
    assert connection.ran[-1][-1] == "cloudstack-agent=9.9" and len(connection.ran) == 2, "nothing after it"
    assert ("Warning", "PackageInstallFailed") == events[-1][:2]


def test_the_probe_queries_apt_only_for_packages_to_install(tmp_path: Path) -> None:
    """The probe's package sections run by sh with stand-ins for dpkg-query and apt-cache: installed packages are
    reported, yum's names skipped, and only the missing package and the agent not at its pinned version are looked
    up in the index."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg-query").write_text(  # like dpkg-query -W: a line per name it knows, exit 1 if one it does not
        '#!/bin/sh\nshift 2\nprintf "dpkg-query %s\\n" "$*" >> "$LOG"\nrc=0\n'
        'for p; do case "$p" in\n'
        '  cloudstack-agent) printf "cloudstack-agent\\t4.19.1.0\\tinstalled\\n" ;;\n'
        '  bridge-utils) printf "bridge-utils\\t1.7.1-1\\tinstalled\\n" ;;\n'
        '  tcpdump) printf "tcpdump\\t4.99\\tconfig-files\\n" ;;\n'
        '  *) rc=1 ;;\n'
        'esac; done\nexit $rc\n')
    (bin_dir / "apt-cache").write_text(
        '#!/bin/sh\necho "apt-cache $*" >> "$LOG"\nshift\n'
        'for p; do printf " %s |   4.19.2.0 | file:/srv/repo ./ Packages\\n" "$p"\n'
        'printf " %s |   4.19.1.0 | file:/srv/repo ./ Packages\\n" "$p"; done\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    start = SCRIPT.index("section packages -")
    part = SCRIPT[start:SCRIPT.index("# The binaries whose version is reported")]
    script = ('section() { printf \'\\n@@%s %s\\n\' "$1" "$2"; }\n'
              'have() { command -v "$1" >/dev/null 2>&1; }\n' + part)
    log = tmp_path / "log"
    arguments = ["bridge-utils", "cloudstack-agent=4.19.2.0", "apt:qemu-system-x86", "yum:qemu-kvm", "tcpdump"]
    result = subprocess.run(["sh", "-s", "--", *arguments], input=script, capture_output=True, text=True,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}, timeout=30, check=True)
    observed = parse(result.stdout, 16509)
    assert observed.packages == {"cloudstack-agent": "4.19.1.0", "bridge-utils": "1.7.1-1", "tcpdump": None}
    calls = log.read_text().splitlines()
    [queried] = [line.split()[1:] for line in calls if line.startswith("dpkg-query")]  # one for all the names
    assert "qemu-kvm" not in queried and "qemu-system-x86" in queried, "yum's names are skipped on a dpkg host"
    assert [line for line in calls if line.startswith("apt-cache")] == [
        "apt-cache madison cloudstack-agent qemu-system-x86 tcpdump"], "one apt-cache for the packages to install"
    assert observed.available["cloudstack-agent"] == ("4.19.2.0", "4.19.1.0")
    assert "@@apt-index -\nage " in result.stdout

    converged = subprocess.run(["sh", "-s", "--", "bridge-utils", "cloudstack-agent=4.19.1.0"], input=script,
                               capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin",
                                                                   "LOG": str(log)}, timeout=30, check=True)
    assert converged.stdout.endswith("@@apt-index -\n"), "nothing to install: the index is not looked at"
