# Kubernetes test lab (tests/lab/README.md). Included by the main Makefile,
# which defines PY (the venv python, .venv/bin/python).
LAB_DIR := $(dir $(lastword $(MAKEFILE_LIST)))

.PHONY: lab-build lab

## lab-build: build etcd, kube-apiserver, kube-controller-manager, Multus and CNI plugins (cached)
lab-build:
	bash $(LAB_DIR)build.sh

## lab: start the control plane and wait (prints KUBECONFIG); Ctrl-C stops it
lab:
	$(PY) -m tests.lab
