"""Trace-driven simulation: the openb trace, carbon series, runs, bound, ledger, report."""
