"""Asks a running Prometheus about Ordo's dashboard and alerts, through its
HTTP API (loopback only). Used by scripts/prometheus-check.sh.

  prometheus-queries.py URL wait EXPR SECONDS
      waits until the instant query EXPR returns a series (exit 1 if not)
  prometheus-queries.py URL alert NAME LABEL=VALUE SECONDS
      waits until alert NAME with that label is firing
  prometheus-queries.py URL quiet
      no alert is pending or firing now
  prometheus-queries.py URL all DASHBOARD SECONDS
      every query of the dashboard returns series, and every alert
      expression (as Prometheus loaded it: /api/v1/rules) evaluates and each
      series selector in it returns series; retried until SECONDS have
      passed (scrapes and polls take a moment)

Every wait is bounded; every line printed says ok or FAIL.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.parse
import urllib.request

# The dashboard's Grafana variables, as a query over a short test run needs them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
# Series selectors in an expression: a metric name of Ordo's, the process
# families or `up`, and its label matchers.
SELECTOR = re.compile(r"(?<![\w:\"])((?:ordo_|process_)[a-z0-9_]+|up)(?![\w(])\s*(\{[^}]*\})?")


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def query(url: str, expr: str) -> list[dict]:
    body = get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def firing(url: str, name: str, label: str, value: str) -> bool:
    alerts = get(f"{url}/api/v1/alerts")["data"]["alerts"]
    return any(
        alert["labels"].get("alertname") == name
        and alert["labels"].get(label) == value
        and alert["state"] == "firing"
        for alert in alerts
    )


def until(seconds: float, attempt) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if attempt():
                return True
        except (OSError, RuntimeError) as err:
            print(f"        (not yet: {err})")
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


def dashboard_queries(path: str) -> list[tuple[str, str]]:
    dashboard = json.load(open(path))
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((f"{panel['title']} [{target['refId']}]", expr))
    return queries


def alert_expressions(url: str) -> list[tuple[str, str]]:
    groups = get(f"{url}/api/v1/rules?type=alert")["data"]["groups"]
    return [(rule["name"], rule["query"]) for group in groups for rule in group["rules"]]


def check_all(url: str, dashboard: str, seconds: float) -> bool:
    checks: list[tuple[str, str, bool]] = []  # name, expr, must return series
    checks += [(f"dashboard: {name}", expr, True) for name, expr in dashboard_queries(dashboard)]
    alerts = alert_expressions(url)
    if not alerts:
        print("  FAIL  Prometheus loaded no alert rule")
        return False
    for alert, expr in alerts:
        checks.append((f"alert {alert}: the expression evaluates", expr, False))
        for name, matchers in dict.fromkeys(SELECTOR.findall(expr)):
            checks.append((f"alert {alert}: {name}{matchers}", f"{name}{matchers}", True))
    failing = checks

    def attempt() -> bool:
        nonlocal failing
        still = []
        for name, expr, series in failing:
            try:
                result = query(url, expr)
            except (OSError, RuntimeError):
                still.append((name, expr, series))
                continue
            if series and not result:
                still.append((name, expr, series))
        failing = still
        return not failing

    until(seconds, attempt)
    bad = {name for name, _, _ in failing}
    for name, expr, series in checks:
        if name in bad:
            print(f"  FAIL  {name}: {expr} {'returned no series' if series else 'did not evaluate'}")
        else:
            print(f"  ok    {name}")
    return not bad


def main() -> int:
    url, command, *args = sys.argv[1:]
    if command == "wait":
        expr, seconds = args
        return 0 if until(float(seconds), lambda: bool(query(url, expr))) else 1
    if command == "alert":
        name, label, seconds = args
        key, value = label.split("=", 1)
        return 0 if until(float(seconds), lambda: firing(url, name, key, value)) else 1
    if command == "quiet":
        active = [
            f"{alert['labels']['alertname']} ({alert['state']})" for alert in get(f"{url}/api/v1/alerts")["data"]["alerts"]
        ]
        print(f"        active alerts: {', '.join(active)}" if active else "        no active alert")
        return 1 if active else 0
    if command == "all":
        dashboard, seconds = args
        return 0 if check_all(url, dashboard, float(seconds)) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
