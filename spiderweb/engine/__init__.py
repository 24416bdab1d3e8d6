"""Pure IPAM logic for Spiderweb: ranges, routes, selectors, pod facts and pool selection.

Standard library only, deterministic and side-effect free, so the portal, the node agent and the tests can share it.
See README.md in this package for the public API.
"""
