"""Lab fixtures for CloudStackRelease builds: a CloudStack-like source repository with its build scripts and
pull-request patches (fixture.py), served like GitHub over HTTP (server.py)."""

from stackops_lab.release.fixture import PullRequest, SourceFixture, make_source_repository
from stackops_lab.release.server import ReleaseServer, Request

__all__ = ["PullRequest", "ReleaseServer", "Request", "SourceFixture", "make_source_repository"]
