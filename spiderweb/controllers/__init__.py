"""Kubernetes controllers: the kit every loop shares, and one folder per controller (see README.md)."""
