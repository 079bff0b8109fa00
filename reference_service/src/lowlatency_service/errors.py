"""Errors shared by the subcommands, kept apart from cli.py.

``python -m lowlatency_service.cli`` runs cli.py as ``__main__``; an exception
class defined there would then exist twice and the one that runtime raises
would not be the one that main() catches.
"""


class UsageError(Exception):
    """Bad arguments found after parsing (exit status 2)."""
