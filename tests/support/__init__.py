"""Test support shared by every test package: fake API server, doubles, fixtures."""
