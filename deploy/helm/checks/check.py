"""Checks of the Ordo Helm chart with the real Helm v4 engine (helm-python-sdk)
and the Kubernetes schemas (kubernetes-validate, strict), no cluster needed.

Run by `just helm-check` (scripts/helm-check.sh), which makes the virtual
environment. Exits non-zero, naming the failed check, on any failure.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import tomllib
import traceback

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "ordo"
KUBE_VERSION = "1.30.0"

# Secret values given to the chart in the combinations below: none may
# appear in a ConfigMap, a plain env value, a command line or NOTES.txt.
SENTINELS = {
    "adminToken": "processor-admin-token-0f3b9c",
    "orderServiceAdminToken": "order-service-admin-token-7d41e2",
    "postgresql.password": "postgres-password-5a8e17",
}

# The documented values combinations (README, Helm section).
COMBINATIONS: dict[str, dict] = {
    "defaults (existing PostgreSQL and NATS)": {},
    "self-contained": {
        "postgresql": {"enabled": True},
        "nats": {"enabled": True},
        "jaeger": {"enabled": True},
        "adminToken": SENTINELS["adminToken"],
        "orderServiceAdminToken": SENTINELS["orderServiceAdminToken"],
    },
    "self-contained, NATS cluster": {
        "postgresql": {"enabled": True},
        "nats": {"enabled": True, "replicas": 3},
    },
    "self-contained, one NATS node": {
        "postgresql": {"enabled": True},
        "nats": {"enabled": True, "replicas": 1},
    },
    "gRPC TLS": {
        "tls": {"grpc": {"enabled": True, "existingSecret": "ordo-grpc-tls"}},
    },
    "gRPC mutual TLS": {
        "tls": {"grpc": {"enabled": True, "existingSecret": "ordo-grpc-tls", "clientAuth": True}},
    },
    "own NATS over mutual TLS with creds, own payment provider over mutual TLS": {
        "externalNats": {"url": "tls://nats.example.com:4222"},
        "natsAuth": {"method": "creds", "existingSecret": "ordo-nats-creds"},
        "tls": {
            "nats": {"existingSecret": "ordo-nats-client", "clientCertificate": True},
            "payments": {
                "existingSecret": "ordo-payments-client",
                "clientCertificate": True,
                "serverName": "payments.example.com",
            },
        },
        "paymentsSim": {"enabled": False},
        "processor": {"paymentsUrl": "https://payments.internal:443"},
    },
    "self-contained, PostgreSQL and NATS over TLS": {
        "postgresql": {
            "enabled": True,
            "password": SENTINELS["postgresql.password"],
            "tls": {"enabled": True, "existingSecret": "ordo-postgresql-tls"},
        },
        "nats": {"enabled": True, "tls": {"enabled": True, "existingSecret": "ordo-nats-tls"}},
    },
    "self-contained, everything secured": {
        "postgresql": {
            "enabled": True,
            "password": SENTINELS["postgresql.password"],
            "tls": {"enabled": True, "existingSecret": "ordo-postgresql-tls", "clientAuth": True},
        },
        "nats": {
            "enabled": True,
            "replicas": 3,
            "tls": {"enabled": True, "existingSecret": "ordo-nats-tls", "clientAuth": True},
        },
        "tls": {
            "grpc": {"enabled": True, "existingSecret": "ordo-grpc-tls", "clientAuth": True, "reloadInterval": "30s"},
            "postgresql": {"existingSecret": "ordo-postgresql-client", "clientCertificate": True},
            "nats": {"existingSecret": "ordo-nats-client", "clientCertificate": True},
            "otlp": {"existingSecret": "ordo-otlp-tls", "clientCertificate": True},
        },
        "otlp": {"endpoint": "https://otel.example.com:4317", "headersSecret": {"name": "ordo-otlp-headers"}},
        "adminToken": SENTINELS["adminToken"],
        "orderServiceAdminToken": SENTINELS["orderServiceAdminToken"],
    },
    "production, secured": {
        "existingSecret": "ordo-env",
        "paymentsSim": {"enabled": False},
        "processor": {"paymentsUrl": "https://payments.example.com"},
        "tls": {
            "grpc": {"enabled": True, "existingSecret": "ordo-grpc-tls", "clientAuth": True},
            "postgresql": {"existingSecret": "ordo-postgresql-client", "clientCertificate": True},
            "nats": {"existingSecret": "ordo-nats-client"},
            "payments": {"existingSecret": "ordo-payments-ca"},
        },
        "natsAuth": {"method": "userPassword", "existingSecret": "ordo-nats-auth", "user": "ordo"},
        "otlp": {"endpoint": "https://otel.example.com:4317", "headersSecret": {"name": "ordo-otlp-headers", "key": "OTEL_EXPORTER_OTLP_HEADERS"}},
    },
    "production": {
        "existingSecret": "ordo-env",
        "paymentsSim": {"enabled": False},
        "processor": {
            "paymentsUrl": "https://payments.example.com",
            "autoscaling": {"enabled": True},
        },
        "orderService": {"autoscaling": {"enabled": True}, "env": {"OUTBOX_PARTITIONS": "32"}},
        "otlp": {"endpoint": "http://otel-collector:4317"},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "stream": {"replicas": 3},
    },
    "monitoring (ServiceMonitor, PrometheusRule, Grafana dashboard)": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Ordo"}},
        },
    },
}

# Every knob a platform team sets without forking (issue 19), each on every
# component it applies to; the checks below find each where it belongs.
PLATFORM = "platform knobs (scheduling, pod metadata, extra env and volumes, ServiceMonitor, extraObjects)"
VALUES_KEYS = {"order-service": "orderService", "processor": "processor", "payments-sim": "paymentsSim", "migrations": "migrations"}
TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "ordo", "effect": "NoSchedule"}
NODE_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]
        }
    }
}
ZONE_SPREAD = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
# A NetworkPolicy as a YAML string: extraObjects go through tpl.
NETWORK_POLICY = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "ordo.fullname" . }}-grpc
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  policyTypes: [Ingress]
  ingress:
    - ports:
        - port: grpc
"""


def platform_knobs(name: str, extra_env: list[dict]) -> dict:
    return {
        "nodeSelector": {"ordo.example.com/pool": name},
        "tolerations": [TOLERATION],
        "affinity": NODE_AFFINITY,
        "priorityClassName": f"ordo-{name}",
        "podLabels": {"team": "payments", "ordo.example.com/part": name},
        "podAnnotations": {"example.com/owner": name},
        "extraEnv": extra_env,
        "extraEnvFrom": [{"configMapRef": {"name": "{{ .Release.Name }}-tuning"}}, {"secretRef": {"name": "ordo-extra", "optional": True}}],
        "extraVolumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    }


COMBINATIONS[PLATFORM] = {
    "orderService": {
        **platform_knobs("order-service", [
            # valueFrom, its ConfigMap's name through tpl
            {"name": "GRPC_MAX_IN_FLIGHT", "valueFrom": {"configMapKeyRef": {"name": "{{ .Release.Name }}-tuning", "key": "maxInFlight"}}},
            # a file setting naming a key of an extra Secret volume
            {"name": "ORDER_SERVICE_ADMIN_TOKENS_FILE", "value": "/etc/ordo/extra/tokens"},
        ]),
        "extraVolumes": [
            {"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "admin-tokens", "secret": {"secretName": "ordo-admin-tokens", "defaultMode": 0o440, "items": [{"key": "tokens", "path": "tokens"}]}},
        ],
        "extraVolumeMounts": [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "admin-tokens", "mountPath": "/etc/ordo/extra", "readOnly": True},
        ],
        "terminationGracePeriodSeconds": 45,
    },
    "processor": {
        **platform_knobs("processor", [
            {"name": "PROCESSOR_ADMIN_TOKENS", "valueFrom": {"secretKeyRef": {"name": "ordo-admin-tokens", "key": "tokens"}}},
            {"name": "HEALTH_PROBE_INTERVAL", "value": "2s"},
        ]),
        "topologySpreadConstraints": [ZONE_SPREAD],
    },
    "paymentsSim": {
        **platform_knobs("payments-sim", [{"name": "PAYMENTS_LATENCY", "value": "20ms"}]),
        "topologySpreadConstraints": [],
    },
    "migrations": platform_knobs("migrations", [{"name": "RUST_LOG", "value": "debug"}]),
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}],
            "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
        },
    },
    "extraObjects": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{ .Release.Name }}-tuning"}, "data": {"maxInFlight": "512"}},
        NETWORK_POLICY,
    ],
}

