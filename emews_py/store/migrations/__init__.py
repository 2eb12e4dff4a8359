"""The store's alembic migrations (env.py, versions/), shipped with the package.

``python -m emews_py.store.migrations --help`` runs them by hand and writes new revisions.
"""
