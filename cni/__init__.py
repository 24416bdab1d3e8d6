"""Spiderweb CNI executables (``spiderpool``, ``coordinator``, ``ifacer``).

The package is kept to the standard library so that an executable starts fast on any node with a python3
and cannot break because a third-party package is missing or has a different version there. The executables
are thin: they read CNI_* and stdin, ask the node agent over its unix socket, and print a CNI result or error.
"""
