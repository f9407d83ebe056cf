"""What every ``xiaozhi-*`` command line shares, so that the nine tools behave alike.

- one help layout: each option's default after its help, the module's examples as written;
- ``--version`` and ``--log-level`` on every tool (``--log-level`` also after a subcommand);
- one logging setup (``shared.logs``; a service replaces it with its configured ``log`` section);
- one way to fail: an operator's mistake (a config that cannot be read, a port in use, a missing or
  corrupt model, a bad certificate, an unreachable hub) ends the process with one line on stderr,
  ``xiaozhi-<tool>: <what>: <why>``, and exit status 2 (usage, configuration) or 1 (runtime), never a
  traceback. Anything else is a bug and keeps its traceback.

The same concept has the same spelling in every tool: ``--config FILE`` (YAML settings), ``--out PATH``
(what the tool writes), ``--timeout SECONDS``, ``--json`` (machine-readable output on stdout).
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from shared.settings import ConfigError

__all__ = [
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "LOG_LEVELS",
    "CliError",
    "HelpFormatter",
    "add_command",
    "hidden_alias",
    "package_version",
    "parse",
    "parser",
    "run",
    "setup_logging",
]

EXIT_RUNTIME = 1  # the action failed: a port in use, a hub that does not answer, a turn that never ended
EXIT_USAGE = 2  # what the operator gave is wrong: flags, a config file, a model or certificate file
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class CliError(Exception):
    """An operator's mistake or an unusable dependency: ``run`` prints one line and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.code = code


def package_version() -> str:
    try:
        return version("xiaozhi-fleet")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (the examples keep their lines); each option's default after its
    help, unless it has none worth showing (None, off, empty) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or default is False
            or default in ("", [])
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        return text + " (default: %(default)s)"


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(LOG_LEVELS)}")
    return level


def _add_log_level(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument(
        "--log-level",
        type=_log_level,
        default=default,
        metavar="LEVEL",
        help=f"{'/'.join(LOG_LEVELS)} (default: INFO, or log.level from the tool's config)",
    )


def parser(prog: str, description: str | None, epilog: str | None = None) -> argparse.ArgumentParser:
    """A tool's top-level parser: the shared help layout, ``--version`` and ``--log-level``."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"{prog} {package_version()}")
    _add_log_level(p, None)
    return p


def add_command(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help: str,  # noqa: A002 - argparse's own name for it
    description: str | None = None,
    examples: list[str] | None = None,
) -> argparse.ArgumentParser:
    """A subcommand with the same help layout; ``--log-level`` is accepted after it too."""
    epilog = ("examples:\n" + "\n".join(f"  {e}" for e in examples)) if examples else None
    p = sub.add_parser(name, help=help, description=description or help, epilog=epilog, formatter_class=HelpFormatter)
    _add_log_level(p, argparse.SUPPRESS)  # not given here: the top-level value (or None) stays
    return p


def hidden_alias(p: argparse.ArgumentParser, old: str, dest: str, **kwargs: Any) -> None:
    """An old spelling that scripts may still use: accepted, stored in ``dest``, not shown in the help."""
    p.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


def setup_logging(level: str | None) -> None:
    """Log lines on stderr at ``level`` (INFO when None), the format services use; a process that already
    configured logging (a test runner calling ``main`` in-process) keeps its own."""
    if logging.getLogger().handlers:
        return
    from shared.logs import setup_logging as configure
    from shared.settings import LogConfig

    configure(LogConfig(level=level or "INFO"))


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--log-level``."""
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    return args


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a tool's body; an operator's mistake becomes one line on stderr and a non-zero exit status."""
    try:
        return body()
    except CliError as exc:
        message, code = str(exc), exc.code
    except ConfigError as exc:  # includes shared.tls.TlsError: a certificate or key file that cannot be used
        message, code = str(exc), EXIT_USAGE
    except ssl.SSLError as exc:
        message, code = f"TLS: {exc}", EXIT_USAGE
    except OSError as exc:  # a port in use, a file that cannot be written, a host that cannot be reached
        message, code = _os_error(exc), EXIT_RUNTIME
    except KeyboardInterrupt:
        message, code = "interrupted", 130
    print(f"{prog}: {_one_line(message)}", file=sys.stderr, flush=True)
    return code