# Values the schema must refuse, and a word its message must contain.
BAD_VALUES: list[tuple[str, dict, str]] = [
    ("replicas below 1", {"orderService": {"replicas": 0}}, "replicas"),
    ("a wrong type", {"processor": {"replicas": "two"}}, "replicas"),
    ("no database URL without the in-chart PostgreSQL", {"externalDatabase": {"orderServiceUrl": ""}}, "orderServiceUrl"),
    ("no NATS URL without the in-chart NATS", {"externalNats": {"url": ""}}, "url"),
    ("a URL that is not postgres://", {"externalDatabase": {"processorUrl": "mysql://db/x"}}, "processorUrl"),
    ("a stream replica count NATS cannot have", {"stream": {"replicas": 2}}, "replicas"),
    ("a short admin token", {"adminToken": "short"}, "adminToken"),
    ("no payment provider with the simulator off", {"paymentsSim": {"enabled": False}}, "paymentsUrl"),
    ("an unknown key", {"orderServise": {}}, "orderServise"),
    ("a dashboard label value that is not a string", {"metrics": {"grafanaDashboard": {"labelValue": 1}}}, "labelValue"),
    ("an unknown PrometheusRule key", {"metrics": {"prometheusRule": {"enable": True}}}, "enable"),
    ("a short order service admin token", {"orderServiceAdminToken": "short"}, "orderServiceAdminToken"),
    ("an sslmode libpq does not know", {"tls": {"postgresql": {"sslmode": "bogus"}}}, "sslmode"),
    ("gRPC TLS without its Secret", {"tls": {"grpc": {"enabled": True}}}, "/tls/grpc/existingSecret"),
    ("mutual gRPC TLS without TLS", {"tls": {"grpc": {"clientAuth": True}}}, "/tls/grpc/enabled"),
    ("a reload interval that is no duration", {"tls": {"grpc": {"reloadInterval": "often"}}}, "reloadInterval"),
    ("a client certificate without its Secret", {"tls": {"nats": {"clientCertificate": True}}}, "/tls/nats/existingSecret"),
    ("the in-chart PostgreSQL's TLS without its Secret", {"postgresql": {"tls": {"enabled": True}}}, "/postgresql/tls/existingSecret"),
    ("the in-chart NATS's TLS without its Secret", {"nats": {"tls": {"enabled": True}}}, "/nats/tls/existingSecret"),
    ("a NATS authentication method it does not have", {"natsAuth": {"method": "password"}}, "method"),
    ("NATS authentication without its Secret", {"natsAuth": {"method": "token"}}, "/natsAuth/existingSecret"),
    ("NATS user and password without the user", {"natsAuth": {"method": "userPassword", "existingSecret": "s"}}, "/natsAuth/user"),
    ("an unknown TLS key", {"tls": {"grpc": {"enable": True}}}, "enable"),
]

# Combinations only the templates can judge (a `fail`), and a word the
# message must contain. The schema and the templates both run on render.
BAD_COMBINATIONS: list[tuple[str, dict, str]] = [
    ("sslmode for a PostgreSQL the chart does not run", {"tls": {"postgresql": {"sslmode": "verify-full"}}}, "externalDatabase URLs"),
    ("verify-full to the in-chart PostgreSQL without its TLS",
     {"postgresql": {"enabled": True}, "tls": {"postgresql": {"sslmode": "verify-full"}}}, "postgresql.tls.enabled"),
    ("sslmode disable to the in-chart PostgreSQL with TLS",
     {"postgresql": {"enabled": True, "tls": {"enabled": True, "existingSecret": "s"}}, "tls": {"postgresql": {"sslmode": "disable"}}},
     "refuses plaintext"),
    ("the in-chart PostgreSQL asking for client certificates the services lack",
     {"postgresql": {"enabled": True, "tls": {"enabled": True, "existingSecret": "s", "clientAuth": True}}},
     "tls.postgresql.clientCertificate"),
    ("the in-chart NATS asking for client certificates the services lack",
     {"nats": {"enabled": True, "tls": {"enabled": True, "existingSecret": "s", "clientAuth": True}}},
     "tls.nats.clientCertificate"),
    ("TLS settings of an in-chart PostgreSQL that is off",
     {"postgresql": {"tls": {"enabled": True, "existingSecret": "s"}}}, "postgresql.enabled"),
    ("TLS settings of an in-chart NATS that is off", {"nats": {"tls": {"enabled": True, "existingSecret": "s"}}}, "nats.enabled"),
    ("NATS credentials for the in-chart NATS",
     {"nats": {"enabled": True}, "natsAuth": {"method": "creds", "existingSecret": "s"}}, "natsAuth"),
    ("NATS TLS files for the in-chart NATS without TLS",
     {"nats": {"enabled": True}, "tls": {"nats": {"existingSecret": "s"}}}, "nats.tls.enabled"),
    ("payments TLS files with an http:// provider",
     {"tls": {"payments": {"existingSecret": "s"}}, "processor": {"paymentsUrl": "http://payments:50053"}}, "https://"),
    ("payments TLS files with the plaintext in-chart simulator", {"tls": {"payments": {"existingSecret": "s"}}}, "tls.grpc.enabled"),
    ("OTLP TLS files with an http:// endpoint",
     {"otlp": {"endpoint": "http://otel:4317"}, "tls": {"otlp": {"existingSecret": "s"}}}, "https://"),
    ("OTLP headers with nothing to export to", {"otlp": {"headersSecret": {"name": "s"}}}, "otlp.endpoint"),
    ("mounted Secrets without an fsGroup to read them",
     {"podSecurityContext": {"fsGroup": None}, "tls": {"grpc": {"enabled": True, "existingSecret": "s"}}}, "fsGroup"),
]

