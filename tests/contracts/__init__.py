"""Contract tests (a package: module names like test_chains.py stay unique across tests/)."""
