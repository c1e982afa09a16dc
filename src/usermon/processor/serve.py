"""``usermon serve``: the processor's command, its options made from the settings' declaration.

Registered lazily by :mod:`usermon.cli`, so that ``import usermon.cli`` does not import the
processor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from usermon.processor.settings import OPTIONS, SettingsError, resolve

__all__ = ["serve"]


def _serve_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of ``usermon serve``, made from the settings' one declaration
    (:data:`usermon.processor.settings.OPTIONS`). Click parses the command line only: what a flag
    leaves unset, :func:`~usermon.processor.settings.resolve` takes from the environment, then
    the default, and validates, so the CLI and programmatic use resolve alike."""
    kinds: dict[str, Any] = {"int": int, "float": float, "path": click.Path(dir_okay=False)}
    for option in reversed(OPTIONS):
        shown = f"; default {option.shown_default}" if option.shown_default else ""
        kind = kinds.get(option.kind)
        if option.kind == "choice":
            kind = click.Choice(option.choices, case_sensitive=False)
        command = click.option(
            option.flag,
            option.name,
            type=kind,
            metavar=option.metavar,
            multiple=option.multiple,
            help=f"{option.help} [env {option.env}{shown}]",
        )(command)
    return command


@click.command()
@_serve_options
def serve(**flags: Any) -> None:
    """Run the usermon processor: OTLP in, aggregation and detection, findings out."""
    import logging

    # A repeatable flag given no time is "not given", so that its variable applies.
    given = {name: None if value == () else value for name, value in flags.items()}
    try:
        settings = resolve(given)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from usermon.processor.runner import run

    try:
        run(settings)
    except Exception as exc:  # startup problems: a clear message, not a traceback
        from usermon.processor.storage.errors import StoreError

        if isinstance(exc, StoreError | OSError | ValueError):
            raise click.ClickException(str(exc)) from None
        raise
