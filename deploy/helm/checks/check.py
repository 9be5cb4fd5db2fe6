"""Checks of the Ordo Helm chart with the real Helm v4 engine (helm-python-sdk)
and the Kubernetes schemas (kubernetes-validate, strict), no cluster needed.

Run by `just helm-check` (scripts/helm-check.sh), which makes the virtual
environment. Exits non-zero, naming the failed check, on any failure.
"""

from __future__ import annotations

import pathlib
import re
import sys
import traceback

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "ordo"
KUBE_VERSION = "1.30.0"

# The documented values combinations (README, Helm section).
COMBINATIONS: dict[str, dict] = {
    "defaults (existing PostgreSQL and NATS)": {},
    "self-contained": {
        "postgresql": {"enabled": True},
        "nats": {"enabled": True},
        "jaeger": {"enabled": True},
        "adminToken": "a-very-secret-admin-token",
    },
    "self-contained, NATS cluster": {
        "postgresql": {"enabled": True},
        "nats": {"enabled": True, "replicas": 3},
    },
    "self-contained, one NATS node": {
        "postgresql": {"enabled": True},
        "nats": {"enabled": True, "replicas": 1},
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
]

# Where each binary reads its settings (string literals naming variables).
SETTINGS_SOURCES = {
    "order-service": ["services/order-service/src/settings.rs", "crates/outbox/src/settings.rs"],
    "processor": ["services/processor/src/settings.rs", "crates/outbox/src/settings.rs"],
    "payments-sim": ["services/payments-sim/src/settings.rs"],
}
SHARED_SOURCES = [
    "crates/service-kit/src/env.rs",
    "crates/service-kit/src/serving.rs",
    "crates/service-kit/src/telemetry.rs",
]
GRPC_PORTS = {"order-service": 50051, "processor": 50052, "payments-sim": 50053}

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
    names: set[str] = set()
    for path in SETTINGS_SOURCES[binary] + SHARED_SOURCES:
        text = (ROOT / path).read_text()
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]{3,})"', text))
    return names


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
            if document["kind"] == "ServiceMonitor":
                continue  # a CRD: not in the Kubernetes schemas
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

    @check(f"Ordo's probes are gRPC health on the gRPC port: {name}")
    def _probes(name=name):
        deployments = [d for d in rendered[name] if d["kind"] == "Deployment" and component(d) in GRPC_PORTS]
        assert deployments
        for document in deployments:
            container = containers(document)[0]
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
            assert port == GRPC_PORTS[component(document)], (component(document), port)
            assert container["readinessProbe"]["grpc"] == {"port": port}, container["readinessProbe"]
            for probe in ("livenessProbe", "startupProbe"):
                assert container[probe]["grpc"] == {"port": port, "service": "ordo.liveness"}, container[probe]

    @check(f"every variable a Deployment sets is one its binary reads: {name}")
    def _env(name=name):
        for document in rendered[name]:
            if document["kind"] != "Deployment" or component(document) not in GRPC_PORTS:
                continue
            known = env_names(component(document))
            for variable in containers(document)[0]["env"]:
                assert variable["name"] in known, f"{component(document)} does not read {variable['name']}"


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
    def nats_conf(combination: str) -> str:
        documents = rendered[combination]
        config = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-nats"))
        return config["data"]["nats.conf"]

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


@check("helm install --dry-run of the self-contained configuration")
def _dry_run():
    config = helm.Config(storage_driver="memory", namespace="ordo")
    release = config.install(
        CHART,
        "ordo",
        COMBINATIONS["self-contained"],
        dry_run="client",
        namespace="ordo",
    )
    manifest = release.get("manifest", "") if isinstance(release, dict) else getattr(release, "manifest", "")
    assert "kind: StatefulSet" in manifest, "no manifest in the dry run"


print(f"helm-check: {'FAILED ' + ', '.join(failures) if failures else 'all passed'}")
sys.exit(1 if failures else 0)