BAD_VALUES += [
    ("a shutdown timeout that is no duration", {"shutdown": {"timeout": "soon"}}, "timeout"),
    ("a topology spread without its topologyKey",
     {"processor": {"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}]}}, "topologyKey"),
    ("a topology spread on the migration Jobs", {"migrations": {"topologySpreadConstraints": []}}, "topologySpreadConstraints"),
    ("an extra variable without a name", {"orderService": {"extraEnv": [{"value": "x"}]}}, "name"),
    ("an extra variable with both value and valueFrom",
     {"orderService": {"extraEnv": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}}, "extraEnv"),
    ("an extra variable from an unknown source", {"processor": {"extraEnv": [{"name": "A", "valueFrom": {"vaultRef": {}}}]}}, "vaultRef"),
    ("an extra volume mount without its path", {"paymentsSim": {"extraVolumeMounts": [{"name": "scratch"}]}}, "mountPath"),
    ("a pod label that is not a string", {"orderService": {"podLabels": {"tier": 1}}}, "podLabels"),
    ("a toleration key Kubernetes does not know", {"processor": {"tolerations": [{"keys": "dedicated"}]}}, "keys"),
    ("a negative grace period", {"orderService": {"terminationGracePeriodSeconds": -1}}, "terminationGracePeriodSeconds"),
    ("an unknown ServiceMonitor key", {"metrics": {"serviceMonitor": {"label": {}}}}, "label"),
    ("a relabeling action Prometheus does not have", {"metrics": {"serviceMonitor": {"relabelings": [{"action": "rename"}]}}}, "action"),
    ("an extra object that is neither an object nor a string", {"extraObjects": [42]}, "extraObjects"),
]

# A name the chart sets already is refused rather than duplicated: the
# decision for extraEnv (and env), pod labels and annotations, volumes.
BAD_COMBINATIONS += [
    ("an extraEnv variable the chart sets (SHUTDOWN_TIMEOUT)",
     {"processor": {"extraEnv": [{"name": "SHUTDOWN_TIMEOUT", "value": "1m"}]}}, "processor.extraEnv sets SHUTDOWN_TIMEOUT, which the chart (from shutdown.timeout)"),
    ("an extraEnv variable the chart sets from a Secret (DATABASE_URL)",
     {"orderService": {"extraEnv": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]}},
     "orderService.extraEnv sets DATABASE_URL"),
    ("an env setting the chart sets (RUST_LOG)", {"paymentsSim": {"env": {"RUST_LOG": "debug"}}}, "paymentsSim.env sets RUST_LOG, which the chart (from logs.filter)"),
    ("an extraEnv variable env sets too",
     {"orderService": {"env": {"OUTBOX_PARTITIONS": "32"}, "extraEnv": [{"name": "OUTBOX_PARTITIONS", "value": "8"}]}},
     "which orderService.env sets already"),
    ("an extraEnv variable twice", {"processor": {"extraEnv": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
     "which processor.extraEnv sets already"),
    ("a migration Job variable the chart sets (MIGRATE_SCHEMA)",
     {"migrations": {"extraEnv": [{"name": "MIGRATE_SCHEMA", "value": "orders"}]}}, "migrations.extraEnv sets MIGRATE_SCHEMA"),
    ("a pod label the selector relies on",
     {"orderService": {"podLabels": {"app.kubernetes.io/component": "other"}}}, "orderService.podLabels sets app.kubernetes.io/component"),
    ("a pod annotation the chart sets", {"processor": {"podAnnotations": {"prometheus.io/port": "1"}}}, "metrics.annotations"),
    ("an extra volume named like one of the chart's",
     {"tls": {"grpc": {"enabled": True, "existingSecret": "s"}}, "paymentsSim": {"extraVolumes": [{"name": "grpc-tls", "emptyDir": {}}]}},
     "paymentsSim.extraVolumes names a volume grpc-tls"),
    ("an extra mount where the chart mounts a Secret",
     {"tls": {"grpc": {"enabled": True, "existingSecret": "s"}},
      "processor": {"extraVolumes": [{"name": "x", "emptyDir": {}}], "extraVolumeMounts": [{"name": "x", "mountPath": "/etc/ordo/tls/grpc"}]}},
     "mounts at /etc/ordo/tls/grpc"),
    ("a ServiceMonitor label the chart sets",
     {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"app.kubernetes.io/name": "x"}}}}, "metrics.serviceMonitor.labels sets app.kubernetes.io/name"),
    ("PrometheusRule labels that override the chart's",
     {"metrics": {"prometheusRule": {"enabled": True, "labels": {"helm.sh/chart": "x"}}}}, "metrics.prometheusRule.labels sets helm.sh/chart"),
    ("a dashboard label that overrides the chart's",
     {"metrics": {"grafanaDashboard": {"enabled": True, "label": "app.kubernetes.io/instance"}}}, "metrics.grafanaDashboard.label is app.kubernetes.io/instance"),
]

# Each binary's settings: its table in the README, between
# `<!-- settings:<binary>:begin -->` and `end`, which is the binary's
# `--settings-markdown` (its tests fail when the two differ, and when the
# declaration differs from what the code reads).
README = ROOT / "README.md"
GRPC_PORTS = {"order-service": 50051, "processor": 50052, "payments-sim": 50053}

# Settings that hold a secret: only ever from a Secret (secretKeyRef) or a
# file, never a plain `value:`.
SECRET_SETTINGS = {
    "DATABASE_URL", "NATS_URL", "PROCESSOR_ADMIN_TOKEN", "PROCESSOR_ADMIN_TOKENS",
    "ORDER_SERVICE_ADMIN_TOKEN", "ORDER_SERVICE_ADMIN_TOKENS", "NATS_PASSWORD", "NATS_TOKEN",
    "OTEL_EXPORTER_OTLP_HEADERS", "POSTGRES_PASSWORD",
}

# The README's production values file, checked as it stands there (every
# check of a combination runs on it).
README_PRODUCTION = "the README's production values file"
_production = re.search(
    r"<!-- helm:production-values:begin -->\n```yaml\n(.*?)```\n<!-- helm:production-values:end -->", README.read_text(), re.DOTALL
)
COMBINATIONS[README_PRODUCTION] = yaml.safe_load(_production.group(1)) if _production else {"missing": "the README's production values"}

failures: list[str] = []


def check(name: str):
    def wrap(test):
        try:
            test()
            print(f"  ok    {name}")
        except Exception as err:  # noqa: BLE001 - report every failure
            failures.append(name)
            print(f"  FAIL  {name}: {err}")
            traceback.print_exc(limit=2, file=sys.stdout)
        return test

    return wrap


def env_names(binary: str) -> set[str]:
    """The settings `binary` declares, from its table in the README."""
    text = README.read_text()
    begin, end = f"<!-- settings:{binary}:begin -->", f"<!-- settings:{binary}:end -->"
    assert begin in text and end in text, f"the README has no settings table for {binary}"
    table = text.split(begin, 1)[1].split(end, 1)[0]
    names = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, re.MULTILINE))
    assert names, f"the README's settings table for {binary} names no setting"
    return names


def reads(known: set[str], name: str) -> bool:
    """Every secret setting NAME is also read from the file NAME_FILE names."""
    return name in known or (name.endswith("_FILE") and name.removesuffix("_FILE") in known)


def render(values: dict) -> list[dict]:
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="ordo", namespace="ordo", is_install=True)
    documents = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document["__template"] = path
                documents.append(document)
    return documents


def containers(document: dict) -> list[dict]:
    spec = document.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


def pod_spec(document: dict) -> dict:
    return document.get("spec", {}).get("template", {}).get("spec", {})


