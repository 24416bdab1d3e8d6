"""Celery workers: thin tasks that call services (reconciliation, autoscaling, GC)."""
