"""Writes deploy/grafana-dashboard.json (the Grafana dashboard of the nebras_* metrics).

Run ``python deploy/make_dashboard.py`` after changing a panel; the JSON is committed so that it
can be imported in Grafana (Dashboards -> Import) or provisioned by docker-compose.yml.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

OUT = Path(__file__).resolve().parent / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RANGE = "$__rate_interval"

# (title, kind, unit, [(expr, legend)], width)
PANELS = [
    ("Requests per second by route", "timeseries", "reqps",
     [(f"sum by (route) (rate(nebras_requests_total[{RANGE}]))", "{{route}}")], 12),
    ("HTTP error ratio (5xx)", "timeseries", "percentunit",
     [(f'sum(rate(nebras_requests_total{{status=~"5.."}}[{RANGE}])) / clamp_min(sum(rate(nebras_requests_total[{RANGE}])), 1e-9)',
       "5xx share")], 12),
    ("Request latency p50 / p95 by route", "timeseries", "s",
     [(f"histogram_quantile(0.5, sum by (le, route) (rate(nebras_request_latency_seconds_bucket[{RANGE}])))", "p50 {{route}}"),
      (f"histogram_quantile(0.95, sum by (le, route) (rate(nebras_request_latency_seconds_bucket[{RANGE}])))", "p95 {{route}}")], 12),
    ("Conversation turns per second by channel", "timeseries", "ops",
     [(f"sum by (channel) (rate(nebras_turns_total[{RANGE}]))", "{{channel}}")], 12),
    ("Generation latency p50 / p95", "timeseries", "s",
     [(f"histogram_quantile(0.5, sum by (le) (rate(nebras_generation_latency_seconds_bucket[{RANGE}])))", "p50"),
      (f"histogram_quantile(0.95, sum by (le) (rate(nebras_generation_latency_seconds_bucket[{RANGE}])))", "p95")], 12),
    ("Template fallbacks by reason", "timeseries", "ops",
     [(f"sum by (reason) (rate(nebras_fallbacks_total[{RANGE}]))", "{{reason}}")], 12),
    ("Fallback rate (templated instead of generated)", "timeseries", "percentunit",
     [(f"sum(rate(nebras_fallbacks_total[{RANGE}])) / clamp_min(sum(rate(nebras_fallbacks_total[{RANGE}])) + sum(rate(nebras_generated_replies_total[{RANGE}])), 1e-9)",
       "fallback rate")], 12),
    ("Errors by component", "timeseries", "ops",
     [(f"sum by (component) (rate(nebras_errors_total[{RANGE}]))", "{{component}}")], 12),
    ("Tickets created (last hour) by origin", "stat", "short",
     [("sum by (origin) (increase(nebras_tickets_created_total[1h]))", "{{origin}}")], 8),
    ("Generator degraded (templates only)", "stat", "short",
     [("max(nebras_generator_degraded)", "degraded")], 8),
    ("Model versions", "table", "short",
     [("max by (rasa_model, nlg_model, nebras, job) (nebras_model_info)", "")], 8),
]


def panel(index: int, x: int, y: int, title: str, kind: str, unit: str, targets, width: int) -> Dict[str, Any]:
    body: Dict[str, Any] = {
        "id": index + 1, "title": title, "type": kind, "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
                     **({"format": "table", "instant": True} if kind == "table" else {})}
                    for i, (expr, legend) in enumerate(targets)],
        "options": {},
    }
    if kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "value", "graphMode": "none"}
        if "degraded" in title:
            body["fieldConfig"]["defaults"]["thresholds"] = {
                "mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]}
    return body


def dashboard() -> Dict[str, Any]:
    panels: List[Dict[str, Any]] = []
    x = y = 0
    for index, spec in enumerate(PANELS):
        width = spec[4]
        if x + width > 24:
            x, y = 0, y + 8
        panels.append(panel(index, x, y, *spec))
        x += width
    return {
        "uid": "nebras-overview",
        "title": "Nebras assistant",
        "description": "Nebras serving: traffic, latency, generation, fallbacks, errors, tickets (nebras_* metrics).",
        "tags": ["nebras", "rasa"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1,
        }]},
        "annotations": {"list": []},
        "panels": panels,
    }


def main() -> None:
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
