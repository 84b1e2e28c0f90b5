"""The code location: every asset, job, schedule and resource, assembled in one place."""

from __future__ import annotations

import dagster as dg

from bioloupe_data.assets.ingestion import build_clinicaltrials_landing
from bioloupe_data.assets.normalize import build_trials_normalization
from bioloupe_data.assets.sources import CLINICALTRIALS_API
from bioloupe_data.partitions import daily_partitions
from bioloupe_data.resources import ClinicalTrialsResource, WarehouseResource
from bioloupe_data.schedules import clinicaltrials_job, clinicaltrials_schedule
from bioloupe_data.settings import Settings, env


def _from_env(name: str, default: str = "") -> str | dg.EnvVar:
    """An `EnvVar` when the variable is set (so secrets stay out of the config), else the
    default: an empty variable counts as unset."""
    return dg.EnvVar(name) if env(name) else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(database_url=_from_env("BIOLOUPE_DATABASE_URL")),
        "clinicaltrials": ClinicalTrialsResource(
            base_url=_from_env("CTGOV_BASE_URL"), scope=_from_env("CTGOV_SCOPE")
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    daily = daily_partitions(settings.start_date)
    job = clinicaltrials_job()
    return dg.Definitions(
        assets=[
            CLINICALTRIALS_API,
            build_clinicaltrials_landing(daily),
            build_trials_normalization(daily),
        ],
        jobs=[job],
        schedules=[clinicaltrials_schedule(job)],
        resources=build_resources(),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
