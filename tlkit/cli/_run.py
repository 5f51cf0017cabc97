"""How every command reports failures: a message and an exit code, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
import traceback

import click


def handle_errors(func):
    """Turn tlkit errors into ``error: ...`` with exit 2 (user) or 1 (runtime).

    Set ``TLKIT_DEBUG=1`` to see the traceback of an unexpected failure.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from tlkit.errors import TlkitError

        try:
            return func(*args, **kwargs)
        except TlkitError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("TLKIT_DEBUG") == "1":
                traceback.print_exc()
            click.echo(
                f"error: {type(exc).__name__}: {exc}\n(set TLKIT_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.exit(1)

    return wrapper


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
