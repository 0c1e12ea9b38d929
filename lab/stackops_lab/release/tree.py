"""The files of the lab's CloudStack-like source tree at its first commit (version 4.8.0), laid out like CloudStack.

A Maven reactor: the root `pom.xml` (artifact `cloudstack`, an Apache `<parent>` whose version 17 a version bump
must leave alone) with modules api, agent, server, plugins (an aggregator whose module is
plugins/hypervisors/kvm), systemvm (pom packaging; its ISO comes with profile `systemvm`) and client; every
module's `<parent>` carries the project version. Java sources the pull requests of fixture.py change, the
agent's `agent/conf/agent.properties`, `debian/changelog`, `tools/marvin/setup.py`, `scripts/` (what
cloudstack-common ships), a `.gitignore` of build output, and the build scripts of scripts.py.
"""

from __future__ import annotations

from pathlib import Path

from stackops_lab.release import rpmspec, scripts

VERSION = "4.8.0"
GROUP = "org.apache.cloudstack"
POM_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!--
  Licensed to the Apache Software Foundation (ASF) under one or more contributor license agreements. The ASF
  licenses this file to you under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
-->
<project xmlns="http://maven.apache.org/POM/4.0.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
"""
# path → (artifactId, name, packaging, parent artifactId, modules)
MODULES: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "api": ("cloud-api", "Apache CloudStack Cloud API", "jar", "cloudstack", ()),
    "agent": ("cloud-agent", "Apache CloudStack Agents", "jar", "cloudstack", ()),
    "server": ("cloud-server", "Apache CloudStack Server", "jar", "cloudstack", ()),
    "plugins": ("cloudstack-plugins", "Apache CloudStack Plugins", "pom", "cloudstack", ("hypervisors/kvm",)),
    "plugins/hypervisors/kvm": ("cloud-plugin-hypervisor-kvm", "Apache CloudStack Plugin - Hypervisor KVM", "jar",
                                "cloudstack-plugins", ()),
    "systemvm": ("cloud-systemvm", "Apache CloudStack System VM", "pom", "cloudstack", ()),
    "client": ("cloud-client-ui", "Apache CloudStack Client UI", "jar", "cloudstack", ()),
}


def jars(version: str) -> list[str]:
    """The jars a Maven build of the tree at `version` leaves (paths relative to the tree)."""
    return [f"{path}/target/{artifact}-{version}.jar" for path, (artifact, _, packaging, _, _) in MODULES.items()
            if packaging == "jar"]


ROOT_POM = POM_HEAD + f"""  <parent>
    <groupId>org.apache</groupId>
    <artifactId>apache</artifactId>
    <version>17</version>
  </parent>
  <groupId>{GROUP}</groupId>
  <artifactId>cloudstack</artifactId>
  <version>{VERSION}</version>
  <name>Apache CloudStack</name>
  <description>Apache CloudStack is an IaaS ("Infrastructure as a Service") cloud orchestration platform.</description>
  <packaging>pom</packaging>
  <url>http://www.cloudstack.org</url>
  <properties>
    <cs.jdk.version>1.7</cs.jdk.version>
    <cs.libvirt-java.version>0.5.1</cs.libvirt-java.version>
  </properties>
  <modules>
    <module>api</module>
    <module>agent</module>
    <module>server</module>
    <module>plugins</module>
    <module>systemvm</module>
    <module>client</module>
  </modules>
</project>
"""


def module_pom(path: str) -> str:
    artifact, name, packaging, parent, modules = MODULES[path]
    relative = "../../pom.xml" if parent == "cloudstack-plugins" else "../pom.xml"
    listed = "".join(f"    <module>{module}</module>\n" for module in modules)
    return POM_HEAD + f"""  <artifactId>{artifact}</artifactId>
  <name>{name}</name>
  <packaging>{packaging}</packaging>
  <parent>
    <groupId>{GROUP}</groupId>
    <artifactId>{parent}</artifactId>
    <version>{VERSION}</version>
    <relativePath>{relative}</relativePath>
  </parent>
""" + (f"  <modules>\n{listed}  </modules>\n" if modules else "") + ("""  <dependencies>
    <dependency>
      <groupId>org.apache.cloudstack</groupId>
      <artifactId>cloud-api</artifactId>
      <version>${project.version}</version>
    </dependency>
  </dependencies>
""" if packaging == "jar" and artifact != "cloud-api" else "") + "</project>\n"


API_CONSTANTS = """// Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
package org.apache.cloudstack.api;

public class ApiConstants {
    public static final String ACCOUNT = "account";
    public static final String ACCOUNTS = "accounts";
    public static final String ACCOUNT_TYPE = "accounttype";
    public static final String ACCOUNT_ID = "accountid";
    public static final String ALGORITHM = "algorithm";
    public static final String ALLOCATED_ONLY = "allocatedonly";
    public static final String API_KEY = "apikey";
    public static final String USER_API_KEY = "userapikey";
    public static final String APPLIED = "applied";
    public static final String ASYNC_JOB_TIMEOUT = "asyncjobtimeout";
    public static final int DEFAULT_ASYNC_JOB_TIMEOUT = 3600;
    public static final String BIND_DN = "binddn";
    public static final String BIND_PASSWORD = "bindpass";
    public static final String CATEGORY = "category";
    public static final String CERTIFICATE = "certificate";
    public static final String CIDR = "cidr";
}
"""

LIBVIRT_COMPUTING_RESOURCE = """// Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
package com.cloud.hypervisor.kvm.resource;

import java.util.Map;

