"""Kubernetes mirror: admission webhooks, CRD ⇄ database reconciliation, status batches and the CRD watcher."""
