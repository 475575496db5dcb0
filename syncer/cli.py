"""The `reamaze-sync` command."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from syncer.config import DEFAULT_CONFIG_PATH, AppConfig, load_config
from syncer.errors import ConfigError, SyncError
from syncer.logs import configure_logging

F = TypeVar("F", bound=Callable[..., Any])


CONFIG_ENV = "REAMAZE_SYNC_CONFIG"
LogFormat = Literal["auto", "json", "console"]


class Ctx:
    """The global options, wherever they were written (see ``global_options``)."""

    def __init__(self, config_option: Path | None = None, log_level: str | None = None,
                 log_format: LogFormat | None = None):
        self.config_option = config_option
        self.log_level = log_level
        self.log_format = log_format

    @property
    def config_path(self) -> Path:
        """--config, else the file REAMAZE_SYNC_CONFIG names, else ./reamaze-sync.toml."""
        if self.config_option is not None:
            return self.config_option
        return config_from_environment()

    def config(self, *, pair: str | None = None, connects: bool = False) -> AppConfig:
        """The validated config. ``connects``: the command will talk to the services, so
        the secrets of the pairs it uses (``pair``, or every enabled pair) must be set;
        a missing one is a configuration error listed with all the others, instead of a
        failed pass later."""
        cfg = load_config(self.config_path, pair=pair, need_secrets=connects)
        configure_logging(self.log_level or cfg.logging.level,
                          self.log_format or cfg.logging.format)
        return cfg

    def engine(self, pair: str | None = None, *, background: bool = False) -> Any:
        from syncer.app import build_engine

        return build_engine(self.config(pair=pair, connects=True), background=background)


def handle_errors(fn: F) -> F:
    """Config errors: the message and exit 2; other sync errors: the message and exit 1.
    Never a traceback for a problem the user can fix."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"configuration error:\n{exc.message}", err=True)
            sys.exit(2)
        except SyncError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def config_from_environment() -> Path:
    """Where the config is without --config: REAMAZE_SYNC_CONFIG (when not blank), else
    ./reamaze-sync.toml."""
    named = os.environ.get(CONFIG_ENV, "")
    return Path(named) if named.strip() else DEFAULT_CONFIG_PATH


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep a global option given before or after the command in the one shared ``Ctx``;
    processed in command-line order, so the later one wins (`--config a run --config b`)."""
    if value is not None and param.name is not None:
        setattr(ctx.ensure_object(Ctx), param.name, value)
    return value


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from importlib.metadata import version

        click.echo(f"reamaze-sync {version('reamaze-sync')}")
        ctx.exit()


def global_options() -> list[click.Parameter]:
    """The options every command takes, before or after its name (new objects each time:
    click keeps per-command state on them)."""
    return [
        click.Option(["--config", "config_option"], type=click.Path(path_type=Path),
                     metavar="PATH", expose_value=False, callback=_remember,
                     help=f"TOML configuration file. Default: the file ${CONFIG_ENV} "
                          f"names, else ./{DEFAULT_CONFIG_PATH}."),
        click.Option(["--log-level"], type=click.Choice(["debug", "info", "warning", "error"]),
                     expose_value=False, callback=_remember,
                     help="Overrides [logging] level."),
        click.Option(["--log-format"], type=click.Choice(["auto", "json", "console"]),
                     expose_value=False, callback=_remember,
                     help="Overrides [logging] format."),
        click.Option(["--version"], is_flag=True, is_eager=True, expose_value=False,
                     callback=_print_version, help="Show the version and exit."),
    ]


class Cli(click.Group):
    """The command group. It and every command added to it take ``global_options``, so
    `reamaze-sync check --config x` works like `reamaze-sync --config x check`, for
    commands added later too, without each one declaring them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_options())

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(global_options())
        super().add_command(cmd, name)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """Two-way sync between Re:amaze conversations and issue trackers."""
    ctx.ensure_object(Ctx)


