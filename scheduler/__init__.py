"""lowcarb's scheduler side: the extender service, cluster state, GPU fit, scoring and the CLI.

``__version__`` is the installed distribution's version (pyproject.toml's ``version``, the one
place it is written), read from the package metadata.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lowcarb")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
