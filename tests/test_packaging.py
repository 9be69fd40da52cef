"""The Bento is built from this checkout: the root bentofile names the package's service, ships the
package's own source and pyproject.toml's dependencies (never a `crmscore` from the package index), and a
real `bentoml build` + `bentoml serve` of it answers."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

import crmscore
from crmscore.serving.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
BENTOML = Path(sys.executable).parent / "bentoml"


def _bentofile() -> dict:
    return yaml.safe_load((ROOT / "bentofile.yaml").read_text())


def test_root_bentofile_serves_the_package_with_the_project_dependencies():
    bentofile = _bentofile()
    module, _, cls = bentofile["service"].partition(":")
    service = getattr(importlib.import_module(module), cls)
    assert module == "crmscore.serving.service" and service.name == "crmscore"
    assert bentofile["python"]["is_src_layout"] is True and "src/crmscore/**" in bentofile["include"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dependencies = project["dependencies"]
    assert project["version"] == crmscore.__version__  # the version models record is the one released
    assert bentofile["python"]["packages"] == dependencies
    assert "crmscore" not in {Requirement(p).name for p in bentofile["python"]["packages"]}
    assert not (ROOT / "serving").exists()  # the old shim and its bentofile are gone


@pytest.mark.integration
def test_bentoml_build_at_the_root_makes_a_bento_that_serves(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    built = subprocess.run([str(BENTOML), "build", "-o", "tag"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, _, version = tag.partition(":")
    bento = tmp_path / "bentoml" / "bentos" / name / version
    for source in (ROOT / "src" / "crmscore").rglob("*.py"):
        shipped = bento / "src" / source.relative_to(ROOT / "src")
        assert shipped.read_bytes() == source.read_bytes(), shipped
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().split()
    assert "crmscore" not in {Requirement(r).name for r in requirements if not r.startswith(("-", "#", "."))}

    port, home = free_port(), tmp_path / "home"
    serve_env = {**env, "CRMSCORE_HOME": str(home), "CRMSCORE_TRACKING_URI": f"sqlite:///{tmp_path / 'none.db'}"}
    proc = subprocess.Popen([str(BENTOML), "serve", tag, "--port", str(port)], cwd=tmp_path, env=serve_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        status = None
        deadline = time.time() + 90
        while time.time() < deadline and status != 200:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
            raise AssertionError("ready with no registry")
        except urllib.error.HTTPError as exc:  # no registry here: live, not ready, and it says why
            assert exc.code == 503 and "does not exist" in exc.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
