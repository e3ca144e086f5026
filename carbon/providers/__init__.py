"""Carbon-intensity providers: one module per provider type, each with its typed ``Options``.

:mod:`carbon.providers.base` says what a provider is (settings, options, protocol, errors),
:mod:`carbon.providers._http` is the base of the HTTP ones, and
:mod:`carbon.providers.registry` maps type names to classes (built-ins and entry-point plugins).
Importing this package imports nothing else.
"""