def workloads(documents: list[dict]) -> list[dict]:
    return [d for d in documents if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def component(document: dict) -> str:
    return document["metadata"]["labels"].get("app.kubernetes.io/component", "")


def deployments(combination: str) -> dict[str, dict]:
    return {component(d): d for d in rendered[combination] if d["kind"] == "Deployment" and component(d) in GRPC_PORTS}


def env(document: dict) -> dict[str, dict]:
    """The first container's variables by name (each {value} or {valueFrom})."""
    return {v["name"]: v for v in containers(document)[0].get("env", [])}


def values_of(document: dict) -> dict[str, str | None]:
    return {name: v.get("value") for name, v in env(document).items()}


def secret_files(document: dict) -> dict[str, tuple[str, str]]:
    """Each file the first container sees from a Secret: path → (Secret, key)."""
    volumes = {v["name"]: v for v in pod_spec(document).get("volumes", [])}
    files = {}
    for mount in containers(document)[0].get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        for item in (secret or {}).get("items", []):
            files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def chart_secret(combination: str) -> dict[str, str]:
    secret = next(d for d in rendered[combination] if d["kind"] == "Secret" and d["metadata"]["name"] == "ordo-env")
    return secret["stringData"]


def nats_conf(combination: str) -> str:
    config = next(
        d for d in rendered[combination] if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-nats")
    )
    return config["data"]["nats.conf"]


def stateful_set(combination: str, name: str) -> dict:
    return next(d for d in rendered[combination] if d["kind"] == "StatefulSet" and component(d) == name)


def refusal(values: dict) -> str:
    """The message with which the chart refuses values (schema or template); fails if it renders."""
    try:
        render(values)
    except (helm.HelmValuesError, helm.HelmRenderError) as err:
        return str(err)
    raise AssertionError("accepted")


def render_notes(values: dict) -> str:
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="ordo", namespace="ordo", is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


print(f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), Kubernetes schemas {KUBE_VERSION}")
rendered = {name: render(values) for name, values in COMBINATIONS.items()}

for name, values in COMBINATIONS.items():

    @check(f"lint: {name}")
    def _lint(values=values):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + [
            {"error": e} for e in report.get("errors", [])
        ]
        assert not problems, problems

    @check(f"every manifest is valid Kubernetes {KUBE_VERSION} (strict): {name}")
    def _valid(name=name):
        for document in rendered[name]:
            if document["kind"] in ("ServiceMonitor", "PrometheusRule"):
                continue  # CRDs: not in the Kubernetes schemas
            manifest = {k: v for k, v in document.items() if k != "__template"}
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)

    @check(f"containers run non-root, read-only, unprivileged, with resources: {name}")
    def _hardened(name=name):
        for document in workloads(rendered[name]):
            pod = pod_spec(document).get("securityContext", {})
            for container in containers(document):
                where = f"{document['kind']}/{document['metadata']['name']}/{container['name']}"
                context = container.get("securityContext", {})
                assert context.get("runAsNonRoot") or pod.get("runAsNonRoot"), f"{where} may run as root"
                assert context.get("readOnlyRootFilesystem") is True, f"{where} has a writable root filesystem"
                assert context.get("allowPrivilegeEscalation") is False, f"{where} may escalate"
                assert "ALL" in context.get("capabilities", {}).get("drop", []), f"{where} keeps capabilities"
                resources = container.get("resources", {})
                assert resources.get("requests") and resources.get("limits"), f"{where} has no resources"

    tls_on = values.get("tls", {}).get("grpc", {}).get("enabled", False)

    @check(f"Ordo's probes are {'TCP on the gRPC port (TLS)' if tls_on else 'gRPC health on the gRPC port'}: {name}")
    def _probes(name=name, tls_on=tls_on):
        assert deployments(name)
        for document in deployments(name).values():
            container = containers(document)[0]
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
            assert port == GRPC_PORTS[component(document)], (component(document), port)
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if tls_on:  # the kubelet's gRPC probe cannot speak TLS
                    assert container[probe].get("tcpSocket") == {"port": port}, container[probe]
                    assert "grpc" not in container[probe], container[probe]
                elif probe == "readinessProbe":
                    assert container[probe]["grpc"] == {"port": port}, container[probe]
                else:
                    assert container[probe]["grpc"] == {"port": port, "service": "ordo.liveness"}, container[probe]

    @check(f"every variable a Deployment sets is a setting its binary declares: {name}")
    def _env(name=name):
        for binary, document in deployments(name).items():
            known = env_names(binary)
            for variable in env(document):
                assert reads(known, variable), f"{binary} declares no setting {variable}"

    @check(f"every Secret is mounted read-only as a whole directory (mode 0440), every file setting names a mounted key: {name}")
    def _mounts(name=name):
        for document in workloads(rendered[name]):
            pod = pod_spec(document)
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for volume in volumes.values():
                if "secret" in volume:
                    assert volume["secret"].get("defaultMode") == 0o440, volume
                    assert volume["secret"].get("items"), f"{volume['name']}: project only the keys needed"
            for container in containers(document):
                where = f"{document['kind']}/{document['metadata']['name']}/{container['name']}"
                for mount in container.get("volumeMounts", []):
                    assert "subPath" not in mount and "subPathExpr" not in mount, f"{where}: subPath never sees a rotation"
                    if "secret" in volumes.get(mount["name"], {}):  # not in volumes: a claim template
                        assert mount.get("readOnly") is True, f"{where}: {mount['name']} is writable"
            if component(document) in GRPC_PORTS or component(document) == "migrations":
                files = secret_files(document)
                if files:
                    assert pod.get("securityContext", {}).get("fsGroup"), "0440 files need the pod's fsGroup"
                for variable, value in values_of(document).items():
                    if value and value.startswith("/etc/"):
                        assert value in files, f"{component(document)}: {variable}={value} is no mounted file"
                for variable in env(document).values():
                    ref = variable.get("valueFrom", {}).get("secretKeyRef", {})
                    made = not COMBINATIONS[name].get("existingSecret")  # else the URLs are the user's
                    if made and ref.get("key", "").endswith("DATABASE_URL"):
                        url = chart_secret(name)[ref["key"]]
                        for path in re.findall(r"ssl(?:rootcert|cert|key)=([^&]+)", url):
                            assert path in files, f"{component(document)}: DATABASE_URL names {path}, not mounted"

    @check(f"no secret value in a ConfigMap, a plain env value, a command line or NOTES.txt: {name}")
    def _no_secret_values(name=name):
        documents = rendered[name]
        secrets = set(SENTINELS.values())
        for document in documents:
            if document["kind"] == "Secret":
                secrets |= {v for v in document.get("stringData", {}).values() if len(v) >= 8}
        exposed: list[str] = []
        for document in documents:
            if document["kind"] == "ConfigMap":
                exposed += [f"ConfigMap {document['metadata']['name']}: {text}" for text in document["data"].values()]
            for container in containers(document):
                where = f"{document['metadata']['name']}/{container['name']}"
                for variable in container.get("env", []):
                    if variable["name"] in SECRET_SETTINGS:
                        assert "secretKeyRef" in variable.get("valueFrom", {}), f"{where}: {variable['name']} not from a Secret"
                    exposed.append(f"{where} env {variable['name']}: {variable.get('value', '')}")
                exposed += [f"{where} command: {arg}" for arg in container.get("command", []) + container.get("args", [])]
        exposed.append(f"NOTES.txt: {render_notes(COMBINATIONS[name])}")
        for text in exposed:
            for secret in secrets:
                assert secret not in text, f"a secret value in {text[:120]}"


DEFAULTS = "defaults (existing PostgreSQL and NATS)"


def selector_labels(binary: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "ordo", "app.kubernetes.io/instance": "ordo", "app.kubernetes.io/component": binary}


def default_spread(binary: str) -> dict:
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector_labels(binary)},
        "matchLabelKeys": ["pod-template-hash"],
    }


def pod_metadata(document: dict) -> dict:
    return document["spec"]["template"]["metadata"]


