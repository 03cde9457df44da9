"""Prefect flows composing the tasks in ``tasks/``, and the ``automl`` command line."""
