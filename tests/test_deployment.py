"""What can be checked here of a deployment beyond one machine: the production dagster.yaml
loads against a real PostgreSQL, the deployment files parse and agree with each other, and the
image's entry point (run here, without Docker) serves the code location."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from bench._dagster_dev import clean_environment, free_port
from bioloupe_data.warehouse.database import as_sqlalchemy_psycopg2_url

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_the_production_dagster_yaml_loads_against_postgresql(
    tmp_path: Path, dagster_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml.example").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv(
        "BIOLOUPE_DAGSTER_STORAGE_URL", as_sqlalchemy_psycopg2_url(dagster_storage_url)
    )
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        # a killed run's pool slot is given back, or its pool blocks every later run
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_settings("retention")["sensor"]["purge_after_days"]["skipped"] == 7
        assert instance.get_settings("concurrency")["pools"]["default_limit"] == 1
        assert not list(instance.get_runs())  # the storage answers


def test_the_deployment_files_parse_and_name_the_same_code_location() -> None:
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    entrypoint = _entrypoint()
    assert deployment["dagsterApiGrpcArgs"] == entrypoint[3:5]  # --module-name <module>
    assert deployment["port"] == int(entrypoint[-1])
    assert {"name": "BIOLOUPE_ENV", "value": "prod"} in deployment["env"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert (
        values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == deployment["envSecrets"]
    )
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is True
    # the chart's name for run_monitoring.free_slots_after_run_end_seconds (see above)
    assert monitoring["freeSlotsAfterRunEndSeconds"] > 0
    (server,) = workspace["load_from"]
    assert server["grpc_server"]["port"] == int(entrypoint[-1])
    assert server["grpc_server"]["location_name"] == "bioloupe_data"


def _entrypoint() -> list[str]:
    found = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert found, "the Dockerfile has an exec-form ENTRYPOINT"
    return json.loads(found.group(1))


def test_the_image_entry_point_serves_the_code_location(database_url: str, tmp_path: Path) -> None:
    """The Dockerfile's ENTRYPOINT, as the image runs it (production environment), on a free
    local port: Dagster's health check gets an answer, and deploy/workspace.yaml pointed at it
    loads the code location's jobs."""
    command = _entrypoint()
    port = str(free_port())
    command[-1] = port
    command[0] = DAGSTER
    env = {**clean_environment(), "BIOLOUPE_ENV": "prod", "BIOLOUPE_DATABASE_URL": database_url}
    server = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            check = subprocess.run(
                [DAGSTER, "api", "grpc-health-check", "--port", port],
                env=env,
                capture_output=True,
                text=True,
            )
            if check.returncode == 0:
                break
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, check.stderr
            time.sleep(1)
        workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
        workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=int(port))
        (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        listed = subprocess.run(
            [DAGSTER, "job", "list", "-w", str(tmp_path / "workspace.yaml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        assert "clinicaltrials_gov_daily" in listed.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