@check("platform knobs land in every Deployment and migration Job: nodeSelector, tolerations, affinity, priorityClassName, podLabels, podAnnotations, extraEnv last (valueFrom, tpl), extraEnvFrom, extraVolumes, extraVolumeMounts")
def _platform_knobs():
    given_all = COMBINATIONS[PLATFORM]
    targets = [d for d in workloads(rendered[PLATFORM]) if component(d) in VALUES_KEYS]
    assert sorted(component(d) for d in targets) == ["migrations", "migrations", "order-service", "payments-sim", "processor"], targets
    for document in targets:
        given = given_all[VALUES_KEYS[component(document)]]
        where = f"{document['kind']}/{document['metadata']['name']}"
        pod, container = pod_spec(document), containers(document)[0]
        assert pod["nodeSelector"] == given["nodeSelector"], where
        assert pod["tolerations"] == given["tolerations"], where
        assert pod["affinity"] == given["affinity"], where
        assert pod["priorityClassName"] == given["priorityClassName"], where
        labels, annotations = pod_metadata(document)["labels"], pod_metadata(document)["annotations"]
        assert given["podLabels"].items() <= labels.items(), (where, labels)
        assert labels["app.kubernetes.io/component"] == component(document), where
        assert given["podAnnotations"].items() <= annotations.items(), (where, annotations)
        if document["kind"] == "Deployment":
            assert document["spec"]["selector"]["matchLabels"] == selector_labels(component(document)), "pod labels stay out of the selector"
            assert "checksum/env" in annotations and annotations["prometheus.io/scrape"] == "true", where
        names = [v["name"] for v in container["env"]]
        extra = [v["name"] for v in given["extraEnv"]]
        assert len(names) > len(extra) and names[-len(extra):] == extra, f"{where}: extraEnv comes after the chart's, in order: {names}"
        assert len(names) == len(set(names)), f"{where}: a variable twice: {names}"
        assert container["envFrom"] == [{"configMapRef": {"name": "ordo-tuning"}}, {"secretRef": {"name": "ordo-extra", "optional": True}}], container["envFrom"]
        for volume in given["extraVolumes"]:
            assert volume in pod["volumes"], (where, pod["volumes"])
        for mount in given["extraVolumeMounts"]:
            assert mount in container["volumeMounts"], (where, container["volumeMounts"])
    services = deployments(PLATFORM)
    assert env(services["order-service"])["GRPC_MAX_IN_FLIGHT"]["valueFrom"] == {"configMapKeyRef": {"name": "ordo-tuning", "key": "maxInFlight"}}
    assert secret_files(services["order-service"])["/etc/ordo/extra/tokens"] == ("ordo-admin-tokens", "tokens")
    assert env(services["processor"])["PROCESSOR_ADMIN_TOKENS"]["valueFrom"] == {"secretKeyRef": {"name": "ordo-admin-tokens", "key": "tokens"}}
    for job in (d for d in targets if d["kind"] == "Job"):
        assert [v["name"] for v in containers(job)[0]["env"]][:2] == ["MIGRATE_SCHEMA", "DATABASE_URL"], "the Job's own settings first"
    for document in workloads(rendered[DEFAULTS]):
        pod, where = pod_spec(document), document["metadata"]["name"]
        for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
            assert field not in pod, f"{where}: {field} by default"
        assert "envFrom" not in containers(document)[0], where


@check("topology spread: by default a soft spread over nodes per component (its selector, one rollout); a list replaces it (labelSelector filled in); [] drops it; none on the Jobs")
def _topology_spread():
    for combination in (DEFAULTS, "production", "self-contained, everything secured"):
        for binary, document in deployments(combination).items():
            assert pod_spec(document)["topologySpreadConstraints"] == [default_spread(binary)], (combination, binary)
    services = deployments(PLATFORM)
    assert pod_spec(services["order-service"])["topologySpreadConstraints"] == [default_spread("order-service")]
    assert pod_spec(services["processor"])["topologySpreadConstraints"] == [
        {**ZONE_SPREAD, "labelSelector": {"matchLabels": selector_labels("processor")}}
    ]
    assert "topologySpreadConstraints" not in pod_spec(services["payments-sim"]), "[] turns spreading off"
    own_selector = {**ZONE_SPREAD, "labelSelector": {"matchLabels": {"tier": "ordo"}}}
    documents = {component(d): d for d in render({"processor": {"topologySpreadConstraints": [own_selector]}}) if d["kind"] == "Deployment"}
    assert pod_spec(documents["processor"])["topologySpreadConstraints"] == [own_selector], "a labelSelector given is kept"
    for combination in (DEFAULTS, PLATFORM):
        for job in (d for d in rendered[combination] if d["kind"] == "Job"):
            assert "topologySpreadConstraints" not in pod_spec(job)


@check("shutdown: every service gets SHUTDOWN_DRAIN_DELAY and SHUTDOWN_TIMEOUT; the grace period is their sum + 5 s (rounded up), an explicit one wins")
def _grace_period():
    for binary, document in deployments(DEFAULTS).items():
        settings = values_of(document)
        assert (settings["SHUTDOWN_DRAIN_DELAY"], settings["SHUTDOWN_TIMEOUT"]) == ("5s", "20s"), binary
        assert pod_spec(document)["terminationGracePeriodSeconds"] == 30, binary
    values = {"shutdown": {"drainDelay": "1500ms", "timeout": "1m30s"}, "processor": {"terminationGracePeriodSeconds": 120}}
    documents = {component(d): d for d in render(values) if d["kind"] == "Deployment"}
    for binary in ("order-service", "payments-sim"):
        assert values_of(documents[binary])["SHUTDOWN_DRAIN_DELAY"] == "1500ms"
        assert values_of(documents[binary])["SHUTDOWN_TIMEOUT"] == "1m30s"
        assert pod_spec(documents[binary])["terminationGracePeriodSeconds"] == 2 + 90 + 5, binary
    assert pod_spec(documents["processor"])["terminationGracePeriodSeconds"] == 120, "an explicit grace period wins"
    assert pod_spec(deployments(PLATFORM)["order-service"])["terminationGracePeriodSeconds"] == 45
    for job in (d for d in rendered[DEFAULTS] if d["kind"] == "Job"):
        assert not any(n.startswith("SHUTDOWN") for n in env(job)), "ordo-migrate does not serve"