def _print_results(results: list[Any]) -> int:
    """One line per pair; exit 1 unless every pass was clean (a failed object, or a copy of
    internal content that came back public, removed or not, needs a person's attention)."""
    code = 0
    for r in results:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(r.counts.items())) or "nothing to do"
        state = "ok" if r.ok else f"ERROR: {r.error}"
        click.echo(f"[{r.pair}] {state}; {counts}")
        for cid, err in sorted(r.failed.items()):
            click.echo(f"  failed {cid}: {err}")
        if r.counts.get("leaks_removed") or r.counts.get("leaks_unremoved"):
            click.echo("  WARNING: copies of internal notes came back public "
                       f"(removed: {r.counts.get('leaks_removed', 0)}, could not be removed: "
                       f"{r.counts.get('leaks_unremoved', 0)}); see `reamaze-sync status`")
        if not r.clean:
            code = 1
    return code


WAIT_HELP = ("Seconds to wait for a pair another process is working, then give up "
             "(exit 1). Default: [state] lock_wait_seconds.")


@main.command()
@click.option("--once", is_flag=True, help="One pass over every pair, then exit.")
@click.option("--pair", help="Only this pair.")
@click.option("--wait", type=click.FloatRange(min=0), help=WAIT_HELP + " With --once only.")
@click.pass_obj
@handle_errors
def run(obj: Ctx, once: bool, pair: str | None, wait: float | None) -> None:
    """Run the sync daemon (or one pass with --once)."""
    if wait is not None and not once:
        raise click.UsageError("--wait needs --once: the daemon skips a busy pair's pass "
                               "and tries again at the next interval")
    engine = obj.engine(pair)
    try:
        if once:
            from syncer.app import run_all_once

            sys.exit(_print_results(run_all_once(engine, pair, kind="poll", lock_wait=wait)))
        from syncer.daemon import run_daemon

        sys.exit(run_daemon(engine, pair))
    finally:
        engine.close()


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"[backfill] since: {value!r} is not an ISO date "
                          "(e.g. 2026-01-31 or 2026-01-31T08:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@main.command()
@click.option("--pair", help="Only this pair.")
@click.option("--since", help="Only conversations changed since this ISO date.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; write nothing.")
@click.option("--wait", type=click.FloatRange(min=0), help=WAIT_HELP)
@click.option("--progress-every", type=click.FloatRange(min=0), default=10.0,
              show_default=True, help="When stderr is not a terminal: seconds between two "
              "progress lines in the log (0: after every conversation).")
@click.pass_obj
@handle_errors
def backfill(obj: Ctx, pair: str | None, since: str | None, dry_run: bool,
             wait: float | None, progress_every: float) -> None:
    """Walk Re:amaze history and sync every matching conversation (safe to re-run)."""
    from syncer.app import run_all_once
    from syncer.progress import backfill_with_progress

    when = _parse_date(since)
    # Beside a daemon on the same credentials, a backfill takes only what it leaves.
    engine = obj.engine(pair, background=True)
    level = obj.log_level or engine.config.logging.level
    fmt = obj.log_format or engine.config.logging.format
    # A bar only where someone watches it, and never among JSON lines.
    bar = sys.stderr.isatty() and fmt != "json"
    try:
        results = []
        for p in engine.pairs(pair):
            runner = engine.runner(p)
            if isinstance(runner, ConfigError):
                results += run_all_once(engine, p.name)
                continue
            if wait is not None:
                runner.lock_wait = wait
            results.append(backfill_with_progress(
                runner, stream=sys.stderr, bar=bar, every=progress_every, log_level=level,
                log_format=fmt, kind="backfill", dry_run=dry_run, full=True,
                since=when or p.since))
        if dry_run:
            _print_plans(results)
        sys.exit(_print_results(results))
    finally:
        engine.close()


def _print_plans(results: list[Any]) -> None:
    from syncer.explain import describe_action

    for r in results:
        for plan in r.plans:
            for action in plan.actions:
                click.echo(f"[{r.pair}] {describe_action(action)}")


@main.command()
@click.option("--pair", help="Only this pair.")
@click.pass_obj
@handle_errors
def plan(obj: Ctx, pair: str | None) -> None:
    """Print the operations the next pass would perform (writes nothing)."""
    from syncer.app import build_engine, run_all_once
    from syncer.cli_ops import read_only_store

    cfg = obj.config(pair=pair, connects=True)
    store = read_only_store(cfg.state.url, "everything looks new, as on a first run")
    engine = build_engine(cfg, store=store)
    try:
        results = run_all_once(engine, pair, kind="poll", dry_run=True)
        _print_plans(results)
        sys.exit(_print_results(results))
    finally:
        engine.close()


