"""Two snapshots of the same synthetic registry for the convergence tests: `old`, and `new`,
taken two days later, in which every fifth study changed (a new title and a later
`versionHolder`, the same `lastUpdatePostDate`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bioloupe_data.replay.synth import write_synthetic

CHANGED_EVERY = 5


@dataclass(frozen=True)
class Snapshots:
    old: Path
    new: Path
    first_day: date
    last_day: date
    changed: frozenset[str]


def write_snapshots(root: Path, days: int, per_day: int, end: date, seed: int = 3) -> Snapshots:
    old = root / "old"
    write_synthetic(old, days, per_day, seed=seed, end=end, pubmed_per_day=0)
    new = root / "new"
    changed: set[str] = set()
    for path in sorted(old.rglob("*.json")):
        page = json.loads(path.read_text())
        for index, study in enumerate(page["studies"]):
            if index % CHANGED_EVERY:
                continue
            identification = study["protocolSection"]["identificationModule"]
            identification["briefTitle"] += " (amended)"
            misc = study["derivedSection"]["miscInfoModule"]
            misc["versionHolder"] = (end + timedelta(days=2)).isoformat()
            changed.add(identification["nctId"])
        target = new / path.relative_to(old)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(page))
    return Snapshots(old, new, end - timedelta(days=days - 1), end, frozenset(changed))
