"""Sensors: new drugs and sponsors in the warehouse become dynamic partitions, and their
profiles are requested in the same tick."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from bioloupe_data.assets.enrichment import DRUG_PROFILES_KEY, SPONSOR_PROFILES_KEY
from bioloupe_data.partitions import MAX_ENTITIES_PER_RUN, drug_partitions, sponsor_partitions
from bioloupe_data.pipelines.entities import registered_since
from bioloupe_data.resources import WarehouseResource

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True, slots=True)
class EntityKind:
    table: str
    partitions: dg.DynamicPartitionsDefinition
    profile_key: dg.AssetKey


ENTITY_KINDS = (
    EntityKind("drugs", drug_partitions, DRUG_PROFILES_KEY),
    EntityKind("sponsors", sponsor_partitions, SPONSOR_PROFILES_KEY),
)


def batched_run_requests(
    kind: EntityKind, keys: Sequence[str], last_seq: int
) -> list[dg.RunRequest]:
    """Range runs over consecutive new keys (in the order they are added as partitions); the
    run key names the range, so a repeated tick never requests it twice."""
    requests = []
    for i in range(0, len(keys), MAX_ENTITIES_PER_RUN):
        batch = keys[i : i + MAX_ENTITIES_PER_RUN]
        requests.append(
            dg.RunRequest(
                run_key=f"{kind.table}:{batch[0]}..{batch[-1]}@{last_seq}",
                asset_selection=[kind.profile_key],
                tags={RANGE_START_TAG: batch[0], RANGE_END_TAG: batch[-1]},
            )
        )
    return requests


@dg.sensor(
    target=[DRUG_PROFILES_KEY, SPONSOR_PROFILES_KEY],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def entity_registration_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    """Registers drugs and sponsors first seen since the last tick as partitions of `drugs` and
    `sponsors` and requests their profiles in batched range runs. Keys already known are never
    added again."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    before = dict(cursor)
    additions: list[dg.AddDynamicPartitionsRequest] = []
    requests: list[dg.RunRequest] = []
    with warehouse.connection() as conn:
        for kind in ENTITY_KINDS:
            seen = registered_since(conn, kind.table, int(cursor.get(kind.table, 0)))
            if not seen:
                continue
            cursor[kind.table] = seen[-1].seq
            known = set(context.instance.get_dynamic_partitions(kind.partitions.name))
            new = list(dict.fromkeys(e.key for e in seen if e.key not in known))
            if not new:
                continue
            additions.append(kind.partitions.build_add_request(new))
            requests += batched_run_requests(kind, new, seen[-1].seq)
    if cursor == before:
        return dg.SkipReason("no new drugs or sponsors")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=additions,
        cursor=json.dumps(cursor, sort_keys=True),
    )
