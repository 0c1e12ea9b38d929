"""The build scripts of the lab's CloudStack-like source tree, as CloudStack 4.8 ships them (minus Maven and a JDK).

- `tools/build/setnextversion.sh`: CloudStack's arguments (`-v version` mandatory, `-b branch` default "master" and
  checked out like the real script does, `-s sourcedir`, `-n` no commit, `-h`); the current version is read
  from the root POM (the real script asks `mvn help:evaluate`) and `mvn versions:set` is done with perl over
  every tracked pom.xml: the project's own `<version>` and a `<parent>` version of org.apache.cloudstack, never
  the Apache `<parent>`. Then, as in the real script, the version in debian/changelog and tools/marvin/setup.py,
  `git clean -f`, `git commit -a -s -m "Updating pom.xml version numbers for release <version>"` and
  `committed as <sha>`.
- `packaging/package.sh`: CloudStack 4.8's (`-d centos7|el8`, `-p oss|noredist`, `-s simulator`):
  version from the root POM; a -SNAPSHOT version x.y.z-SNAPSHOT gives RPM Version x.y.z and Release
  SNAPSHOT<dist> (`-D_prerelease 1`), any other version is the RPM Version as it is with Release 1<dist> (so
  4.8.0.16 gives cloudstack-*-4.8.0.16-1.el7.centos); removes and refills `dist/rpmbuild` (sources tarball of the
  tree without .git and dist) and runs `rpmbuild -bb` with `packaging/<distro>/cloud.spec`. The RPMs land in
  `dist/rpmbuild/RPMS/x86_64/`. Unlike the real one it defines `%dist` per distribution (.el7.centos,
  .el8: a build host is not CentOS here) and `%_tmppath` in dist/rpmbuild/tmp (rpmbuild leaves its scripts of
  a failed build there, not in the host's /var/tmp), and it does not look for a JDK.
- `packaging/<distro>/cloud.spec`: rpmspec.py.
- `tools/lab/mvn-standin.sh`: runs tools/lab/mvn_standin.py (mvn_standin.py here) with python3.
"""

from __future__ import annotations

