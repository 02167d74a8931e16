"""The register's HTTP routes, one router per resource; :func:`cloud_sync.register.app.create_app` includes them.

Shared dependencies (who is calling, bounded bodies, JSON replies, OpenAPI fragments) are in :mod:`.common`, the
error handlers in :mod:`.errors`.
"""
