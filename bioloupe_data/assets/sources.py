"""The upstream APIs as external assets, so lineage starts at the source."""

from __future__ import annotations

import dagster as dg

from bioloupe_data.assets._common import OWNERS

CLINICALTRIALS_API = dg.AssetSpec(
    key=["clinicaltrials_gov", "api"],
    description="ClinicalTrials.gov API v2 (`/api/v2/studies`), updated by the registry daily.",
    group_name="sources",
    kinds={"api"},
    owners=OWNERS,
)

PUBMED_API = dg.AssetSpec(
    key=["pubmed", "api"],
    description="NCBI E-utilities for PubMed (`esearch.fcgi`, `efetch.fcgi`), updated daily.",
    group_name="sources",
    kinds={"api"},
    owners=OWNERS,
)