SETNEXTVERSION = r"""#!/bin/bash
# Licensed to the Apache Software Foundation (ASF) under the Apache License, Version 2.0.
# stackops lab: CloudStack's tools/build/setnextversion.sh without Maven (see the comments below).

set -e

usage() {
    cat << USAGE
Usage: setnextversion.sh --version string [OPTIONS]...
Set the next version of CloudStack in the POMs.

Mandatory arguments:
   -v, --version string                    Set the next version to be applied

Optional arguments:
   -b, --branch string                     Set the branch to update the version into (default "master")
   -s, --sourcedir string                  Set the source directory to clone repo into (default "~/cloudstack/")
   -n, --no-commit                         Apply only the version change and don't git commit them (default "false")

Other arguments:
   -h, --help                              Display this help message and exit
USAGE
    exit 0
}

while [ -n "$1" ]; do
    case "$1" in
        -h | --help) usage ;;
        -v | --version)
            if [ -n "$version" ]; then echo "ERROR: you have already entered value for -v, --version"; exit 1; fi
            version=$2; shift 2 ;;
        -b | --branch)
            if [ -n "$branch" ]; then echo "ERROR: you have already entered value for -b, --branch"; exit 1; fi
            branch=$2; shift 2 ;;
        -s | --sourcedir)
            if [ -n "$sourcedir" ]; then echo "ERROR: you have already entered value for -s, --sourcedir"; exit 1; fi
            sourcedir=$2; shift 2 ;;
        -n | --no-commit) nocommit="true"; shift 1 ;;
        -*|*) echo "ERROR: no such option $1. -h or --help for help"; exit 1 ;;
    esac
done

if [ -z "$version" ]; then
    echo >&2 "A version must be specified with the -v, --version option: $0 -v 4.0.0.RC1"
    exit 1
fi
branch=${branch:-master}
sourcedir=${sourcedir:-$HOME/cloudstack/}
nocommit=${nocommit:-false}

echo "Using version          : $version"
echo "Using source directory : $sourcedir"
echo "Using branch           : $branch"

cd "$sourcedir"

echo "checking out correct branch"
git checkout "$branch"

echo "determining current POM version"
# the real script: mvn org.apache.maven.plugins:maven-help-plugin:2.1.1:evaluate -Dexpression=project.version
currentversion=$(perl -0ne 'print $1 if m{</parent>.*?<version>([^<]+)</version>}s' pom.xml)
if [ -z "$currentversion" ]; then
    echo >&2 "cannot determine the project version from $sourcedir/pom.xml"
    exit 1
fi
export currentversion
echo "found $currentversion"

echo "setting new version numbers"
# the real script: mvn versions:set -DnewVersion=$version ... versions:commit (project and reactor parent versions)
git ls-files -- pom.xml '*/pom.xml' | while read -r pom; do
    CUR="$currentversion" NEW="$version" perl -0pi -e '
        s{(<parent>\s*<groupId>org\.apache\.cloudstack</groupId>\s*<artifactId>[^<]*</artifactId>\s*<version>)
          \Q$ENV{CUR}\E(</version>)}{$1$ENV{NEW}$2}x;
        s{(</parent>\s*(?:<groupId>[^<]*</groupId>\s*)?<artifactId>[^<]*</artifactId>\s*<version>)
          \Q$ENV{CUR}\E(</version>)}{$1$ENV{NEW}$2}x;
    ' "$pom"
done

perl -pi -e "s/$currentversion/$version/" debian/changelog
perl -pi -e "s/$currentversion/$version/" tools/marvin/setup.py

git clean -f

if [ "$nocommit" == "false" ]; then
    echo "commit changes"
    git commit -a -s -m "Updating pom.xml version numbers for release $version"
    export commitsh=`git show HEAD | head -n 1 | cut -d ' ' -f 2`

    echo "committed as $commitsh"
fi
"""

MVN_STANDIN = r"""#!/bin/sh
# stackops lab: a stand-in for Maven (no Maven, JDK or network on a lab build host). Run it where you would run
# mvn, with Maven's arguments, e.g.: sh tools/lab/mvn-standin.sh clean install -P systemvm -DskipTests
exec python3 "$(dirname "$0")/mvn_standin.py" "$@"
"""