public class LibvirtComputingResource {
    private String _modifyVlanPath;
    private String _versionstringpath;
    private String _patchViaSocketPath;
    private String _createvmPath;
    private String _manageSnapshotPath;
    private long _hvVersion;
    private int _migrateDowntime;
    private int _timeout;

    public boolean configure(final String name, final Map<String, Object> params) {
        String value = (String)params.get("vm.migrate.downtime");
        _migrateDowntime = value == null ? -1 : Integer.parseInt(value);
        value = (String)params.get("cmds.timeout");
        _timeout = value == null ? 7200 : Integer.parseInt(value);
        return true;
    }
}
"""

MANAGEMENT_SERVER_IMPL = """// Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
package com.cloud.server;

import org.apache.log4j.Logger;

public class ManagementServerImpl implements ManagementServer {
    public static final Logger s_logger = Logger.getLogger(ManagementServerImpl.class.getName());

    public String getVersion() {
        final Class<?> c = ManagementServer.class;
        final String fullVersion = c.getPackage().getImplementationVersion();
        if (fullVersion != null && fullVersion.length() > 0) {
            return fullVersion;
        }
        return "unknown";
    }

    public void executeCommand(final String command) {
        s_logger.debug("executing a command");
    }
}
"""

AGENT_JAVA = """// Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
package com.cloud.agent;

public class Agent {
    public static void main(final String[] args) {
        System.out.println("CloudStack agent " + Agent.class.getPackage().getImplementationVersion());
    }
}
"""

SERVER_DAEMON = """// Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
package org.apache.cloudstack;

public class ServerDaemon {
    public static void main(final String[] args) {
        System.out.println("Apache CloudStack management server");
    }
}
"""

AGENT_PROPERTIES = """# Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
# Sample configuration file for CloudStack agent

#resource=com.cloud.hypervisor.kvm.resource.LibvirtComputingResource

workers=5

#host= The IP address of management server
host=localhost

#port = The port management server listening on, default is 8250
port=8250

# set the vm migrate speed, by default, it will try to guess the speed of the guest network
# In MegaBytes per second
#vm.migrate.speed=0

# set target downtime at end of livemigration, the 'hiccup' for final copy. Higher numbers
# make livemigration easier, lower numbers may cause migration to never complete. Less than 1
# means hypervisor default (20ms).
#vm.migrate.downtime=0
"""

CHANGELOG = f"""cloudstack ({VERSION}) unstable; urgency=low

  * Update the version to {VERSION}

 -- the Apache CloudStack project <dev@cloudstack.apache.org>  Mon, 01 Feb 2016 12:00:00 +0100

cloudstack (4.7.0) unstable; urgency=low

  * Update the version to 4.7.0

 -- the Apache CloudStack project <dev@cloudstack.apache.org>  Mon, 16 Nov 2015 12:00:00 +0100
"""

MARVIN_SETUP = f"""# Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
from setuptools import setup

VERSION = "{VERSION}"

setup(name="Marvin", version=VERSION, description="Marvin - Python client for Apache CloudStack")
"""

README = """Apache CloudStack
=================

Apache CloudStack is open source software designed to deploy and manage large networks of virtual machines,
as a highly available, highly scalable Infrastructure as a Service (IaaS) cloud computing platform.

(stackops lab: a CloudStack-like tree for release builds; Maven is `sh tools/lab/mvn-standin.sh`.)
"""

GITIGNORE = "build/replace.properties\nbuild/build.number\ntarget/\ndist/\n*.pyc\n*.jar\n*.war\n*.iso\n*.tgz\n*.log\n"

VERSIONS_SH = """#!/bin/bash
# Licensed to the Apache Software Foundation (ASF) under the Apache License 2.0.
# Reports the versions of the hypervisor tools the agent talks to.
uname -r
"""

EXECUTABLE = ("tools/build/setnextversion.sh", "tools/lab/mvn-standin.sh", "packaging/package.sh",
              "scripts/vm/hypervisor/versions.sh")


def files() -> dict[str, str]:
    """Path (relative to the tree) → content of the first commit."""
    standin = Path(__file__).with_name("mvn_standin.py").read_text()
    result = {
        "pom.xml": ROOT_POM,
        "README.md": README,
        ".gitignore": GITIGNORE,
        "api/src/org/apache/cloudstack/api/ApiConstants.java": API_CONSTANTS,
        "agent/src/com/cloud/agent/Agent.java": AGENT_JAVA,
        "agent/conf/agent.properties": AGENT_PROPERTIES,
        "server/src/com/cloud/server/ManagementServerImpl.java": MANAGEMENT_SERVER_IMPL,
        "plugins/hypervisors/kvm/src/com/cloud/hypervisor/kvm/resource/LibvirtComputingResource.java":
            LIBVIRT_COMPUTING_RESOURCE,
        "client/src/org/apache/cloudstack/ServerDaemon.java": SERVER_DAEMON,
        "scripts/vm/hypervisor/versions.sh": VERSIONS_SH,
        "debian/changelog": CHANGELOG,
        "tools/marvin/setup.py": MARVIN_SETUP,
        "tools/build/setnextversion.sh": scripts.SETNEXTVERSION,
        "tools/lab/mvn-standin.sh": scripts.MVN_STANDIN,
        "tools/lab/mvn_standin.py": standin,
        "packaging/package.sh": scripts.PACKAGE_SH,
        "packaging/centos7/cloud.spec": rpmspec.CLOUD_SPEC,
        "packaging/el8/cloud.spec": rpmspec.CLOUD_SPEC,
    }
    result.update({f"{path}/pom.xml": module_pom(path) for path in MODULES})
    return result
