"""The cloud register: the HTTPS service hubs enroll with and sync to, and its ``kotihub-register`` CLI.

It depends on :mod:`cloud_sync.protocol` alone. Entry points: :func:`cloud_sync.register.app.create_app`,
:func:`cloud_sync.register.server.serve`, :mod:`cloud_sync.register.cli`.
"""
