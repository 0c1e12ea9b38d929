"""What the tests share: spec data, probe output, Secrets, drivers for the lab simulators, the cluster handle and
the one `wait_for`. Imported as `support.…` (pyproject puts tests/ on the path)."""
