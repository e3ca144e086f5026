"""Cost components of the one-currency model beside the terms' quantities: one file each (its
policy section as a pydantic model and its hot-path table), e.g. :mod:`scheduler.costs.energy`."""
