"""Celery: the app, thin tasks that call exporter/, and the beat schedule."""
