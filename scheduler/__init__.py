"""lowcarb's scheduler side: the extender service, cluster state, GPU fit, scoring and the CLI."""

__version__ = "0.1.0"
