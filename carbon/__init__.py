"""Carbon-intensity data for lowcarb: providers, the background cache scoring reads, the ledger.

This package never imports :mod:`scheduler`; the scheduler reads carbon data only through
:class:`carbon.types.CarbonView` (an immutable snapshot of the cache).
"""