@main.command()
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document (format in the README) instead of text.")
@click.pass_obj
@handle_errors
def status(obj: Ctx, as_json: bool) -> None:
    """Per pair: links, cursors, last run, errors, pending writes, failures; exit 1 on a
    problem (last run failed, stale pair, open leak)."""
    from syncer.status import run_status

    sys.exit(run_status(obj.config(), datetime.now(UTC), as_json=as_json, echo=click.echo))


@main.command()
@click.pass_obj
@handle_errors
def check(obj: Ctx) -> None:
    """Validate the config, look at the state and try every connection an enabled pair uses."""
    from syncer.check import run_check

    report = run_check(obj.config(connects=True))
    for line in report.lines:
        click.echo(line)
    if report.problems:
        click.echo("configuration error:\n" + "\n".join(report.problems), err=True)
    sys.exit(report.exit_code)


@main.command()
@click.argument("conversation")
@click.argument("issue")
@click.option("--pair", help="The pair (default: the only one).")
@click.pass_obj
@handle_errors
def link(obj: Ctx, conversation: str, issue: str, pair: str | None) -> None:
    """Link a Re:amaze conversation (slug or URL) to an existing tracker issue (77, #77 or
    its URL)."""
    from syncer.cli_ops import link_conversation

    sys.exit(link_conversation(obj, conversation, issue, pair))


@main.command()
@click.argument("conversation")
@click.option("--pair", help="The pair (default: the only one).")
@click.option("--exclude", is_flag=True,
              help="Also keep the conversation from syncing again (a skip; undo: retry).")
@click.option("--yes", is_flag=True, help="Unlink without asking, even if the conversation "
              "may get a new issue.")
@click.pass_obj
@handle_errors
def unlink(obj: Ctx, conversation: str, pair: str | None, exclude: bool, yes: bool) -> None:
    """Forget a link (nothing is deleted on either side)."""
    from syncer.cli_ops import unlink_conversation

    sys.exit(unlink_conversation(obj, conversation, pair, exclude=exclude, yes=yes))


@main.command()
@click.option("--keep-state", type=click.Path(path_type=Path),
              help="Write the demo's state DB here instead of a temporary file.")
@click.option("--tracker", type=click.Choice(["redmine", "github", "gitlab"]),
              default="redmine",
              show_default=True, help="Which tracker's simulator the story runs against.")
@click.pass_obj
def demo(obj: Ctx, keep_state: Path | None, tracker: str) -> None:
    """Run the real engine against built-in simulators (no credentials, no config)."""
    from syncer.demo import _report, run_demo
    from syncer.demo_github import run_github_demo
    from syncer.demo_gitlab import run_gitlab_demo

    configure_logging(obj.log_level or "warning", obj.log_format or "console")
    if tracker == "github":
        sys.exit(run_github_demo(click.echo, _report, keep_state))
    if tracker == "gitlab":
        sys.exit(run_gitlab_demo(click.echo, _report, keep_state))
    sys.exit(run_demo(click.echo, keep_state))


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(obj: Ctx, path: Path | None, force: bool) -> None:
    """Write the commented example configuration to PATH and print the next steps.

    PATH defaults to where the other commands look: --config, else the file
    $REAMAZE_SYNC_CONFIG names, else ./reamaze-sync.toml. An existing file is kept
    (exit 1) unless --force is given."""
    from syncer.starter import next_steps, write_example

    target = path or obj.config_path
    try:
        write_example(target, force=force)
    except FileExistsError:
        click.echo(f"error: {target} already exists; pass --force to overwrite it", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot write {target}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    found = target.absolute() == config_from_environment().absolute()
    click.echo(f"wrote {target}")
    click.echo("\n".join(next_steps("" if found else f"--config {target} ")))


def _register_ops() -> None:
    from syncer.cli_ops import register
    from syncer.cli_verify import verify

    register(main, handle_errors)
    if verify.callback is not None:
        verify.callback = handle_errors(verify.callback)
    main.add_command(verify)


_register_ops()

if __name__ == "__main__":  # pragma: no cover
    main()
