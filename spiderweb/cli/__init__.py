"""The ``spiderweb`` command-line tool: standard library only, talks to the portal over HTTP (see README.md)."""
