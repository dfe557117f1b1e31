"""The ``harness`` command line: it only wires the layers below it together.

Each command group lives in its own module here and is added to :data:`main`. A
:class:`~harness.errors.HarnessError` anywhere below becomes one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import sys
import warnings

import click

from harness import __version__
from harness.errors import HarnessError, HarnessWarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, HarnessWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except HarnessError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def main() -> None:
    """Benchmark self-supervised pretraining for electron-microscopy particle segmentation.

    Data, splits, label budgets, the downstream task and the metrics are fixed by harness;
    SSL methods come in as plugins. Start with `harness datasets` and
    `harness data preview synthetic-sem --out preview.png`.
    """


def _add_commands() -> None:
    from harness.cli import data, evaluate, leaderboard, run

    for module in (data, evaluate, leaderboard, run):
        for command in module.COMMANDS:
            main.add_command(command)


_add_commands()
