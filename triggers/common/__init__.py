"""Code shared by every trigger function and the CLI.

Standard library, `requests` and `google-auth` only: this package is vendored
into each function's deploy folder (`python -m triggers.package`), and what it
imports is paid on every cold start.
"""
