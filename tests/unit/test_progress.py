"""The progress line: each pass with its share of a known total, its rate and the time left."""

from __future__ import annotations

import io

from docker_persist.cli.progress import Progress


def test_a_pass_with_a_total_shows_its_share_rate_and_time_left() -> None:
    progress = Progress(io.StringIO(), enabled=False)
    progress.expect("restore db_data", 40_000_000)
    progress._since["restore db_data"] = 100.0
    progress("restore db_data", 10_000_000)
    assert progress.line("restore db_data", 102.0) == "restore db_data:  25% of 40.0 MB (5.0 MB/s, 6 s left)"
    progress("restore db_data", 50_000_000)  # past the estimate: never 100% before the end
    assert progress.line("restore db_data", 104.0).startswith("restore db_data:  99% of 40.0 MB")


def test_a_pass_without_a_total_shows_bytes_and_rate_only() -> None:
    progress = Progress(io.StringIO(), enabled=False)
    progress.expect("back up db_data", None)
    progress._since["back up db_data"] = 0.0
    progress("back up db_data", 3_000_000)
    assert progress.line("back up db_data", 2.0) == "back up db_data: 3.0 MB (1.5 MB/s)"


def test_each_pass_counts_apart_and_nothing_is_drawn_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream, enabled=False)
    progress("check a", 5)
    progress("restore a", 7)
    assert progress.totals == {"check a": 5, "restore a": 7}
    progress.done()
    assert stream.getvalue() == ""
    drawn = io.StringIO()
    live = Progress(drawn, enabled=True)
    live.expect("copy a", 100)
    live("copy a", 50)
    assert drawn.getvalue().startswith("\r\x1b[Kcopy a:  50% of 100 B")
