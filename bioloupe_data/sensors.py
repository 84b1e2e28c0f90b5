"""Sensors: new drugs and sponsors in the warehouse become dynamic partitions, and their
profiles are requested in the same tick."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from bioloupe_data.assets.enrichment import (
    DRUG_PROFILES_KEY,
    DRUGS_KEY,
    SPONSOR_PROFILES_KEY,
    SPONSORS_KEY,
)
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


def build_registration_sensor(kind: EntityKind) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{kind.table}_registration_sensor",
        target=[kind.profile_key],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Registers {kind.table} first seen since the last tick as partitions of "
            f"`{kind.partitions.name}` and requests their profiles in batched range runs; keys "
            "already known are never added again."
        ),
    )
    def _registration(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        after = int(context.cursor) if context.cursor else 0
        with warehouse.connection() as conn:
            seen = registered_since(conn, kind.table, after)
        if not seen:
            return dg.SkipReason(f"no new {kind.table}")
        known = set(context.instance.get_dynamic_partitions(kind.partitions.name))
        new = list(dict.fromkeys(e.key for e in seen if e.key not in known))
        return dg.SensorResult(
            run_requests=batched_run_requests(kind, new, seen[-1].seq),
            dynamic_partitions_requests=[kind.partitions.build_add_request(new)] if new else [],
            cursor=str(seen[-1].seq),
        )

    return _registration


drug_registration_sensor = build_registration_sensor(ENTITY_KINDS[0])
sponsor_registration_sensor = build_registration_sensor(ENTITY_KINDS[1])


# `enriched/drugs` and `enriched/sponsors` follow `core/trials` (eager automation conditions);
# this sensor evaluates them, on from the start.
entity_automation_sensor = dg.AutomationConditionSensorDefinition(
    name="entity_automation_sensor",
    target=dg.AssetSelection.assets(DRUGS_KEY, SPONSORS_KEY),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
