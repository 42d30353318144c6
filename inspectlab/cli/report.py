"""`inspectlab report`: latency, compare and sweep JSON files of several machines or conditions, merged into one
comparison with one column group per machine (docs/report.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from inspectlab import api
from inspectlab.cli.common import ForceOption, TextFormat, command, print_table
from inspectlab.render import merged_report


@command("report")
def report_command(
    files: Annotated[list[str], typer.Argument(
        help="JSON files of `inspectlab latency`, `compare --latency` or `sweep --latency` (--format json or -o "
        "FILE.json), from any machines.")],
    outputs: Annotated[list[str] | None, typer.Option(
        "--output", "-o", help="Write the merged report: .html (one self-contained page), .md (PNG plots beside "
        "it), .csv (one line per measurement) or .json. Repeatable.")] = None,
    fmt: Annotated[TextFormat, typer.Option("--format", "-f", help="Format printed to stdout without -o.")]
    = TextFormat.table,
    title: Annotated[str | None, typer.Option("--title", help="Heading of the report.")] = None,
    force: ForceOption = False,
) -> None:
    """Merge latency results of several machines or conditions into one report, one column group per machine."""
    words = " ".join(["inspectlab report", *files])
    merged = api.report(files, outputs or [], force=force, title=title, command=words if outputs else None)
    for path in merged.written:
        typer.echo(f"wrote {path}", err=True)
    if outputs:
        return
    if fmt is TextFormat.json:
        sys.stdout.write(merged_report.to_json(merged.to_dict()))
    elif fmt is TextFormat.csv:
        sys.stdout.write(merged_report.render_csv(merged))
    elif fmt is TextFormat.markdown:
        sys.stdout.write(merged_report.render_markdown(merged, []))
    else:
        print_table(*merged_report.text_rows(*merged_report.flat_table(merged)), title=merged.title,
                    footer="\n".join([*(f"{row[0]}: {', '.join(row[1:5])}" for row in merged_report.legend(merged)),
                                      *(f"note: {note}" for note in merged.notes)]))
