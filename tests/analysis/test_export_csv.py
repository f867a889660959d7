"""CSV exports cannot inject spreadsheet formulas (OWASP's leading apostrophe); Parquet and JSON keep values."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from hpsearch.analysis.export import write_frame

HOSTILE = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "plain", "a=b"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"error": HOSTILE, "param_lr": [-0.5] * len(HOSTILE), "number": range(len(HOSTILE))})


def test_csv_prefixes_formula_cells_and_leaves_numbers() -> None:
    text = write_frame(_frame(), "csv", None)
    assert text is not None
    assert "\n'\rcmd," in text  # a reader splitting the row at CR still sees the apostrophe first
    readable = [v for v in HOSTILE if "\r" not in v]
    read = pd.read_csv(io.StringIO(text.replace("'\rcmd", "'cr")), keep_default_na=False)
    assert [v for v in read["error"].tolist() if v != "'cr"] == ["'" + v for v in readable[:5]] + ["plain", "a=b"]
    assert read["param_lr"].tolist() == [-0.5] * len(HOSTILE)  # a negative number is not a formula


def test_csv_file_is_prefixed_too(tmp_path: Path) -> None:
    write_frame(_frame(), "csv", tmp_path / "t.csv")
    assert "\n\"'=HYPERLINK" in (tmp_path / "t.csv").read_bytes().decode()


def test_json_and_parquet_keep_the_values(tmp_path: Path) -> None:
    text = write_frame(_frame(), "json", None)
    assert text is not None
    assert [row["error"] for row in json.loads(text)] == HOSTILE
    write_frame(_frame(), "parquet", tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet")["error"].tolist() == HOSTILE
