"""Reading whole statistics at once gives what reading them row by row gives."""

import sqlite3

import numpy as np

from graddoctor import RunWriter, open_run
from graddoctor.store._blob import decode_values


def _row_by_row(path, stat, size):
    """Each stored row decoded alone (the reference), NaN where a row is shorter."""
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT step, value FROM stats WHERE stat=? ORDER BY step", (stat,)
    ).fetchall()
    conn.close()
    values = np.full((len(rows), size), np.nan)
    for i, (_, blob) in enumerate(rows):
        vector = decode_values(blob)
        values[i, : len(vector)] = vector
    return np.array([r[0] for r in rows]), values


def test_float32_float64_and_short_rows_read_as_row_by_row(tmp_path):
    path = tmp_path / "mixed.gdr"
    rng = np.random.default_rng(0)
    writer = RunWriter(path, commit_every=7)
    writer.define_group("parameters", [f"p{i}" for i in range(6)])
    writer.define_stats("parameters", ["grad_norm"])
    for step in range(0, 300, 3):
        values = rng.lognormal(size=6)
        if step % 9 == 0:
            values[step % 6] = 1e-300 if step % 2 else 1e300  # does not fit float32: stored float64
        if step % 33 == 0:
            values[1] = np.nan
        writer.add_stat(step, "grad_norm", values)
    for t in range(1, 40):  # a time group that grows: early rows are shorter
        writer.define_group("time", [str(i) for i in range(t)], extend=True)
        writer.define_stats("time", ["time_grad_norm:rnn"])
        writer.add_stat(
            t, "time_grad_norm:rnn", rng.lognormal(size=t) * (1e-310 if t % 5 == 0 else 1)
        )
    writer.close()
    with open_run(path) as run:
        for stat, size in (("grad_norm", 6), ("time_grad_norm:rnn", 39)):
            steps, _, values = run.series(stat)
            want_steps, want = _row_by_row(path, stat, size)
            np.testing.assert_array_equal(steps, want_steps)
            np.testing.assert_array_equal(values, want)
        assert run.count("grad_norm") == 100 and run.count("nope") == 0
        _, wide = _row_by_row(path, "grad_norm", 6)
        assert np.nanmax(wide) == 1e300 and np.nanmin(wide) == 1e-300  # float64 kept
