"""Pipelines declared once in `mlsec.yaml`: the artifacts (config.py), each stage run in order
(runner.py: scan, sign, gate, ledger, outputs), and a starter file from a repository (init.py)."""
