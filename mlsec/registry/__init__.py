"""Model registries mlsec scans and gates: MLflow (mlsec/registry/mlflow.py), and what every registry
workflow shares (mlsec/registry/workflow.py): incremental scans that tag verdicts back, and
promotions that the serve gate must allow."""
