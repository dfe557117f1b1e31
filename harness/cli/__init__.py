"""The ``harness`` command line: it only wires the layers below it together.

Each command group lives in its own module here and is added to :data:`main`. A
:class:`~harness.errors.HarnessError` anywhere below becomes one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import os
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


def _wait_politely_on_a_busy_machine() -> None:
    """OpenMP's default wait policy spins idle threads; beside one other busy process on 2 cores
    that made fine-tuning 3.4x slower, against 1.5x with ``OMP_WAIT_POLICY=PASSIVE``, which costs
    19% on an idle machine (benchmarks/bench_busy_machine.py). So the passive policy is chosen when
    the machine is already busy as harness starts; the wait policy never changes a number. It is
    read when torch loads, which the commands do lazily, after this."""
    if "OMP_WAIT_POLICY" in os.environ or not hasattr(os, "getloadavg"):
        return
    if os.getloadavg()[0] >= 0.5 * (os.cpu_count() or 1) and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        warnings.showwarning = _show_warning
        _wait_politely_on_a_busy_machine()
        try:
            return super().invoke(ctx)
        except HarnessError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


def _plugin_blocks(values: tuple[str, ...]) -> list[str]:
    names = []
    for value in values:
        name = value.removeprefix("no:").strip()
        if not value.startswith("no:") or not name:
            raise click.BadParameter(f"{value!r}: write no:NAME to block the plugin NAME (its entry-point name)",
                                     param_hint="-p")
        names.append(name)
    return names


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
@click.option("-p", "plugin_blocks", multiple=True, metavar="no:NAME",
              help="Block the plugin NAME (its entry-point name, see `harness methods`) for this command, as "
                   "pytest's -p no:NAME; repeatable. HARNESS_DISABLE_PLUGINS=a,b does the same for a shell.")
@click.pass_context
def main(ctx: click.Context, plugin_blocks: tuple[str, ...]) -> None:
    """Benchmark self-supervised pretraining for electron-microscopy particle segmentation.

    Data, splits, label budgets, the downstream task and the metrics are fixed by harness;
    SSL methods come in as plugins. Start with `harness datasets` and
    `harness data preview synthetic-sem --out preview.png`.
    """
    if plugin_blocks:
        from harness.plugins.manager import blocking

        # one command's blocks, not the process's for good (tests invoke many commands in one process)
        ctx.with_resource(blocking(_plugin_blocks(plugin_blocks)))


def _add_commands() -> None:
    from harness.cli import data, evaluate, leaderboard, predict, run

    for module in (data, evaluate, leaderboard, predict, run):
        for command in module.COMMANDS:
            main.add_command(command)


_add_commands()
