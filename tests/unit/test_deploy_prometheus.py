"""Prometheus config, alert rules and the Grafana dashboard: valid, tested, and about
metrics the code really exports.

``promtool`` comes from Debian's ``prometheus`` package (``make system-deps``); the tests
that need it skip when it is absent. The metric-name checks need nothing.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy_compose import PACKAGES, ROOT

PROM = ROOT / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)
# Series Prometheus itself makes for every target.
BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_count", "_sum", "_created"),
    "Summary": ("", "_count", "_sum", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}
# Used by the rules or the dashboard, not exported yet: name -> who should export it.
# test_pending_metrics_are_exported fails (strict xfail) once they all are: then empty this.
PENDING: dict[str, str] = {}  # metrics a rule uses before the code exports them
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan",
}  # fmt: skip


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


@cache
def exported_metrics() -> dict[str, str]:
    """Series names the project's prometheus_client metrics expose -> the defining file.

    Found in the source (the serving and trainer modules need Ray and torch to import):
    calls of prometheus_client's metric classes with a literal name.
    """
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            kinds: dict[str, str] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client":
                    kinds |= {a.asname or a.name: a.name for a in node.names if a.name in SUFFIXES}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Name) and func.id in kinds:
                    kind = kinds[func.id]
                elif (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "prometheus_client"
                    and func.attr in SUFFIXES
                ):
                    kind = func.attr
                else:
                    continue
                args = {kw.arg: kw.value for kw in node.keywords}
                name_node = node.args[0] if node.args else args.get("name")
                if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
                    continue
                parts = [
                    str(v.value)
                    for k in ("namespace", "subsystem")
                    if isinstance(v := args.get(k), ast.Constant) and v.value
                ]
                name = "_".join([*parts, name_node.value])
                if kind == "Counter":
                    name = name.removesuffix("_total")
                for suffix in SUFFIXES[kind]:
                    found[name + suffix] = str(path.relative_to(ROOT))
    return found


def metric_names(expr: str) -> set[str]:
    """Series and recording-rule names an expression selects (not functions or labels)."""
    expr = re.sub(r'"(\\.|[^"\\])*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr
    )  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def rule_groups() -> list[dict[str, Any]]:
    return [g for path in RULES for g in yaml.safe_load(path.read_text())["groups"]]


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]
    exprs += [a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]
    return exprs


@needs_promtool
def test_promtool_check_config() -> None:
    done = promtool("check", "config", PROM / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", *RULES)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    """Each alert fires on its bad day and stays quiet on a normal one."""
    done = promtool("test", "rules", *RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query (as a recording rule, Grafana's variables filled)."""
    group_rules = []
    for dashboard in DASHBOARDS:
        for i, expr in enumerate(dashboard_exprs(json.loads(dashboard.read_text()))):
            expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            group_rules.append(
                {"record": f"dashboard:{dashboard.stem.replace('-', '_')}:q{i}", "expr": expr}
            )
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": group_rules}]}))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_requested_alerts_exist_with_severity_summary_and_runbook() -> None:
    names = {a["alert"] for a in alerts()}
    assert names >= {
        "AitlConsumerLagGrowing",
        "AitlDeadLettersGrowing",
        "AitlJudgeRejectionSpike",
        "AitlAgentAnnotationVolumeDrop",
        "AitlAdoptionRateDrop",
        "AitlSuggestLatencyAboveSLO",
        "AitlNoModelPromoted",
    }
    for alert in alerts():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert {"summary", "description", "runbook_url"} <= alert["annotations"].keys()


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_runbook_link_points_at_a_section_of_the_runbook() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert (ROOT / path).resolve() == OPERATIONS.resolve(), url
        assert anchor in anchors, f"{alert['alert']}: no section #{anchor} in {path}"


def test_every_alert_has_a_firing_promtool_case() -> None:
    tested = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    assert {a["alert"] for a in alerts()} == tested


def test_every_metric_in_rules_and_dashboards_is_exported_by_the_code() -> None:
    exported = exported_metrics().keys()
    recorded = {r["record"] for r in rules() if "record" in r}
    used: dict[str, set[str]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"rule {rule.get('alert') or rule.get('record')}")
    for dashboard in DASHBOARDS:
        for expr in dashboard_exprs(json.loads(dashboard.read_text())):
            for name in metric_names(expr):
                used.setdefault(name, set()).add(f"dashboard {dashboard.name}")
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if name not in exported | recorded | BUILTIN | PENDING.keys()
    }
    assert not missing, f"used but exported by no code: {json.dumps(missing, indent=1)}"
    assert len(used.keys() & exported) >= 15
    assert PENDING.keys() <= used.keys(), "a pending metric is no longer used: drop it"


def test_the_metric_discovery_finds_known_metrics() -> None:
    exported = exported_metrics()
    assert exported["aitl_gateway_requests_total"] == "streams/gateway.py"
    assert "aitl_gateway_request_seconds_bucket" in exported
    assert "aitl_gateway_requests_total_total" not in exported
    assert metric_names(
        'sum by (topic) (rate(aitl_x_total{a="b"}[5m])) / on(topic) aitl:y:sum > bool 3'
    ) == {"aitl_x_total", "aitl:y:sum"}


def test_the_dashboard_is_well_formed_and_uses_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uid = datasources[0]["uid"]
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
        assert variable["current"]["value"] == uid
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), "panel ids repeat"
        cells: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not area & cells, f"{panel['title']} overlaps another panel"
            cells |= area
            if panel["type"] != "row":
                assert panel["targets"] and all(t["expr"] for t in panel["targets"])
                assert panel["datasource"]["uid"] == "${datasource}"


def test_the_dashboard_covers_the_flywheel() -> None:
    text = " ".join(
        expr for path in DASHBOARDS for expr in dashboard_exprs(json.loads(path.read_text()))
    )
    for metric in (
        "aitl_processor_events_consumed_total",  # events/s
        "aitl_judge_verdicts_total",  # judge acceptance by type
        "aitl_annotation_latency_seconds_bucket",  # annotation latency
        "aitl_shard_rows_total",  # shard growth
        "aitl_serving_model_version_info",  # model versions
        "aitl_model_promoted_timestamp_seconds",  # promotions
        "aitl_adoption_decisions_total",  # adoption
        "aitl_model_eval_metric",  # retrieval metrics of the serving models
        "aitl_serving_stage_seconds_bucket",  # serving latency
    ):
        assert metric in text, metric
