"""The bulk upsert engine: COPY into a staging table, deduplicate, merge set-based.

Every statement is built from `psycopg.sql` identifiers; values only ever travel as parameters
or through COPY.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

VERSION_COLUMNS = ("source_updated_at", "version_key", "content_hash")


@dataclass(frozen=True, slots=True)
class Table:
    schema: str
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def ident(self) -> sql.Composed:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(slots=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def add(self, other: UpsertCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted

    def as_metadata(self) -> dict[str, int]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


@dataclass(slots=True)
class MergeResult:
    counts: UpsertCounts
    changed_keys: list[tuple[Any, ...]] = field(default_factory=list)


def _idents(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _prefixed(prefix: str, names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def _assign_from_excluded(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names
    )


def create_staging(conn: psycopg.Connection, table: Table) -> sql.Identifier:
    """An empty temporary table with the target's column types, emptied at commit.

    Must be called inside a transaction. The table is created once per session and reused:
    creating and dropping temporary tables for every day would churn the system catalog.
    """
    name = sql.Identifier(f"stg_{table.schema}_{table.name}")
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS "
            "AS SELECT {} FROM {} WITH NO DATA"
        ).format(name, _idents(table.columns), table.ident)
    )
    conn.execute(sql.SQL("DELETE FROM {}").format(name))
    return name


def copy_rows(
    conn: psycopg.Connection,
    staging: sql.Identifier,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> int:
    written = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(staging, _idents(columns))
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            written += 1
    return written


def merge_versioned(
    conn: psycopg.Connection,
    table: Table,
    staging: sql.Identifier,
    *,
    change_columns: Sequence[str],
    allow_same_version: bool,
    earliest_snapshot_of_same_content: bool = False,
) -> MergeResult:
    """Upsert the newest staged version of each key into `table`.

    A row is written only when the staged version is newer than the stored one (or as new, with
    `allow_same_version`) under the total order (source_updated_at, version_key, content_hash),
    and `change_columns` differ.

    With `earliest_snapshot_of_same_content`, snapshots of identical content (same update time
    and content hash, another `version_key`) converge on the earliest snapshot whatever order
    they arrive in: a later one is not a change (`version_key` must then not be a change
    column), an earlier one replaces the stored one.

    Staged rows the condition would not write are left out of the INSERT before it runs: `ON
    CONFLICT DO UPDATE … WHERE false` still locks (and so rewrites the header of) every row it
    meets. The staging table is deduplicated only when it holds a key twice.

    Returns counts and the keys written (inserted or updated), sorted.
    """
    key = table.key
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {} FROM {}) AS k) FROM {}"
        ).format(_idents(key), staging, staging)
    ).fetchone()
    total, distinct = row if row else (0, 0)

    def writes(new: str, old: str) -> sql.Composable:
        """The condition under which the version in `new` replaces the stored one in `old`."""
        return sql.SQL(
            """(({new_version}) {comparison} ({old_version})
                AND ({old_change}) IS DISTINCT FROM ({new_change}))
               OR ({earliest_snapshot}
                   AND {n}.source_updated_at = {o}.source_updated_at
                   AND {n}.content_hash = {o}.content_hash
                   AND {n}.version_key < {o}.version_key)"""
        ).format(
            new_version=_prefixed(new, VERSION_COLUMNS),
            old_version=_prefixed(old, VERSION_COLUMNS),
            comparison=sql.SQL(">=" if allow_same_version else ">"),
            old_change=_prefixed(old, change_columns),
            new_change=_prefixed(new, change_columns),
            earliest_snapshot=sql.SQL("TRUE" if earliest_snapshot_of_same_content else "FALSE"),
            n=sql.Identifier(new),
            o=sql.Identifier(old),
        )

    if distinct < total:
        newest_first = sql.SQL(", ").join(
            [sql.Identifier(c) for c in key]
            + [sql.SQL("{} DESC").format(sql.Identifier(c)) for c in VERSION_COLUMNS]
        )
        incoming = sql.SQL(
            "SELECT DISTINCT ON ({key}) {cols} FROM {staging} ORDER BY {order}"
        ).format(key=_idents(key), cols=_idents(table.columns), staging=staging, order=newest_first)
    else:
        incoming = sql.SQL("SELECT {cols} FROM {staging}").format(
            cols=_idents(table.columns), staging=staging
        )
    statement = sql.SQL(
        """
        WITH incoming AS ({incoming})
        INSERT INTO {target} AS t ({cols})
        SELECT {cols} FROM incoming AS i
        WHERE NOT EXISTS (
            SELECT 1 FROM {target} AS o WHERE {same_key} AND NOT ({prefilter})
        )
        ORDER BY {key}
        ON CONFLICT ({key}) DO UPDATE SET {assignments}
        WHERE {condition}
        RETURNING {returned_key}, (t.xmax = 0) AS inserted
        """
    ).format(
        incoming=incoming,
        target=table.ident,
        cols=_idents(table.columns),
        same_key=_same_key("o", "i", key),
        prefilter=writes("i", "o"),
        key=_idents(key),
        assignments=_assign_from_excluded(c for c in table.columns if c not in key),
        condition=writes("excluded", "t"),
        returned_key=_prefixed("t", key),
    )
    returned = conn.execute(statement).fetchall()
    inserted = sum(1 for r in returned if r[-1])
    counts = UpsertCounts(
        inserted=inserted,
        updated=len(returned) - inserted,
        unchanged=distinct - len(returned),
    )
    return MergeResult(counts, sorted(tuple(r[:-1]) for r in returned))


def _same_key(left: str, right: str, key: Sequence[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(
            sql.Identifier(left), sql.Identifier(k), sql.Identifier(right), sql.Identifier(k)
        )
        for k in key
    )


def sync_children(
    conn: psycopg.Connection,
    table: Table,
    staging: sql.Identifier,
    parent_column: str,
    parent_keys: Sequence[Any],
) -> UpsertCounts:
    """Make `table`'s rows of the given parents equal to the staged ones.

    Only the parents in `parent_keys` (those whose own upsert won) are touched; rows that did not
    change are not rewritten. Keys are processed in sorted order so concurrent runs take row
    locks in the same order.
    """
    keys = sorted(parent_keys)
    staged_total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(staging)).fetchone()
    counts = UpsertCounts()
    if keys:
        parent = sql.Identifier(parent_column)
        key_match = sql.SQL(" AND ").join(
            sql.SQL("s.{0} = c.{0}").format(sql.Identifier(k)) for k in table.key
        )
        deleted = conn.execute(
            sql.SQL(
                "DELETE FROM {target} AS c WHERE c.{parent} = ANY(%s) "
                "AND NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE {key_match})"
            ).format(target=table.ident, parent=parent, staging=staging, key_match=key_match),
            (keys,),
        )
        counts.deleted = deleted.rowcount
        updatable = [c for c in table.columns if c not in table.key]
        assignments = _assign_from_excluded(updatable)
        returned = conn.execute(
            sql.SQL(
                """
                INSERT INTO {target} AS c ({cols})
                SELECT {cols} FROM {staging} WHERE {parent} = ANY(%s) ORDER BY {key}
                ON CONFLICT ({key}) DO UPDATE SET {assignments}
                WHERE ({old}) IS DISTINCT FROM ({new})
                RETURNING (c.xmax = 0) AS inserted
                """
            ).format(
                target=table.ident,
                cols=_idents(table.columns),
                staging=staging,
                parent=parent,
                key=_idents(table.key),
                assignments=assignments,
                old=_prefixed("c", updatable),
                new=_prefixed("excluded", updatable),
            ),
            (keys,),
        ).fetchall()
        counts.inserted = sum(1 for (was_insert,) in returned if was_insert)
        counts.updated = len(returned) - counts.inserted
    counts.unchanged = (staged_total[0] if staged_total else 0) - counts.inserted - counts.updated
    return counts


def upsert_rows(
    conn: psycopg.Connection, table: Table, rows: Sequence[Sequence[Any]]
) -> UpsertCounts:
    """Upsert unversioned rows (derived data that is simply recomputed): new ones inserted,
    changed ones updated (`updated_at` set), identical ones left unwritten. Must run inside the
    caller's transaction."""
    staging = create_staging(conn, table)
    copy_rows(conn, staging, table.columns, rows)
    updatable = [c for c in table.columns if c not in table.key]
    returned = conn.execute(
        sql.SQL(
            """
            INSERT INTO {target} AS t ({cols})
            SELECT {cols} FROM {staging} AS s
            WHERE NOT EXISTS (
                SELECT 1 FROM {target} AS o
                WHERE {same_key} AND ({stored}) IS NOT DISTINCT FROM ({staged})
            )
            ORDER BY {key}
            ON CONFLICT ({key}) DO UPDATE SET {assign}, updated_at = now()
            WHERE ({old}) IS DISTINCT FROM ({new})
            RETURNING (t.xmax = 0)
            """
        ).format(
            target=table.ident,
            cols=_idents(table.columns),
            staging=staging,
            same_key=_same_key("o", "s", table.key),
            stored=_prefixed("o", updatable),
            staged=_prefixed("s", updatable),
            key=_idents(table.key),
            assign=_assign_from_excluded(updatable),
            old=_prefixed("t", updatable),
            new=_prefixed("excluded", updatable),
        )
    ).fetchall()
    inserted = sum(1 for (was_insert,) in returned if was_insert)
    return UpsertCounts(inserted, len(returned) - inserted, len(rows) - len(returned))
