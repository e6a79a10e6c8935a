"""The HTML report and console summary: files, self-containment, escaping, zero plans."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from rich.console import Console

from simulator.errors import ConfigError
from tests.test_pareto import trial_row, trials_frame
from vidur_search.plans import pareto_front_by_workload
from vidur_search.report import console_summary, write_report

EVIL = "<script>alert('x')</script>&\""


class _Tables(HTMLParser):
    """Collects, per table id, its body rows as lists of cell texts; and every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "script":
            self.scripts.append(a)
        if tag == "table":
            self._table = a.get("id") or f"anon{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Tables:
    p = _Tables()
    p.feed(text)
    return p


def _trials() -> pd.DataFrame:
    rows = []
    for i, (sku, sched, wl) in enumerate([
        ("a100-80gb", "vllm", "chat"), ("a100-80gb", "sarathi", "chat"),
        ("h100-sxm", "vllm", "chat"), ("h100-sxm", "sarathi", "docs"),
        ("a100-80gb", "vllm", "docs"), ("h100-sxm", "vllm", "docs"),
    ]):
        rows.append(trial_row(trial_id=f"p{i}", sku=sku, scheduler=sched, workload=wl,
                              capacity_qps=2.0 + i, ttft_p90=0.2 + 0.1 * (i % 3),
                              tbt_p99=0.02 + 0.01 * (i % 2)))
    rows.append(trial_row(trial_id="f0", status="failed", error=EVIL))
    rows.append(trial_row(trial_id="z0", capacity_qps=0.0))
    return trials_frame(rows)


def test_report_files_and_contents(tmp_path):
    df = _trials()
    paths = write_report(tmp_path / "out", df, config_yaml="sweep:\n  skus: [a100]\n",
                         tiers={"strict": {"ttft_p90": 0.25}, "never": {"tbt_p99": 1e-4}},
                         target_qps=20.0, title="nightly sweep")
    assert set(paths) == {"pareto", "html"}
    assert all(p.is_file() for p in paths.values())
    front = pd.read_parquet(paths["pareto"])
    assert front["trial_id"].tolist() == pareto_front_by_workload(df)["trial_id"].tolist()
    assert len(front) >= 2   # one front per workload

    text = paths["html"].read_text(encoding="utf-8")
    doc = _parse(text)
    # self-contained: nothing fetched from anywhere
    for bad in ("http://", "https://", "<script src", "<link"):
        assert bad not in text
    assert all(link.startswith("data:image/png;base64,") for link in doc.links)
    assert all("src" not in s for s in doc.scripts) and "addEventListener" in text
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert len(pngs) == 2   # vs TTFT P90 and vs TBT P99
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # the sortable table lists every plan, once
    assert 'id="plans" class="sortable"' in text
    plan_rows = doc.tables["plans"]
    assert len(plan_rows) == 6
    assert sorted(r[0] for r in plan_rows) == [f"p{i}" for i in range(6)]
    assert [r[0] for r in doc.tables["failed"]] == ["f0"]
    assert [r[0] for r in doc.tables["zero"]] == ["z0"]
    # tiers: one row per workload x tier; the impossible one says none
    tiers = doc.tables["tiers"]
    assert len(tiers) == 4
    assert sum("none: " in " ".join(r) for r in tiers) == 2
    assert len(doc.tables["load"]) == 6   # 3 plans per workload, fewer than top=5
    assert "nightly sweep" in text and "sweep:\n  skus: [a100]" in text
    assert "8 trials: 7 ok (6 plans, 1 zero capacity), 1 failed" in text


def test_report_escapes_strings_from_trials_title_and_config(tmp_path):
    df = _trials()
    df.loc[0, "scheduler"] = EVIL
    df.loc[1, "workload"] = EVIL
    paths = write_report(tmp_path, df, config_yaml=f"name: {EVIL}\n", title=EVIL)
    text = paths["html"].read_text(encoding="utf-8")
    assert "<script>alert" not in text
    assert text.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;") >= 4
    # only our own inline script tag
    assert text.count("<script") == 1


def test_report_with_zero_plans(tmp_path):
    df = trials_frame([trial_row(status="failed", error="OOM"), trial_row(capacity_qps=0.0)])
    paths = write_report(tmp_path, df, config_yaml="", tiers={"t": {"ttft_p90": 1.0}},
                         target_qps=3.0)
    text = paths["html"].read_text(encoding="utf-8")
    assert "No plans" in text and "data:image/png" not in text
    doc = _parse(text)
    assert "plans" not in doc.tables
    assert all(r[4].startswith("none: ") for r in doc.tables["tiers"])
    front = pd.read_parquet(paths["pareto"])
    assert front.empty and "capacity_per_dollar" in front.columns
    # and with no trials at all
    empty = trials_frame([])
    text = write_report(tmp_path / "e", empty, config_yaml="")["html"].read_text()
    assert "0 trials" in text and "No plans" in text


def test_report_validates_before_writing(tmp_path):
    df = _trials()
    with pytest.raises(ConfigError, match=r"tiers\.t"):
        write_report(tmp_path / "a", df, config_yaml="", tiers={"t": {"p90": 1.0}})
    with pytest.raises(ConfigError, match="target_qps"):
        write_report(tmp_path / "b", df, config_yaml="", target_qps=0)
    with pytest.raises(ConfigError, match="capacity_per_dollar"):
        write_report(tmp_path / "c", df.drop(columns="capacity_per_dollar"), config_yaml="")
    with pytest.raises(ConfigError, match="objectives"):
        write_report(tmp_path / "d", df, config_yaml="", objectives={"nope": "min"})
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_console_summary_lists_top_plans_and_counts():
    buf = io.StringIO()
    df = _trials()
    table = console_summary(df, Console(file=buf, width=250), top=3)
    out = buf.getvalue()
    assert table.row_count == 3
    assert "QPS per $/h" in out and "TTFT p90" in out
    assert "8 trials: 7 ok (6 plans, 1 zero capacity), 1 failed" in out
    # the first data row is the plan with the most capacity per dollar
    plans = df.set_index("trial_id").drop(["f0", "z0"])
    best = plans.loc[plans["capacity_per_dollar"].idxmax()]
    first_row = next(line for line in out.splitlines() if line.startswith("│"))
    cells = [c.strip() for c in first_row.strip("│").split("│")]
    assert cells[0] == best["sku"] and cells[7] == best["workload"]
    assert cells[8] == f"{best['capacity_qps']:.4g}"
    assert cells[10] == f"{best['capacity_per_dollar']:.4g}"

    buf = io.StringIO()
    table = console_summary(trials_frame([trial_row(status="failed")]), Console(file=buf))
    assert table.row_count == 0 and "no plans" in buf.getvalue()
