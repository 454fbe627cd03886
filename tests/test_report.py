"""The run report answers a person's questions. A run on a function-calling task cut from the bundled demo (tiny
model as student and generator, a scripted planner whose first rationale is the placeholder "...": the
``traced_fc_run`` fixture) is reported,
the page is opened in headless Chromium, and the rendered DOM is checked for: time and budget per stage, the
configuration and versions, where the adapter went, accepted and rejected synthetic rows per category with the
gate's reason, the task metric per category, and the timeline of decisions with its placeholder rationale marked."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from agent.config import RunConfig
from agent.report import write_report
from agent.report_data import adapter_place, decision_timeline
from agent.runner import RunOutcome
from agent.trace import TraceEvent, read_trace

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


# ----- the rendered page -------------------------------------------------------------------------------------------
class Element:
    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag, self.attrs = tag, attrs
        self.children: list[Element | str] = []

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return re.sub(r"\s+", " ", " ".join(parts)).strip()

    def find_all(self, tag: str | None = None, *, id: str | None = None, cls: str | None = None,
                 **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            if isinstance(child, Element):
                if (tag is None or child.tag == tag) and (id is None or child.attrs.get("id") == id) \
                        and (cls is None or cls in child.attrs.get("class", "").split()) \
                        and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                    found.append(child)
                found.extend(child.find_all(tag, id=id, cls=cls, **attrs))
        return found

    def one(self, tag: str | None = None, **kwargs: Any) -> Element:
        found = self.find_all(tag, **kwargs)
        assert len(found) == 1, f"expected one {tag} {kwargs}, found {len(found)}"
        return found[0]

    def rows(self) -> list[list[str]]:
        """A table's body rows as cell texts."""
        return [[cell.text() for cell in row.find_all("td")] for row in self.one("tbody").find_all("tr")]

    def headers(self) -> list[str]:
        return [cell.text() for cell in self.find_all("th")]


VOID_TAGS = frozenset({"br", "img", "meta", "link", "hr", "input"})


