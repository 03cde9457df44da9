"""Thin Prefect tasks around library calls, plus MLflow logging at this edge.

Each task's body (``task.fn``) is also what a DVC stage runs (``automl stage NAME``), so the flow and
``dvc repro`` share one implementation.
"""
