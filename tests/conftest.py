from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

# BentoML reads BENTOML_HOME once, at its first import: give the whole session a private model store (the
# service keeps a copy of every model it loads there), never the user's ~/bentoml, and remove it at the end
_BENTOML_HOME = tempfile.mkdtemp(prefix="crmscore-tests-bentoml-")
os.environ["BENTOML_HOME"] = _BENTOML_HOME
atexit.register(shutil.rmtree, _BENTOML_HOME, True)

REPO = Path(__file__).resolve().parents[1]

# A new MLflow SQLite store runs MLflow's ~50 schema migrations (4 s on a quiet 2-core machine, 12-15 s
# under load), and the suite makes a new store in some twenty places: make one empty, migrated store per
# session and copy it (milliseconds). Its default experiment is deleted so that each copy makes its own
# with its own artifact root, as MLflow does for a new store.
_MLFLOW_TEMPLATE = Path(tempfile.mkdtemp(prefix="crmscore-tests-mlflow-")) / "empty.db"
atexit.register(shutil.rmtree, _MLFLOW_TEMPLATE.parent, True)


def tracking_store(folder: Path, name: str = "mlflow.db") -> str:
    """The URI of a new, empty MLflow SQLite store at folder/name (what MLflow itself would make there)."""
    if not _MLFLOW_TEMPLATE.exists():
        import sqlite3

        from mlflow.tracking import MlflowClient

        building = _MLFLOW_TEMPLATE.with_suffix(".building")
        MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()
        with sqlite3.connect(building) as db:
            db.execute("DELETE FROM experiments WHERE experiment_id = 0")
        building.replace(_MLFLOW_TEMPLATE)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MLFLOW_TEMPLATE, folder / name)
    return f"sqlite:///{folder / name}"


def cli_here(*args, env: dict[str, str] | None = None):
    """`crmscore ARGS` in this process through typer's runner: the command's own code, without the 5-15 s of
    imports a new process pays. For checks of the real process (exit codes from crmscore.cli.main, a file
    written by a separate process) run `python -m crmscore` instead. env: variables set for the call only.
    Asserts exit code 0; returns the result (stdout, stderr, output)."""
    from typer.testing import CliRunner

    from crmscore.cli import _register, app

    _register()
    res = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert res.exit_code == 0, (args, res.output[-3000:], res.exception)
    return res


SHARED_DATA = REPO.parent / "shared" / "data"

requires_shared = pytest.mark.skipif(
    not (SHARED_DATA / "completejourney").is_dir(),
    reason=f"the team's real datasets are not here ({SHARED_DATA} is absent; a machine outside the team has none)",
)


def write_config(tmp_path: Path, data: dict, **extra) -> Path:
    """Write a project config whose sources are given as {table: {path, columns...}}."""
    cfg = {"name": "test", "timezone": "UTC", "data": data,
           "validation": {"quarantine_dir": str(tmp_path / "quarantine")}, **extra}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def write_frames(tmp_path: Path, frames: dict[str, pd.DataFrame], fmt: str = "csv") -> dict:
    """Write frames as files and return the config's data section pointing at them."""
    data = {}
    for name, df in frames.items():
        p = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(p, index=False)
        else:
            df.to_parquet(p, index=False)
        data[name] = {"path": str(p)}
    return data


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """Small synthetic dataset (2,000 customers), written once per test session."""
    from crmscore import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    synthetic.write(synthetic.generate(customers=2000, seed=7), out)
    return out


@pytest.fixture(scope="session")
def synthetic_config(synthetic_dir, tmp_path_factory) -> Path:
    """The shipped synthetic config, pointed at the session's synthetic data."""
    cfg = yaml.safe_load((REPO / "training" / "configs" / "synthetic.yaml").read_text())
    for table, source in cfg["data"].items():
        source["path"] = str(synthetic_dir / Path(source["path"]).name)
    tmp = tmp_path_factory.mktemp("synthetic_cfg")
    cfg["validation"]["quarantine_dir"] = str(tmp / "quarantine")
    path = tmp / "synthetic.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


SERVED_API_KEY = "crm_test_key_for_ci"


@pytest.fixture(scope="session")
def served_home(synthetic_config, tmp_path_factory):
    """Churn trained (3 snapshots), promoted and its features published, once per session, in a private home
    (MLflow store, online store, BentoML store). Training is the dear part of every service and page test
    module; each module serves its own copy of this home (`served_copy`), so that what one module promotes
    or publishes does not reach another."""
    from crmscore.config import load_config
    from crmscore.data import load_customer_data
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.settings import get_settings

    home = tmp_path_factory.mktemp("served")
    env = _served_env(home)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        cfg = load_config(synthetic_config)
        data = load_customer_data(cfg)
        task = get_task("churn")
        result = train_task(task, cfg, task.settings(snapshots=3), data=data)
        registry.promote("churn")
        publish_snapshot(data, None, get_settings())
    return {"home": home, "env": env, "data": data, "cfg": cfg, "result": result}


def _served_env(home: Path, api_key: str = SERVED_API_KEY) -> dict[str, str]:
    return {"CRMSCORE_HOME": str(home / "state"), "CRMSCORE_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "CRMSCORE_ARTIFACT_LOCATION": str(home / "mlruns"), "BENTOML_HOME": str(home / "bentoml"),
            "CRMSCORE_API_KEYS": api_key}


def served_copy(served_home: dict, home: Path, api_key: str = SERVED_API_KEY) -> dict:
    """A copy of the session's served home in `home` (registry, online store, prediction log), with the env
    that points at it. The copied registry still reads the model files from the session's artifact folder
    (MLflow keeps absolute artifact paths); new runs and versions are the copy's own."""
    shutil.copytree(served_home["home"], home, dirs_exist_ok=True)
    return {**served_home, "home": home, "env": _served_env(home, api_key)}


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def copy_repo_configs(dest: Path) -> None:
    shutil.copytree(REPO / "training", dest / "training", dirs_exist_ok=True)


@pytest.fixture
def redis_url():
    """A real redis-server on a free 127.0.0.1 port, stopped after the test; its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    import redis

    from crmscore.serving.launcher import free_port

    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _java_missing() -> str | None:
    """Why Spark tests cannot run here, or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (pip install -e '.[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Java is absent (Spark needs Java 17: apt-get install openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="session")
def spark():
    """One local[2] Spark session for every Spark test (starting one costs ~10 s), driver on 127.0.0.1,
    time zone UTC, two shuffle partitions (test data is small); stopped at the end."""
    reason = _java_missing()
    if reason:
        pytest.skip(reason)
    from crmscore.data.spark import spark_session

    session = spark_session("local[2]", {"spark.sql.shuffle.partitions": "2",
                                         "spark.default.parallelism": "2",
                                         "spark.sql.adaptive.enabled": "true"})
    yield session
    session.stop()
