"""Errors a user can cause; the CLI prints their message and exits with code 2."""


class BenchError(Exception):
    """Bad input or an unusable file: the message names what is wrong and the valid choices."""