@check("ServiceMonitor: the labels given (for a serviceMonitorSelector), relabelings and metricRelabelings on its endpoint")
def _service_monitor():
    given = COMBINATIONS[PLATFORM]["metrics"]["serviceMonitor"]
    monitors = [d for d in rendered[PLATFORM] if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1, monitors
    monitor = monitors[0]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == "ordo"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["relabelings"] == given["relabelings"] and endpoint["metricRelabelings"] == given["metricRelabelings"], endpoint
    plain = next(d for d in rendered["production"] if d["kind"] == "ServiceMonitor")
    assert "relabelings" not in plain["spec"]["endpoints"][0] and "release" not in plain["metadata"]["labels"]


@check("extraObjects: each item rendered through tpl, objects and YAML strings alike")
def _extra_objects():
    extra = [d for d in rendered[PLATFORM] if d["__template"].endswith("extra-objects.yaml")]
    assert [(d["kind"], d["metadata"]["name"]) for d in extra] == [("ConfigMap", "ordo-tuning"), ("NetworkPolicy", "ordo-grpc")], extra
    assert extra[0]["data"] == {"maxInFlight": "512"}
    assert extra[1]["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": "ordo"}
    assert not any(d["__template"].endswith("extra-objects.yaml") for d in rendered[DEFAULTS])


@check("the README's production values file: spread over zones and nodes, resources, admin tokens through valueFrom, ServiceMonitor labels, a 35 s grace period")
def _readme_production():
    values = COMBINATIONS[README_PRODUCTION]
    services = deployments(README_PRODUCTION)
    assert set(services) == {"order-service", "processor"}, set(services)
    for binary, key, secret_key in (("order-service", "orderService", "order-service"), ("processor", "processor", "processor")):
        pod = pod_spec(services[binary])
        assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        assert all(c["labelSelector"]["matchLabels"] == selector_labels(binary) for c in pod["topologySpreadConstraints"])
        assert containers(services[binary])[0]["resources"] == values[key]["resources"]
        assert pod["terminationGracePeriodSeconds"] == 35 and pod["priorityClassName"] == "ordo-critical"
        tokens = next(v for v in containers(services[binary])[0]["env"] if v["name"].endswith("_ADMIN_TOKENS"))
        assert tokens["valueFrom"] == {"secretKeyRef": {"name": "ordo-admin-tokens", "key": secret_key}}, tokens
        assert services[binary]["spec"]["replicas"] == 3
    monitor = next(d for d in rendered[README_PRODUCTION] if d["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not any(d["kind"] == "Secret" for d in rendered[README_PRODUCTION]), "existingSecret: the chart makes none"


@check("the chart's appVersion is the Cargo workspace version, and the default image is that version")
def _app_version():
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert str(chart["appVersion"]) == workspace, f"Chart.yaml appVersion {chart['appVersion']} != workspace version {workspace}"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == "", "an empty tag means the chart's appVersion"
    for document in deployments(DEFAULTS).values():
        assert containers(document)[0]["image"] == f"{values['image']['repository']}:{workspace}"


@check("the migration Jobs are pre-install/pre-upgrade hooks (post-install with the in-chart PostgreSQL)")
def _hooks():
    jobs = [d for d in rendered["defaults (existing PostgreSQL and NATS)"] if d["kind"] == "Job"]
    assert {j["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] for j in jobs} == {"orders", "processor"}
    for job in jobs:
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade", job["metadata"]
        assert containers(job)[0]["command"] == ["/usr/local/bin/ordo-migrate", "up"]
    secret = next(d for d in rendered["defaults (existing PostgreSQL and NATS)"] if d["kind"] == "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10", "the Secret precedes the Jobs"
    for job in (d for d in rendered["self-contained"] if d["kind"] == "Job"):
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


@check("two replicas of the order service and the processor by default; the simulator can be off")
def _replicas():
    deployments = {component(d): d for d in rendered["defaults (existing PostgreSQL and NATS)"] if d["kind"] == "Deployment"}
    assert deployments["order-service"]["spec"]["replicas"] == 2
    assert deployments["processor"]["spec"]["replicas"] == 2
    production = {component(d): d for d in rendered["production"] if d["kind"] == "Deployment"}
    assert "payments-sim" not in production
    env = {v["name"]: v.get("value") for v in containers(production["processor"])[0]["env"]}
    assert env["PAYMENTS_URL"] == "https://payments.example.com"
    assert "replicas" not in production["processor"]["spec"], "the HPA owns replicas"


@check("the in-chart NATS makes an ack durable: three nodes by default, one node fsyncs every ack")
def _durable_acks():
    default = next(
        d for d in rendered["self-contained"] if d["kind"] == "StatefulSet" and component(d) == "nats"
    )
    assert default["spec"]["replicas"] == 3, "the default in-chart NATS is a cluster"
    assert "sync_interval: always" not in nats_conf("self-contained")
    assert "sync_interval: always" in nats_conf("self-contained, one NATS node")


@check("a 3-node NATS cluster gives the stream 3 replicas")
def _cluster():
    documents = rendered["self-contained, NATS cluster"]
    nats = next(d for d in documents if d["kind"] == "StatefulSet" and component(d) == "nats")
    assert nats["spec"]["replicas"] == 3
    config = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-nats"))
    assert config["data"]["nats.conf"].count("nats://") == 3
    for document in documents:
        if document["kind"] == "Deployment" and component(document) in ("order-service", "processor"):
            env = {v["name"]: v.get("value") for v in containers(document)[0]["env"]}
            assert env["NATS_STREAM_REPLICAS"] == "3"


@check("OTLP goes to the in-chart Jaeger when it is on")
def _otlp():
    for document in rendered["self-contained"]:
        if document["kind"] == "Deployment" and component(document) in GRPC_PORTS:
            env = {v["name"]: v.get("value") for v in containers(document)[0]["env"]}
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://ordo-jaeger:4317", env


for label, values, word in BAD_VALUES:

    @check(f"the schema refuses {label}")
    def _refused(values=values, word=word):
        chart = helm.Chart.load(CHART)
        try:
            chart.validate_schema(values)
        except helm.HelmValuesError as err:
            assert word in str(err), f"the message does not name {word}: {err}"
            return
        raise AssertionError("accepted")


for label, values, word in BAD_COMBINATIONS:

    @check(f"the chart refuses {label}")
    def _refused_combination(values=values, word=word):
        message = refusal(values)
        assert word in message, f"the message does not name {word}: {message}"


@check("gRPC TLS: every service serves the Secret's certificate, re-read every 10s; the processor calls the simulator over https")
def _grpc_tls():
    services = deployments("gRPC TLS")
    for binary, document in services.items():
        settings = values_of(document)
        assert settings["GRPC_TLS_CERT_FILE"] == "/etc/ordo/tls/grpc/tls.crt", binary
        assert settings["GRPC_TLS_KEY_FILE"] == "/etc/ordo/tls/grpc/tls.key", binary
        assert settings["GRPC_TLS_RELOAD_INTERVAL"] == "10s", binary
        assert "GRPC_TLS_CLIENT_CA_FILE" not in settings, f"{binary}: mutual TLS is off"
        files = secret_files(document)
        assert files["/etc/ordo/tls/grpc/tls.key"] == ("ordo-grpc-tls", "tls.key"), files
        assert "/etc/ordo/tls/grpc/ca.crt" not in files, "ca.crt is needed only for mutual TLS"
    processor = values_of(services["processor"])
    assert processor["PAYMENTS_URL"] == "https://ordo-payments-sim:50053", processor["PAYMENTS_URL"]
    assert processor["PAYMENTS_TLS_CA_FILE"] == "/etc/ordo/tls/payments/ca.crt"
    assert "PAYMENTS_TLS_CERT_FILE" not in processor
    assert secret_files(services["processor"])["/etc/ordo/tls/payments/ca.crt"] == ("ordo-grpc-tls", "ca.crt")
    plain = values_of(deployments("defaults (existing PostgreSQL and NATS)")["processor"])
    assert plain["PAYMENTS_URL"].startswith("http://") and not any(n.startswith(("GRPC_TLS", "PAYMENTS_TLS")) for n in plain)


@check("mutual gRPC TLS: services check clients against ca.crt; the processor shows its certificate to the simulator")
def _grpc_mtls():
    services = deployments("gRPC mutual TLS")
    for binary, document in services.items():
        assert values_of(document)["GRPC_TLS_CLIENT_CA_FILE"] == "/etc/ordo/tls/grpc/ca.crt", binary
        assert secret_files(document)["/etc/ordo/tls/grpc/ca.crt"] == ("ordo-grpc-tls", "ca.crt"), binary
    processor = services["processor"]
    assert values_of(processor)["PAYMENTS_TLS_CERT_FILE"] == "/etc/ordo/tls/payments/tls.crt"
    assert values_of(processor)["PAYMENTS_TLS_KEY_FILE"] == "/etc/ordo/tls/payments/tls.key"
    assert secret_files(processor)["/etc/ordo/tls/payments/tls.key"] == ("ordo-grpc-tls", "tls.key")


@check("own NATS: tls:// with CA and client certificate, creds from their Secret; own payment provider over mutual TLS")
def _own_nats_and_payments():
    combination = "own NATS over mutual TLS with creds, own payment provider over mutual TLS"
    services = deployments(combination)
    assert set(services) == {"order-service", "processor"}
    assert chart_secret(combination)["NATS_URL"] == "tls://nats.example.com:4222"
    for binary, document in services.items():
        settings, files = values_of(document), secret_files(document)
        assert settings["NATS_TLS_CA_FILE"] == "/etc/ordo/tls/nats/ca.crt", binary
        assert settings["NATS_TLS_CERT_FILE"] == "/etc/ordo/tls/nats/tls.crt", binary
        assert settings["NATS_TLS_KEY_FILE"] == "/etc/ordo/tls/nats/tls.key", binary
        assert settings["NATS_CREDS_FILE"] == "/etc/ordo/secrets/nats/nats.creds", binary
        assert files["/etc/ordo/tls/nats/tls.key"] == ("ordo-nats-client", "tls.key"), files
        assert files["/etc/ordo/secrets/nats/nats.creds"] == ("ordo-nats-creds", "nats.creds"), files
    processor = values_of(services["processor"])
    assert processor["PAYMENTS_URL"] == "https://payments.internal:443"
    assert processor["PAYMENTS_TLS_SERVER_NAME"] == "payments.example.com"
    assert processor["PAYMENTS_TLS_CERT_FILE"] == "/etc/ordo/tls/payments/tls.crt"
    assert secret_files(services["processor"])["/etc/ordo/tls/payments/ca.crt"] == ("ordo-payments-client", "ca.crt")
    assert not any(n.startswith("PAYMENTS_TLS") for n in values_of(services["order-service"]))
    payments_sim = deployments("gRPC TLS")["payments-sim"]
    assert not any(n.startswith("NATS") for n in values_of(payments_sim)), "payments-sim does not use NATS"
    assert not any(p.startswith("/etc/ordo/tls/nats") for p in secret_files(payments_sim))


@check("NATS authentication: each method mounts its one key and names the file (user name in the clear, password never)")
def _nats_auth_methods():
    cases = {
        "creds": ("NATS_CREDS_FILE", "nats.creds", {}),
        "nkey": ("NATS_NKEY_SEED_FILE", "nkey.seed", {}),
        "userPassword": ("NATS_PASSWORD_FILE", "password", {"user": "ordo"}),
        "token": ("NATS_TOKEN_FILE", "token", {"key": "NATS_TOKEN"}),
    }
    for method, (variable, file, extra) in cases.items():
        values = {"natsAuth": {"method": method, "existingSecret": "ordo-nats-auth", **extra}}
        documents = {component(d): d for d in render(values) if d["kind"] == "Deployment"}
        for binary in ("order-service", "processor"):
            settings = values_of(documents[binary])
            assert settings[variable] == f"/etc/ordo/secrets/nats/{file}", (method, settings)
            key = extra.get("key", file)
            assert secret_files(documents[binary])[settings[variable]] == ("ordo-nats-auth", key), method
            others = {"NATS_CREDS_FILE", "NATS_NKEY_SEED_FILE", "NATS_PASSWORD_FILE", "NATS_TOKEN_FILE"} - {variable}
            assert not others & set(settings), f"{method}: one method at a time"
            assert ("NATS_USER" in settings) == (method == "userPassword"), method
        assert "NATS_USER" not in values_of(documents["payments-sim"])


@check("the in-chart NATS over TLS: clients and routes, the services at tls:// trusting the server's ca.crt only")
def _in_chart_nats_tls():
    one = "self-contained, PostgreSQL and NATS over TLS"
    conf = nats_conf(one)
    assert "cert_file: /etc/nats-tls/tls.crt" in conf and "key_file: /etc/nats-tls/tls.key" in conf, conf
    assert "verify: true" not in conf.split("cluster {")[0], "clientAuth is off"
    assert "no_advertise: true" in conf, "clients keep to the name the certificate carries"
    assert conf.count("tls {") == 2, "routes of the 3-node cluster speak TLS too"
    assert chart_secret(one)["NATS_URL"] == "tls://ordo-nats:4222"
    for binary, document in deployments(one).items():
        if binary == "payments-sim":
            continue
        files = secret_files(document)
        assert files["/etc/ordo/tls/nats/ca.crt"] == ("ordo-nats-tls", "ca.crt"), files
        assert ("ordo-nats-tls", "tls.key") not in files.values(), "the server's key stays with the server"
    nats = stateful_set(one, "nats")
    mount = next(m for m in containers(nats)[0]["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/etc/nats-tls", "readOnly": True}, mount
    volume = next(v for v in pod_spec(nats)["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "ordo-nats-tls" and volume["secret"]["defaultMode"] == 0o440
    secured = nats_conf("self-contained, everything secured")
    assert secured.count("verify: true") == 2 and secured.count("ca_file: /etc/nats-tls/ca.crt") == 2, secured
    assert "tls" not in nats_conf("self-contained"), "TLS is off by default"
    assert chart_secret("self-contained")["NATS_URL"] == "nats://ordo-nats:4222"


@check("the in-chart PostgreSQL over TLS: ssl on, plaintext TCP refused, services and migrations at verify-full")
def _in_chart_postgresql_tls():
    one = "self-contained, PostgreSQL and NATS over TLS"
    urls = chart_secret(one)
    for key in ("ORDER_SERVICE_DATABASE_URL", "PROCESSOR_DATABASE_URL"):
        assert urls[key].endswith("?sslmode=verify-full&sslrootcert=/etc/ordo/tls/postgresql/ca.crt"), urls[key]
    jobs = [d for d in rendered[one] if d["kind"] == "Job"]
    assert len(jobs) == 2
    for document in jobs + [deployments(one)["order-service"], deployments(one)["processor"]]:
        postgresql = {p: f for p, f in secret_files(document).items() if p.startswith("/etc/ordo/tls/postgresql/")}
        assert postgresql == {"/etc/ordo/tls/postgresql/ca.crt": ("ordo-postgresql-tls", "ca.crt")}, (
            "the server's ca.crt only: its key stays with the server"
        )
    postgresql = stateful_set(one, "postgresql")
    args = containers(postgresql)[0]["args"]
    for setting in ("ssl=on", "ssl_cert_file=/etc/postgresql/tls/tls.crt", "ssl_key_file=/etc/postgresql/tls/tls.key",
                    "hba_file=/etc/postgresql/hba/pg_hba.conf"):
        assert setting in args, args
    assert not any(a.startswith("ssl_ca_file") for a in args), "clientAuth is off"
    mount = next(m for m in containers(postgresql)[0]["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/etc/postgresql/tls", "readOnly": True}, mount
    assert pod_spec(postgresql)["securityContext"]["fsGroup"] == 999, "the key is readable by the postgres group only"
    hba = next(d for d in rendered[one] if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ordo-postgresql-hba")
    lines = [line.split() for line in hba["data"]["pg_hba.conf"].splitlines()]
    assert ["hostnossl", "all", "all", "all", "reject"] in lines and ["hostssl", "all", "all", "all", "scram-sha-256"] in lines
    assert "sslmode" not in chart_secret("self-contained")["ORDER_SERVICE_DATABASE_URL"], "TLS is off by default"


@check("PostgreSQL client certificates: sslcert and sslkey in the URLs, clientcert in pg_hba.conf, ssl_ca_file set")
def _postgresql_client_certificates():
    secured = "self-contained, everything secured"
    url = chart_secret(secured)["PROCESSOR_DATABASE_URL"]
    assert url.endswith(
        "/ordo_processor?sslmode=verify-full&sslrootcert=/etc/ordo/tls/postgresql/ca.crt"
        "&sslcert=/etc/ordo/tls/postgresql/tls.crt&sslkey=/etc/ordo/tls/postgresql/tls.key"
    ), url
    for document in [d for d in rendered[secured] if d["kind"] == "Job"] + [deployments(secured)["processor"]]:
        assert secret_files(document)["/etc/ordo/tls/postgresql/tls.key"] == ("ordo-postgresql-client", "tls.key")
    args = containers(stateful_set(secured, "postgresql"))[0]["args"]
    assert "ssl_ca_file=/etc/postgresql/tls/ca.crt" in args, args
    hba = next(d for d in rendered[secured] if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ordo-postgresql-hba")
    assert "scram-sha-256 clientcert=verify-ca" in hba["data"]["pg_hba.conf"]
    production = "production, secured"
    for document in [deployments(production)["order-service"], deployments(production)["processor"]]:
        files = secret_files(document)
        assert files["/etc/ordo/tls/postgresql/tls.crt"] == ("ordo-postgresql-client", "tls.crt"), files
    jobs = [d for d in rendered[production] if d["kind"] == "Job"]
    assert jobs and all("/etc/ordo/tls/postgresql/ca.crt" in secret_files(j) for j in jobs), "the migrations connect too"


@check("OTLP over mutual TLS with headers from a Secret file, on all three services")
def _otlp_tls():
    for binary, document in deployments("self-contained, everything secured").items():
        settings, files = values_of(document), secret_files(document)
        assert settings["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel.example.com:4317", binary
        assert settings["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/etc/ordo/tls/otlp/ca.crt", binary
        assert settings["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] == "/etc/ordo/tls/otlp/tls.crt", binary
        assert settings["OTEL_EXPORTER_OTLP_CLIENT_KEY"] == "/etc/ordo/tls/otlp/tls.key", binary
        assert settings["OTEL_EXPORTER_OTLP_HEADERS_FILE"] == "/etc/ordo/secrets/otlp/headers", binary
        assert "OTEL_EXPORTER_OTLP_HEADERS" not in settings, "headers only from the file"
        assert files["/etc/ordo/secrets/otlp/headers"] == ("ordo-otlp-headers", "headers"), files
    processor = deployments("production, secured")["processor"]
    assert secret_files(processor)["/etc/ordo/secrets/otlp/headers"] == ("ordo-otlp-headers", "OTEL_EXPORTER_OTLP_HEADERS")


@check("both admin tokens come from the Secret: the order service's and the processor's")
def _admin_tokens():
    secret = chart_secret("self-contained, everything secured")
    assert secret["ORDER_SERVICE_ADMIN_TOKEN"] == SENTINELS["orderServiceAdminToken"]
    assert secret["PROCESSOR_ADMIN_TOKEN"] == SENTINELS["adminToken"]
    for combination, name in (("self-contained, everything secured", "ordo-env"), ("production", "ordo-env")):
        services = deployments(combination)
        for binary, key in (("order-service", "ORDER_SERVICE_ADMIN_TOKEN"), ("processor", "PROCESSOR_ADMIN_TOKEN")):
            ref = env(services[binary])[key]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": name, "key": key, "optional": True}, ref
        assert "PROCESSOR_ADMIN_TOKEN" not in env(services["order-service"])
        assert "ORDER_SERVICE_ADMIN_TOKEN" not in env(services["processor"])
    plain = deployments("defaults (existing PostgreSQL and NATS)")
    assert not any(n.endswith("ADMIN_TOKEN") for d in plain.values() for n in env(d)), "no token, no admin API"


@check("NOTES.txt: grpcurl -plaintext without TLS, -cacert with the Secret's CA with TLS, -cert/-key under mutual TLS")
def _notes():
    plain = render_notes({})
    assert "grpcurl -plaintext" in plain and "-cacert" not in plain
    tls = render_notes(COMBINATIONS["gRPC TLS"])
    assert "-plaintext" not in tls and "grpcurl -cacert ca.crt -servername ordo-order-service" in tls, tls
    assert "get secret ordo-grpc-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > ca.crt" in tls, tls
    assert "-cert client.crt" not in tls
    mutual = render_notes(COMBINATIONS["gRPC mutual TLS"])
    assert "grpcurl -cacert ca.crt -cert client.crt -key client.key -servername ordo-processor" in mutual, mutual


@check("values.yaml documents every path the chart mounts a Secret at")
def _documented_paths():
    text = (CHART / "values.yaml").read_text()
    for document in workloads(rendered["self-contained, everything secured"]) + workloads(rendered["production, secured"]):
        volumes = {v["name"]: v for v in pod_spec(document).get("volumes", [])}
        for container in containers(document):
            for mount in container.get("volumeMounts", []):
                if "secret" in volumes.get(mount["name"], {}):
                    assert mount["mountPath"] in text, f"{mount['mountPath']} is not in values.yaml"


MONITORING = "monitoring (ServiceMonitor, PrometheusRule, Grafana dashboard)"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ordo.json"


@check("the chart's alert rules and dashboard are byte-identical copies of deploy/prometheus/rules.yml and deploy/grafana/ordo.json")
def _one_source():
    for source, copy in ((RULES, CHART / "files" / "prometheus-rules.yml"), (DASHBOARD, CHART / "files" / "grafana-dashboard.json")):
        assert copy.read_bytes() == source.read_bytes(), (
            f"{copy.relative_to(ROOT)} differs from {source.relative_to(ROOT)}: cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)}"
        )


@check("PrometheusRule and Grafana dashboard: off by default")
def _monitoring_off():
    for document in rendered["defaults (existing PostgreSQL and NATS)"]:
        assert document["kind"] != "PrometheusRule", "a PrometheusRule by default"
        assert "grafana_dashboard" not in document["metadata"].get("labels", {}), "a dashboard by default"


@check("PrometheusRule: every rule of deploy/prometheus/rules.yml, with the labels given")
def _prometheus_rule():
    rules = [d for d in rendered[MONITORING] if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1, rules
    rule = rules[0]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(RULES.read_text()), "the PrometheusRule differs from rules.yml"
    names = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(names) >= 9 and len(set(names)) == len(names), names


@check("Grafana dashboard: a ConfigMap with the sidecar's label holding deploy/grafana/ordo.json")
def _grafana_dashboard():
    maps = [d for d in rendered[MONITORING] if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    assert len(maps) == 1, maps
    config_map = maps[0]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Ordo"}
    assert json.loads(config_map["data"]["ordo.json"]) == json.loads(DASHBOARD.read_text())


for combination in ("self-contained", "self-contained, everything secured"):

    @check(f"helm install --dry-run: {combination}")
    def _dry_run(combination=combination):
        config = helm.Config(storage_driver="memory", namespace="ordo")
        release = config.install(
            CHART,
            "ordo",
            COMBINATIONS[combination],
            dry_run="client",
            namespace="ordo",
        )
        manifest = release.get("manifest", "") if isinstance(release, dict) else getattr(release, "manifest", "")
        assert "kind: StatefulSet" in manifest, "no manifest in the dry run"


print(f"helm-check: {'FAILED ' + ', '.join(failures) if failures else 'all passed'}")
sys.exit(1 if failures else 0)