class _TreeBuilder(HTMLParser):

    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID_TAGS:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        while len(self.stack) > 1:  # the browser's serialization is well formed: this closes the open element
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def render_in_chromium(page: Path) -> Element:
    """The DOM Chromium builds for ``page`` (headless, a fresh profile, no network services)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it): the report is not "
                    "rendered in a browser here")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                               page.as_uri()], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<body" in done.stdout, done.stderr[-2000:]
    builder = _TreeBuilder()
    builder.feed(done.stdout)
    return builder.root


# ----- the run -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reported_run(traced_fc_run: tuple[RunOutcome, list[Any]]) -> tuple[RunOutcome, Path]:
    outcome, _ = traced_fc_run
    assert outcome.state["status"] == "finished"
    return outcome, write_report(outcome.state, read_trace(outcome.paths.trace), outcome.paths.report_dir)


def test_the_report_shows_what_a_person_asks_of_a_run(reported_run: tuple[RunOutcome, Path]) -> None:
    outcome, page = reported_run
    state = outcome.state
    dom = render_in_chromium(page)
    assert dom.one("h1").text() == "SynthGen run traced-fc"

    # Time and budget per stage.
    stages = {row[0]: row for row in dom.one("table", id="stages").rows()}
    assert set(stages) == {"bootstrap", "plan", "generate", "train", "evaluate", "submit", "finish"}
    assert stages["plan"][1] == "4"  # runs
    assert all(float(row[2]) >= 0 for row in stages.values())
    assert f"train_tokens={state['usage']['train_tokens']:,}" in stages["train"][4]
    budget = {row[0]: row for row in dom.one("table", id="budget").rows()}
    assert budget["synthetic_examples"][1:3] == [str(state["usage"]["synthetic_examples"]), "8"]
    assert budget["submissions"][1:4] == ["1", "1", "100%"]
    assert "wall_seconds" in budget and "generation_tokens" in budget

    # The configuration and versions.
    config = dict(row[:2] for row in dom.one("table", id="config").rows())  # type: ignore[misc]
    assert config["generator.backend"] == "local"
    assert config["budget.max_generation_tokens"] == "300"
    versions = dict(row[:2] for row in dom.one("table", id="versions").rows())  # type: ignore[misc]
    assert {"python", "langgraph", "torch", "transformers"} <= set(versions)

    # Where the adapter went: the simulator's local store (a local task), a folder that exists.
    adapter = dom.one("section", id="adapter")
    best = state["best_adapter"]
    submission = state["submissions"][0]
    assert best in adapter.text() and submission["revision"][:12] in adapter.text()
    local = Path(adapter.one("code", cls="local-path").text())
    assert local == outcome.paths.root / "flock-sim" / "publisher" / submission["repo_id"] / submission["revision"]
    assert (local / "adapter_config.json").is_file()
    assert not adapter.find_all("a", cls="hub-link")

    # Sample accepted and rejected synthetic rows per category, the gate's reason with each rejection.
    samples = dom.one("section", id="samples")
    no_tools = samples.one("div", data_category="no_tools")
    assert not no_tools.find_all("table", cls="accepted-rows")
    reasons = [b.text() for b in no_tools.one("table", cls="rejected-rows").find_all("b", cls="reason")]
    assert reasons and set(reasons) == {"writer_failed"}
    single_call = samples.one("div", data_category="single_call")
    accepted_rows = single_call.one("table", cls="accepted-rows").rows()
    assert len(accepted_rows) == 2 and all(row[2] == "accepted" for row in accepted_rows)
    assert "function_call" in accepted_rows[0][3] and "assistant" in accepted_rows[0][3]

    # The task metric per category (test split), next to dev and test BPC.
    table = dom.one("table", id="per-category")
    assert "function_call_accuracy base" in table.headers()
    results = {row[0]: row for row in table.rows()}
    assert set(results) == {"overall", "no_tools", "no_call", "single_call", "multi_call"}
    test = state["test_report"]
    shown = [(category, metrics["bpc"], metrics["task_metric"]) for category, metrics in
             test["base"]["per_category"].items()]
    assert any(metric is not None for _, _, metric in shown)
    for category, bpc, metric in shown:
        assert results[category][5] == f"{bpc:.4f}"
        assert results[category][7] == (f"{100 * metric:.1f}%" if metric is not None else "—")
    assert results["overall"][8] == f"{100 * test['adapter']['task_metric']:.1f}%"

    # The timeline of decisions, with source and rationale; the copied placeholder is marked as one.
    timeline = dom.one("table", id="timeline")
    rows = timeline.rows()
    assert [row[2] for row in rows] == [d["decision"]["action"] for d in state["decisions"]]
    assert [row[4] for row in rows] == [d["source"] for d in state["decisions"]]
    marked = timeline.find_all("span", cls="placeholder-rationale")
    assert len(marked) == 1 and "'...'" in marked[0].text()
    assert "placeholder rationale" in rows[0][6]
    assert rows[1][6] == "train on the new rows"
    assert "rejected" in rows[0][7] and "writer_failed" in rows[0][7]
    assert "dev BPC" in rows[1][7] and "validation BPC" in rows[2][7]

    # The plots are inlined: the page is one file.
    images = dom.find_all("img")
    assert len(images) == 4 and all(img.attrs["src"].startswith("data:image/png;base64,") for img in images)


# ----- pieces ------------------------------------------------------------------------------------------------------
def _decision(seq: int, rationale: str, **flags: Any) -> TraceEvent:
    return TraceEvent(seq=seq, ts=100.0 + seq, run_id="r", type="decision", node="plan", data={
        "action": "stop", "targets": {}, "rationale": rationale, "source": "llm", "guardrail": "ok", **flags})


def test_the_timeline_takes_the_trace_s_placeholder_flag_too() -> None:
    entries = decision_timeline([_decision(0, "a long but empty-looking reason", rationale_placeholder=True),
                                 _decision(1, "..."), _decision(2, "the budget is spent")])
    assert [e.placeholder for e in entries] == [True, True, False]
    assert [e.seconds for e in entries] == [0.0, 1.0, 2.0]


def test_an_adapter_published_to_the_hub_is_linked(tmp_path: Path) -> None:
    config = RunConfig.model_validate({"publish": {"kind": "hub"}})
    state = {"best_adapter": "a1", "adapters": [{"adapter_id": "a1", "path": "/runs/x/adapters/a1"}],
             "submissions": [{"adapter_id": "a1", "repo_id": "me/task-7-Qwen-Qwen2.5-0.5B-Instruct",
                              "revision": "0123456789abcdef0123456789abcdef01234567", "task_id": 7}]}
    place = adapter_place(state, config, tmp_path)
    assert place.local_path == "/runs/x/adapters/a1"
    (publication,) = place.publications
    assert publication.hub_url == ("https://huggingface.co/me/task-7-Qwen-Qwen2.5-0.5B-Instruct/tree/"
                                   "0123456789abcdef0123456789abcdef01234567")
    assert publication.local_path is None
