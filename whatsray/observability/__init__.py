"""Seeing whatsray run: the Prometheus config that scrapes it (`prometheus_config`, see
docs/metrics.md) and the platform's logs (`logs`). Import from the modules themselves."""
