"""The lab: local infrastructure for tests and demos; never imported by the operator."""
