"""Partition coverage drawn for people: a calendar heatmap per daily asset (weeks across, days
of the week down), a date × area grid for the landscape, and the assets partitioned by key as
counts; in the terminal, as a PNG and as a self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from bioloupe_data.status import DailyCoverage, GridCoverage, State, StatusReport

COLORS = {
    State.MATERIALIZED: "#2da44e",
    State.FAILED: "#cf222e",
    State.IN_PROGRESS: "#bf8700",
    State.MISSING: "#d0d7de",
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CELL, GAP = 12, 2
Weeks = list[list[date | None]]
# Draws one block of the image at (x, y) with Pillow's ImageDraw and font.
Paint = Callable[[Any, Any, int, int], None]


def _weeks(days: list[date]) -> Weeks:
    """Calendar columns: one per week (Monday first), None where a day is outside the window."""
    if not days:
        return []
    first = days[0] - timedelta(days=days[0].weekday())
    inside = set(days)
    columns = []
    monday = first
    while monday <= days[-1]:
        week = [monday + timedelta(days=i) for i in range(7)]
        columns.append([day if day in inside else None for day in week])
        monday += timedelta(days=7)
    return columns


def _month_starts(weeks: Weeks) -> list[tuple[int, str]]:
    """(column, month name) where a month begins, for labels above a calendar."""
    starts = []
    previous = None
    for column, week in enumerate(weeks):
        first = next(day for day in week if day is not None)
        if first.month != previous:
            starts.append((column, first.strftime("%b")))
            previous = first.month
    return starts


def _legend(report_counts: dict[State, int]) -> Text:
    text = Text()
    for state in State:
        text.append("■ ", style=COLORS[state])
        text.append(f"{state.value} {report_counts.get(state, 0)}   ")
    return text


# ----------------------------------------------------------------------------- terminal


def render_terminal(report: StatusReport, console: Console) -> None:
    console.print(f"[bold]partition coverage {report.start} .. {report.end}[/bold]")
    for daily in report.daily:
        _terminal_calendar(daily, console)
    for grid in report.grids:
        _terminal_grid(grid, console)
    for keyed in report.keyed:
        counts = ", ".join(f"{s.value} {keyed.counts.get(s, 0):,}" for s in State)
        line = f"{keyed.key} ({keyed.partitions}): {keyed.total:,} partitions; {counts}"
        if keyed.newest:
            line += f"; newest {keyed.newest}"
        if keyed.failed:
            line += f"; failed: {', '.join(keyed.failed[:5])}" + (
                " …" if len(keyed.failed) > 5 else ""
            )
        console.print(line)
    console.print("[red]gaps in the window[/red]" if report.has_gaps else "[green]no gaps[/green]")


def _terminal_calendar(daily: DailyCoverage, console: Console) -> None:
    console.print(Text(daily.key, style="bold"), _legend(dict(daily.counts)))
    weeks = _weeks(daily.days)
    for row, name in enumerate(WEEKDAYS):
        line = Text(f"  {name} ")
        for week in weeks:
            day = week[row]
            line.append("■" if day else " ", style=COLORS[daily.states[day]] if day else "")
        console.print(line)
    if daily.gaps:
        shown = ", ".join(d.isoformat() for d in daily.gaps[:8])
        console.print(f"  gaps: {shown}" + (" …" if len(daily.gaps) > 8 else ""))


def _terminal_grid(grid: GridCoverage, console: Console) -> None:
    console.print(Text(f"{grid.key} (day × area)", style="bold"), _legend(dict(grid.counts)))
    width = max((len(row) for row in grid.rows), default=0)
    for row in grid.rows:
        line = Text(f"  {row:<{width}} ")
        for day in grid.days:
            line.append("■", style=COLORS[grid.states[(day, row)]])
        console.print(line)


# ----------------------------------------------------------------------------- PNG


def write_png(report: StatusReport, path: Path) -> Path:
    """The heatmaps as one image, a block per asset, top to bottom."""
    from PIL import Image, ImageDraw, ImageFont  # imported when a report is written

    font = ImageFont.load_default()
    blocks = list(_png_blocks(report))
    width = max([w for w, _, _ in blocks] + [420])
    height = sum(h for _, h, _ in blocks) + 40
    image = Image.new("RGB", (width + 20, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (10, 8), f"partition coverage {report.start} .. {report.end}", fill="black", font=font
    )
    legend_x = 10
    for state in State:
        draw.rectangle([legend_x, 24, legend_x + 9, 33], fill=COLORS[state])
        draw.text((legend_x + 13, 23), state.value, fill="black", font=font)
        legend_x += 100
    top = 44
    for _, h, paint in blocks:
        paint(draw, font, 10, top)
        top += h
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _png_blocks(report: StatusReport) -> Iterator[tuple[int, int, Paint]]:
    step = CELL + GAP
    for daily in report.daily:
        weeks = _weeks(daily.days)

        def paint_calendar(
            draw: Any, font: Any, x: int, y: int, daily: DailyCoverage = daily, weeks: Weeks = weeks
        ) -> None:
            draw.text((x, y), daily.key, fill="black", font=font)
            for column, month in _month_starts(weeks):
                draw.text((x + 34 + column * step, y + 16), month, fill="#57606a", font=font)
            y += 14
            for column, week in enumerate(weeks):
                for row, day in enumerate(week):
                    if day is None:
                        continue
                    left, upper = x + 34 + column * step, y + 16 + row * step
                    fill = COLORS[daily.states[day]]
                    draw.rectangle([left, upper, left + CELL, upper + CELL], fill=fill)
            for row, name in enumerate(WEEKDAYS):
                draw.text((x, y + 16 + row * step), name, fill="#57606a", font=font)

        yield 34 + len(weeks) * step, 30 + 7 * step + 12, paint_calendar
    for grid in report.grids:
        label = 8 * max((len(r) for r in grid.rows), default=0)

        def paint_grid(
            draw: Any, font: Any, x: int, y: int, grid: GridCoverage = grid, label: int = label
        ) -> None:
            draw.text((x, y), f"{grid.key} (day x area)", fill="black", font=font)
            for row_index, row in enumerate(grid.rows):
                upper = y + 16 + row_index * step
                draw.text((x, upper), row, fill="#57606a", font=font)
                for column, day in enumerate(grid.days):
                    left = x + label + column * step
                    fill = COLORS[grid.states[(day, row)]]
                    draw.rectangle([left, upper, left + CELL, upper + CELL], fill=fill)

        yield label + len(grid.days) * step, 16 + len(grid.rows) * step + 12, paint_grid
    for keyed in report.keyed:
        counts = ", ".join(f"{s.value} {keyed.counts.get(s, 0):,}" for s in State)
        text = f"{keyed.key} ({keyed.partitions}): {keyed.total:,} partitions; {counts}"

        def paint_dynamic(draw: Any, font: Any, x: int, y: int, text: str = text) -> None:
            draw.text((x, y), text, fill="black", font=font)

        yield 7 * len(text), 20, paint_dynamic


# ----------------------------------------------------------------------------- HTML


def write_html(report: StatusReport, path: Path, png: Path | None = None) -> Path:
    """A page a browser opens from disk: every cell has its day and state as a tooltip."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>bioloupe-data partition coverage {report.start} .. {report.end}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px}"
        "table{border-collapse:separate;border-spacing:2px;margin-bottom:18px}"
        "td.c{width:11px;height:11px;border-radius:2px;padding:0}"
        "th{font-weight:normal;color:#57606a;text-align:right;padding-right:6px}"
        "h2{font-size:15px;margin:18px 0 6px}.legend span{margin-right:14px}</style></head><body>",
        f"<h1>Partition coverage {report.start} .. {report.end}</h1>",
        "<p class='legend'>"
        + "".join(f"<span><b style='color:{COLORS[s]}'>■</b> {s.value}</span>" for s in State)
        + "</p>",
        "<p>" + ("Gaps in the window." if report.has_gaps else "No gaps in the window.") + "</p>",
    ]
    for daily in report.daily:
        parts.append(_html_calendar(daily))
    for grid in report.grids:
        parts.append(_html_grid(grid))
    if report.keyed:
        parts.append("<h2>Partitioned by key</h2><ul>")
        for keyed in report.keyed:
            counts = ", ".join(f"{s.value} {keyed.counts.get(s, 0):,}" for s in State)
            newest = f"; newest <code>{html.escape(keyed.newest)}</code>" if keyed.newest else ""
            failed = (
                "; failed: " + ", ".join(html.escape(k) for k in keyed.failed[:20])
                if keyed.failed
                else ""
            )
            parts.append(
                f"<li><b>{html.escape(keyed.key)}</b> ({html.escape(keyed.partitions)}): "
                f"{keyed.total:,} partitions; {counts}{newest}{failed}</li>"
            )
        parts.append("</ul>")
    if png is not None:
        parts.append(f"<h2>As an image</h2><img src='{html.escape(png.name)}' alt='heatmaps'>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _cell(state: State, title: str) -> str:
    return f"<td class='c' style='background:{COLORS[state]}' title='{html.escape(title)}'></td>"


def _html_calendar(daily: DailyCoverage) -> str:
    weeks = _weeks(daily.days)
    counts = ", ".join(f"{s.value} {daily.counts.get(s, 0)}" for s in State)
    rows = []
    for row, name in enumerate(WEEKDAYS):
        cells = "".join(
            _cell(daily.states[day], f"{day}: {daily.states[day].value}") if day else "<td></td>"
            for day in (week[row] for week in weeks)
        )
        rows.append(f"<tr><th>{name}</th>{cells}</tr>")
    return f"<h2>{html.escape(daily.key)}</h2><p>{counts}</p><table>{''.join(rows)}</table>"


def _html_grid(grid: GridCoverage) -> str:
    counts = ", ".join(f"{s.value} {grid.counts.get(s, 0)}" for s in State)
    rows = []
    for row in grid.rows:
        cells = "".join(
            _cell(grid.states[(day, row)], f"{day} · {row}: {grid.states[(day, row)].value}")
            for day in grid.days
        )
        rows.append(f"<tr><th>{html.escape(row)}</th>{cells}</tr>")
    return (
        f"<h2>{html.escape(grid.key)} (day × area)</h2><p>{counts}</p>"
        f"<table>{''.join(rows)}</table>"
    )
