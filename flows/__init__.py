"""Prefect layer: flows and deployments over the DVC stages (no domain logic here)."""
