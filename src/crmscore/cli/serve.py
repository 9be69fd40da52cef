"""`crmscore serve`, `crmscore keys ...`, `crmscore features publish` and `crmscore predictions`."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmscore.cli.root import app
from crmscore.cli.features import features_app

log = logging.getLogger("crmscore")
keys_app = typer.Typer(help="API keys for the scoring service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
SERVICE = "crmscore.serving.service:ScoringService"


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 3000,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: settings, 1).")] = None,
) -> None:
    """Start the BentoML scoring service (runs `bentoml serve`) until interrupted."""
    from crmscore.settings import get_settings

    env = dict(os.environ)
    if workers:
        env["CRMSCORE_WORKERS"] = str(workers)
    # this instance's own metrics directory (two services on one host must not share BentoML's)
    env.setdefault("CRMSCORE_METRICS_DIR", str(Path(get_settings().home).resolve() / "metrics" / f"port-{port}"))
    cmd = [sys.executable, "-m", "crmscore.serving.arbiter", "serve", SERVICE, "--host", host, "--port", str(port)]
    log.info("starting %s on http://%s:%d", SERVICE, host, port)
    # replace this process: a SIGTERM to `crmscore serve` then reaches `bentoml serve` (no orphaned workers)
    os.execve(sys.executable, cmd, env)


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
                admin: Annotated[bool, typer.Option(help="May call /v1/admin (reload).")] = False) -> None:
    """Print a new API key once; only its hash is stored (in CRMSCORE_HOME/api_keys.json)."""
    from crmscore.errors import ConfigError
    from crmscore.serving.keys import KeyRing
    from crmscore.settings import get_settings

    s = get_settings()
    try:
        key = KeyRing.from_settings(s.home, None).create(name, admin=admin)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(key)
    Console(stderr=True).print(f"key {name!r} created{' (admin)' if admin else ''}: it is shown only this once",
                               highlight=False)


@keys_app.command("list")
def keys_list() -> None:
    """Names of the stored keys (never the keys)."""
    from crmscore.serving.keys import KeyRing
    from crmscore.settings import get_settings

    for entry in KeyRing.from_settings(get_settings().home, None).names():
        print(f"{entry['name']}{' (admin)' if entry['admin'] else ''}")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="Key name.")]) -> None:
    """Remove a key (a running service stops accepting it at its next request)."""
    from crmscore.errors import ConfigError
    from crmscore.serving.keys import KeyRing
    from crmscore.settings import get_settings

    if not KeyRing.from_settings(get_settings().home, None).revoke(name):
        raise ConfigError(f"no key named {name!r}")


@features_app.command("publish")
def publish(
    config: Annotated[Path, typer.Option("--config", "-c", help="Project YAML config.")],
    as_of: Annotated[dt.datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"],
                                                      help="Snapshot date (default: after the last data).")] = None,
    engine: Annotated[str | None, typer.Option(
        "--engine", help="duckdb (SQLite store, and Redis when CRMSCORE_REDIS_URL is set) or spark (Redis only, "
                         "written in partitions); default: the config's engine.")] = None,
) -> None:
    """Write the latest features of every customer to the online store for scoring by id."""
    from crmscore.cli.common import engine_of, load_data
    from crmscore.config import load_config
    from crmscore.settings import get_settings

    cfg = load_config(config)
    if engine_of(cfg, engine) == "spark":
        from crmscore.cli.common import load_spark_data
        from crmscore.scoring.spark_publish import publish_snapshot_on_spark

        n, where = publish_snapshot_on_spark(load_spark_data(cfg), as_of, get_settings())
    else:
        from crmscore.scoring.publish import publish_snapshot

        n, where = publish_snapshot(load_data(cfg), as_of, get_settings())
    log.info("published features of %s customers to %s", f"{n:,}", where)


@app.command("predictions")
def predictions(limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
                out: Annotated[Path | None, typer.Option(help="Export the whole log, every retained file, as "
                                                              "Parquet (streamed: flat memory).")] = None) -> None:
    """Show (or export) the prediction log."""
    from crmscore.scoring.predlog import export_parquet, read_log
    from crmscore.settings import get_settings

    path = Path(get_settings().home) / "predictions.sqlite"
    if out:
        n = export_parquet(path, out)
        log.info("exported %s predictions to %s", f"{n:,}", out)
        return
    rows = read_log(path, limit)
    table = Table(title=f"prediction log {path} (first {limit})")
    for col in ("request_id", "ts", "customer_id", "model", "version", "score", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["request_id"][:12], dt.datetime.fromtimestamp(r["ts"]).isoformat(timespec="seconds"),
                      str(r["customer_id"]), r["model"], str(r["version"]),
                      "" if r["score"] is None else f"{r['score']:.4f}", r["error"] or "")
    Console().print(table)
