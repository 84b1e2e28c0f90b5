"""The code location `bench.daemon_backfill` serves with `dagster dev`: the project's
ClinicalTrials.gov landing and normalizing assets, their checks and the project's resources,
built by the project's own `build_definitions`, without sensors or schedules, so that nothing
but the measured backfill launches runs.

`BIOLOUPE_BENCH_BACKFILL_POLICY=per-partition` gives both assets one run per partition
(`BackfillPolicy.multi_run(1)`, what Dagster does for an asset without a policy) instead of the
project's policy; the assets, checks, data and everything else stay the same.
"""

from __future__ import annotations

import os

import dagster as dg

from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY
from bioloupe_data.assets.normalize import TRIALS_KEY
from bioloupe_data.definitions import build_definitions
from bioloupe_data.settings import Settings

POLICY_VARIABLE = "BIOLOUPE_BENCH_BACKFILL_POLICY"
MEASURED_KEYS = frozenset({CLINICALTRIALS_LANDING_KEY, TRIALS_KEY})


@dg.definitions
def defs() -> dg.Definitions:
    project = build_definitions(Settings.from_env())
    per_partition = os.environ.get(POLICY_VARIABLE) == "per-partition"
    assets = []
    for asset in project.assets or []:
        if not isinstance(asset, dg.AssetsDefinition) or not set(asset.keys) & MEASURED_KEYS:
            continue
        if per_partition:
            # `with_attributes` is how Dagster itself rewrites a built asset's policy.
            asset = asset.with_attributes(backfill_policy=dg.BackfillPolicy.multi_run(1))
        assets.append(asset)
    checks = [
        check
        for check in project.asset_checks or []
        if isinstance(check, dg.AssetChecksDefinition)
        and {key.asset_key for key in check.check_keys} <= MEASURED_KEYS
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        resources=project.resources,
        executor=project.executor,
    )
