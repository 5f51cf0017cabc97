"""How every command reports failures: a message and an exit code, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
import traceback

import click

from tlkit.interrupts import STOP, Terminated

#: When this module was first imported: the command's start, before TensorFlow's import.
IMPORTED = time.time()


def command_seconds() -> float:
    """Wall-clock seconds since this process started (Linux: its start time in
    ``/proc/self/stat`` after the boot time in ``/proc/stat``; elsewhere since this module
    loaded, a second or so later)."""
    try:
        ticks = int(open("/proc/self/stat").read().rpartition(")")[2].split()[19])
        boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        started = min(boot + ticks / os.sysconf("SC_CLK_TCK"), IMPORTED)
    except (OSError, ValueError, StopIteration, IndexError):
        started = IMPORTED
    return max(0.0, time.time() - started)


#: Set by commands whose work resumes when run again (finetune, pretrain).
RESUMABLE = {"on": False}


def resumable_signals() -> None:
    """For a training command: Ctrl-C (SIGINT) and SIGTERM stop it at the next step boundary
    with a checkpoint there while it trains (:mod:`tlkit.interrupts`), at once otherwise (the
    last checkpoint is kept); a second signal stops at once. Either way the message says that
    the same command resumes. An ignored SIGINT (a background job of a non-interactive shell)
    is handled too."""
    import signal

    def stop(signum, frame):
        if STOP.request(signum):
            name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
            click.echo(f"{name}: stopping after this step, with a checkpoint there "
                       "(send it again to stop at once)", err=True)
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    RESUMABLE["on"] = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


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
        except BrokenPipeError:  # `tlkit models | head`: the reader left, nothing to report
            sys.stderr.close()
            os._exit(0)
        except KeyboardInterrupt as exc:  # Ctrl-C (SIGINT), or SIGTERM in a training command
            terminated = isinstance(exc, Terminated)
            what = str(exc) or ("terminated (SIGTERM)" if terminated else "interrupted")
            hint = ("; run the same command again to resume from the last checkpoint"
                    if RESUMABLE["on"] and "run the same command" not in what else "")
            click.echo(f"{what}{hint}", err=True)
            sys.exit(143 if terminated else 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("TLKIT_DEBUG") == "1":
                traceback.print_exc()
            from tlkit.io import out_of_space

            if found := out_of_space(exc):  # a full disk is the machine's state, not a bug
                why, advice = found
                again = ("run the same command again to resume from the last checkpoint"
                         if RESUMABLE["on"] else "run the command again")
                where, detail = "", _first_line(exc)
                if getattr(exc, "filename", None) and getattr(exc, "strerror", None):
                    where, detail = f" {exc.filename}", f"[Errno {exc.errno}] {exc.strerror}"
                click.echo(
                    f"error: {why} while writing{where} ({type(exc).__name__}: {detail}); every file finished before is kept as it was (tlkit "
                    f"writes files whole or not at all). {advice} and {again}.",
                    err=True,
                )
                sys.exit(1)
            click.echo(
                f"error: {type(exc).__name__}: {exc}\n(set TLKIT_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.exit(1)

    return wrapper


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


#: Set to 1 to see TensorFlow's start-up logs (CUDA probing, CPU features, oneDNN).
TF_LOGS_ENV = "TLKIT_TF_LOGS"


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter out of the user's terminal; import it quietly.

    ``TF_CPP_MIN_LOG_LEVEL=3`` silences what TensorFlow logs once its logging is set up (the
    "failed call to cuInit" error on a machine without a GPU, the CPU-feature notice), but
    not what its libraries print while they load, before absl's logging starts ("All log
    messages before absl::InitializeLog() ...", oneDNN, "Could not find cuda drivers"). So
    TensorFlow is imported here with the process's standard error (file descriptor 2) pointed
    at a temporary file; if the import fails, what it printed is shown after all. Variables
    the user set are kept; ``TLKIT_TF_LOGS=1`` turns all of this off.
    """
    if os.environ.get(TF_LOGS_ENV) == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
