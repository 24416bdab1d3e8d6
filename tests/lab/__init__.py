"""Kubernetes test lab: a real etcd + kube-apiserver + kube-controller-manager for tests.

See README.md in this directory. Entry points: ``python -m tests.lab`` (interactive
lab), ``controlplane.ControlPlane`` (library), ``test_controlplane.py`` (smoke tests).
"""
