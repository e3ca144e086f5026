"""The ``lowcarb`` command line: one module per command group."""
