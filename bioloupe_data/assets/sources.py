"""The upstream APIs as external assets, so lineage starts at the source."""

from __future__ import annotations

import dagster as dg

CLINICALTRIALS_API = dg.AssetSpec(
    key=["clinicaltrials_gov", "api"],
    description="ClinicalTrials.gov API v2 (`/api/v2/studies`), updated by the registry daily.",
    group_name="sources",
    kinds={"api"},
    owners=["team:data-platform"],
)
