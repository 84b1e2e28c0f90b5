"""ClinicalTrials.gov API v2: the HTTP client and the parser into typed records."""

from bioloupe_data.sources.clinicaltrials.client import (
    ONCOLOGY_CONDITION_QUERY,
    PUBLIC_BASE_URL,
    SOURCE,
    ClinicalTrialsClient,
    CutStudyPage,
    StudyPage,
    condition_query,
)
from bioloupe_data.sources.clinicaltrials.parser import (
    CHILD_TABLES,
    TRIAL_COLUMNS,
    ParsedStudy,
    StudyIdentity,
    StudyParseError,
    parse_study,
    study_identity,
)

__all__ = [
    "CHILD_TABLES",
    "ONCOLOGY_CONDITION_QUERY",
    "PUBLIC_BASE_URL",
    "SOURCE",
    "TRIAL_COLUMNS",
    "ClinicalTrialsClient",
    "CutStudyPage",
    "ParsedStudy",
    "StudyIdentity",
    "StudyPage",
    "StudyParseError",
    "condition_query",
    "parse_study",
    "study_identity",
]
