"""Builds the optional native hot paths of the bus (bus/_speedups.c); metadata lives in setup.cfg.

``optional=True``: without a C compiler or Python's headers the build goes on and the bus runs its
Python code (bus/speedups.py says which is in use)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("bus._speedups", ["bus/_speedups.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                                 "-Wno-missing-field-initializers"])])
