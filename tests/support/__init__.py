"""What the tests share: spec data, probe output, Secrets, ConfigMaps, drivers for the lab simulators, an OpenSSH
server, the lab's KvmHost passes, the cluster handle and the one `wait_for`. Imported as `support.…` (pyproject puts
tests/ on the path); no test module imports another."""