PACKAGE_SH = r"""#!/bin/bash
# Licensed to the Apache Software Foundation (ASF) under the Apache License, Version 2.0.
# stackops lab: CloudStack 4.8's packaging/package.sh, the version read from the root POM instead of Maven.

function usage() {
    echo ""
    echo "usage: ./package.sh [-p|--pack] [-h|--help] [ARGS]"
    echo ""
    echo "The commonly used Arguments are:"
    echo "-p|--pack oss|OSS             To package with only redistributable libraries (default)"
    echo "-p|--pack noredist|NOREDIST   To package with non-redistributable libraries"
    echo "-d centos7|el8                To build a package for a distribution"
    echo "-s simulator|SIMULATOR        To build for Simulator"
    echo ""
    echo "Examples: ./package.sh -d centos7"
    exit 1
}

# packaging
#   $1 redist flag
#   $2 simulator flag
#   $3 distribution name
function packaging() {
    CWD=`pwd`
    RPMDIR=$CWD/../dist/rpmbuild
    PACK_PROJECT=cloudstack
    if [ -n "$1" ] ; then
        DEFOSSNOSS="-D_ossnoss $1"
    fi
    if [ -n "$2" ] ; then
        DEFSIM="-D_sim $2"
    fi

    DISTRO=$3
    case "$DISTRO" in
        centos7) DEFDIST="-Ddist .el7.centos" ;;
        el8) DEFDIST="-Ddist .el8" ;;
    esac
    if [ ! -f "$DISTRO/cloud.spec" ] ; then
        echo "Unsupported distribution $DISTRO: no $DISTRO/cloud.spec"
        echo "RPM Build Failed "
        exit 1
    fi

    # the real script: $MVN org.apache.maven.plugins:maven-help-plugin:2.1.1:evaluate -Dexpression=project.version
    VERSION=`(cd ../; perl -0ne 'print $1 if m{</parent>.*?<version>([^<]+)</version>}s' pom.xml) \
        | grep --color=none '^[0-9]\.'`
    if [ -z "$VERSION" ] ; then
        echo -e "cannot retrieve version to package\nRPM Build Failed"
        exit 2
    fi
    if echo $VERSION | grep -q SNAPSHOT ; then
        REALVER=`echo $VERSION | cut -d '-' -f 1`
        DEFVER="-D_ver $REALVER"
        DEFPRE="-D_prerelease 1"
        DEFREL="-D_rel SNAPSHOT"
    else
        REALVER=`echo $VERSION`
        DEFVER="-D_ver $REALVER"
        DEFREL="-D_rel 1"
    fi

    echo Preparing to package Apache CloudStack ${VERSION}
    echo ". cleaning up old dist folder"
    rm -rf $RPMDIR
    mkdir -p $RPMDIR/SPECS
    mkdir -p $RPMDIR/BUILD
    mkdir -p $RPMDIR/RPMS
    mkdir -p $RPMDIR/SRPMS
    mkdir -p $RPMDIR/tmp
    mkdir -p $RPMDIR/SOURCES/$PACK_PROJECT-$VERSION

    echo ". preparing source tarball"
    (cd ../; tar -c --exclude .git --exclude dist  .  | tar -C $RPMDIR/SOURCES/$PACK_PROJECT-$VERSION -x )
    (cd $RPMDIR/SOURCES/; tar -czf $PACK_PROJECT-$VERSION.tgz $PACK_PROJECT-$VERSION)

    echo ". executing rpmbuild"
    cp $DISTRO/cloud.spec $RPMDIR/SPECS

    (cd $RPMDIR; rpmbuild --define "_topdir $RPMDIR" --define "_tmppath $RPMDIR/tmp" "${DEFVER}" "${DEFREL}" \
        "${DEFDIST}" ${DEFPRE+"${DEFPRE}"} ${DEFOSSNOSS+"$DEFOSSNOSS"} ${DEFSIM+"$DEFSIM"} -bb SPECS/cloud.spec)

    if [ $? -ne 0 ]; then
        echo "RPM Build Failed "
        exit 1
    else
        echo "RPM Build Done"
    fi
    exit

}


TARGETDISTRO=""
sim=""
packageval=""

while [ $# -gt 0 ] ; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        -p | --pack)
            echo "Doing CloudStack Packaging ....."
            packageval=$2
            if [ "$packageval" == "oss" -o "$packageval" == "OSS" ] ; then
                packageval=""
            elif [ "$packageval" == "noredist" -o "$packageval" == "NOREDIST" ] ; then
                packageval="noredist"
            else
                echo "Error: Incorrect value provided in package.sh script," \
                     "Please see help ./package.sh --help|-h for more details."
                exit 1
            fi
            shift 2
            ;;
        -s | --simulator)
            sim=$2
            if [ "$sim" == "default" -o "$sim" == "DEFAULT" ] ; then
                sim="false"
            elif [ "$sim" == "simulator" -o "$sim" == "SIMULATOR" ] ; then
                sim="simulator"
            else
                echo "Error: Incorrect value provided in package.sh script for -o," \
                     "Please see help ./package.sh --help|-h for more details."
                exit 1
            fi
            shift 2
            ;;
        -d | --distribution)
            TARGETDISTRO=$2
            shift 2
            ;;
        -*)
            echo "Unrecognized option..."
            usage
            exit 1
            ;;
        *)
            shift
            ;;
    esac
done

if [ -z "$TARGETDISTRO" ]
then
    echo "Missing target distribution"
    usage
    exit 1
fi

packaging "$packageval" "$sim" "$TARGETDISTRO"
"""
