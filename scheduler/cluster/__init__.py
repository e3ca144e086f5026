"""Cluster state: nodes and their pods as numpy columns (the NodeTable)."""
