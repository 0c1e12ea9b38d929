"""The RPM spec of the lab's CloudStack-like tree: `packaging/centos7/cloud.spec` and `packaging/el8/cloud.spec`.

Packages cloudstack-common (scripts/, the commit built in scripts/gitrev.txt, vms/systemvm.iso),
cloudstack-management (the api, server and client jars) and cloudstack-agent (the agent and KVM plugin jars,
/etc/cloudstack/agent/agent.properties), all x86_64, versioned by package.sh (`-D_ver`, `-D_rel`,
`-D_prerelease`: see scripts.py). Like the real spec, %build runs Maven (here the stand-in) `-Psystemvm
-DskipTests clean package` again on the unpacked sources, so a broken module fails packaging too.
"""

from __future__ import annotations

CLOUD_SPEC = r"""# Licensed to the Apache Software Foundation (ASF) under the Apache License, Version 2.0.
# stackops lab: CloudStack's cloud.spec reduced to common, management and agent; %build runs the Maven
# stand-in (tools/lab/mvn-standin.sh) where the real one runs mvn.

%define __os_install_post %{nil}
%global debug_package %{nil}
%define _build_id_links none

Name:      cloudstack
Summary:   CloudStack IaaS Platform
#http://fedoraproject.org/wiki/PackageNamingGuidelines#Pre-Release_packages
%if "%{?_prerelease}" != ""
%define _maventag %{_ver}-SNAPSHOT
Release:   %{_rel}%{?dist}
%else
%define _maventag %{_ver}
Release:   %{_rel}%{?dist}
%endif

Version:   %{_ver}
License:   ASL 2.0
Vendor:    Apache CloudStack <dev@cloudstack.apache.org>
Packager:  Apache CloudStack <dev@cloudstack.apache.org>
Group:     System Environment/Libraries
Source0:   %{name}-%{_maventag}.tgz
BuildRoot: %{_tmppath}/%{name}-%{_maventag}-%{release}-build
AutoReqProv: no

%description
CloudStack is a highly-scalable elastic, open source,
intelligent IaaS cloud implementation.

%package management
Summary:   CloudStack management server UI
Requires: %{name}-common = %{_ver}
Group:     System Environment/Libraries
%description management
The CloudStack management server is the central point of coordination,
management, and intelligence in CloudStack.

%package common
Summary: Apache CloudStack common files and scripts
Group:   System Environment/Libraries
%description common
The Apache CloudStack files shared between agent and management server

%package agent
Summary: CloudStack Agent for KVM hypervisors
Requires: %{name}-common = %{_ver}
Provides: cloud-agent
Group: System Environment/Libraries
%description agent
The CloudStack agent for KVM hypervisors

%prep
echo Doing CloudStack build

%setup -q -n %{name}-%{_maventag}

%build
mkdir -p build
echo $(git rev-parse HEAD) > build/gitrev.txt

if [ "%{_ossnoss}" == "NOREDIST" -o "%{_ossnoss}" == "noredist" ] ; then
   echo "Adding noredist flag to the maven build"
   FLAGS="$FLAGS -Dnoredist"
fi

if [ "%{_sim}" == "SIMULATOR" -o "%{_sim}" == "simulator" ] ; then
   echo "Adding simulator flag to the maven build"
   FLAGS="$FLAGS -Dsimulator"
fi

# the real spec: mvn -Psystemvm -DskipTests $FLAGS clean package
sh tools/lab/mvn-standin.sh -Psystemvm -DskipTests $FLAGS clean package

%install
[ ${RPM_BUILD_ROOT} != "/" ] && rm -rf ${RPM_BUILD_ROOT}
# Common
mkdir -p ${RPM_BUILD_ROOT}%{_datadir}/%{name}-common/scripts
mkdir -p ${RPM_BUILD_ROOT}%{_datadir}/%{name}-common/vms
cp -r scripts/* ${RPM_BUILD_ROOT}%{_datadir}/%{name}-common/scripts
cp build/gitrev.txt ${RPM_BUILD_ROOT}%{_datadir}/%{name}-common/scripts
install -D systemvm/dist/systemvm.iso ${RPM_BUILD_ROOT}%{_datadir}/%{name}-common/vms/systemvm.iso

# Management
MANAGEMENT_LIB=${RPM_BUILD_ROOT}%{_datadir}/%{name}-management/lib
mkdir -p $MANAGEMENT_LIB
install -m 0644 client/target/cloud-client-ui-%{_maventag}.jar $MANAGEMENT_LIB/cloudstack-%{_maventag}.jar
install -m 0644 api/target/cloud-api-%{_maventag}.jar server/target/cloud-server-%{_maventag}.jar $MANAGEMENT_LIB/

# KVM Agent
AGENT_LIB=${RPM_BUILD_ROOT}%{_datadir}/%{name}-agent/lib
mkdir -p $AGENT_LIB
install -D -m 0644 agent/conf/agent.properties ${RPM_BUILD_ROOT}%{_sysconfdir}/%{name}/agent/agent.properties
install -m 0644 agent/target/cloud-agent-%{_maventag}.jar $AGENT_LIB/
install -m 0644 plugins/hypervisors/kvm/target/cloud-plugin-hypervisor-kvm-%{_maventag}.jar $AGENT_LIB/

%clean
[ ${RPM_BUILD_ROOT} != "/" ] && rm -rf ${RPM_BUILD_ROOT}

%files common
%defattr(-,root,root,-)
%{_datadir}/%{name}-common

%files management
%defattr(-,root,root,-)
%{_datadir}/%{name}-management

%files agent
%defattr(-,root,root,-)
%dir %{_sysconfdir}/%{name}/agent
%config(noreplace) %{_sysconfdir}/%{name}/agent/agent.properties
%{_datadir}/%{name}-agent
"""
