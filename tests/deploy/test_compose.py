"""docker-compose.yml, deploy/endpoints.docker.yml, deploy/prometheus.yml and the Grafana dashboard,
checked without a Docker engine: what ``docker compose config`` and ``up`` would need."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import COMPOSE_FILE, DOCKER_ENDPOINTS, ROOT, load_yaml

SERVICE_KEYS = {  # the compose-spec service keys this project may use
    "build", "image", "command", "entrypoint", "environment", "ports", "volumes", "depends_on",
    "healthcheck", "restart", "profiles", "env_file", "networks", "deploy", "expose", "labels",
}
REQUIRED_SERVICES = {"assistant", "actions", "nlg", "postgres", "redis", "rabbitmq", "prometheus"}
INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")


def test_top_level_structure(compose):
    assert set(compose) <= {"name", "services", "volumes", "networks", "configs", "secrets"} | {
        k for k in compose if k.startswith("x-")}
    assert REQUIRED_SERVICES <= set(compose["services"])


def test_every_service_is_buildable_or_pullable_and_healthchecked(compose):
    for name, service in compose["services"].items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert "image" in service or "build" in service, name
        if "build" in service:
            dockerfile = ROOT / service["build"].get("context", ".") / service["build"].get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), (name, dockerfile)
        else:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), \
                f"{name}: pin third-party images to a version"
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert len(check["test"]) > 1


def test_depends_on_targets_exist_and_wait_for_health(compose):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: use the long form with a condition"
        for target, spec in depends.items():
            assert target in services, (name, target)
            assert spec["condition"] in ("service_healthy", "service_started", "service_completed_successfully")
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
            # a default service must not wait for one that only starts in a profile
            if not service.get("profiles"):
                assert not services[target].get("profiles"), (name, target)


def test_no_dependency_cycles(compose):
    services = compose["services"]
    visiting, done = set(), set()

    def visit(name):
        assert name not in visiting, f"dependency cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for target in services[name].get("depends_on") or {}:
            visit(target)
        visiting.discard(name)
        done.add(name)

    for name in services:
        visit(name)


def test_the_assistant_needs_every_backing_service(compose):
    depends = set(compose["services"]["assistant"]["depends_on"])
    assert {"postgres", "redis", "rabbitmq", "actions", "nlg"} <= depends


def test_interpolations_have_defaults_so_config_works_without_an_env_file():
    text = COMPOSE_FILE.read_text()
    found = INTERPOLATION.findall(text)
    assert found
    for expression in found:
        assert re.fullmatch(r"\w+:?-.*", expression), f"${{{expression}}} has no default"


def test_bind_mounts_exist_and_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)


def test_ports_are_published_where_operators_need_them(compose):
    services = compose["services"]
    assert any(p.endswith(":8000") for p in services["assistant"]["ports"])
    assert any(p.endswith(":9090") for p in services["prometheus"]["ports"])
    for internal in ("postgres", "redis", "rabbitmq", "actions", "nlg"):
        assert "ports" not in services[internal], f"{internal} should stay on the compose network"


def test_services_that_read_the_docker_endpoints_get_its_variables(compose):
    variables = set(re.findall(r"\$\{(\w+)\}", json.dumps(load_yaml(DOCKER_ENDPOINTS))))  # values, not comments
    assert {"POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS"} <= variables
    for name, service in compose["services"].items():
        command = " ".join(map(str, service.get("command") or []))
        env = service.get("environment") or {}
        if "endpoints.docker.yml" in command or "endpoints.docker.yml" in str(env.get("NEBRAS_ENDPOINTS", "")):
            assert variables <= set(env), (name, variables - set(env))


def test_database_url_matches_the_postgres_service(compose):
    services = compose["services"]
    url = services["assistant"]["environment"]["NEBRAS_DB_URL"]
    assert "@postgres:5432/" in url
    assert services["actions"]["environment"]["NEBRAS_DB_URL"] == url


def test_compose_commands_use_the_image_entrypoints(compose):
    services = compose["services"]
    assert services["assistant"]["command"][0] == "serve"
    assert services["nlg"]["command"][:5] == ["nlg-server", "--host", "0.0.0.0", "--port", "5056"]
    assert services["channels"]["entrypoint"] == ["rasa"] and services["channels"]["command"][0] == "run"
    assert "/app/credentials.yml" in services["channels"]["command"]


# ---------------------------------------------------------------- endpoints.docker.yml
def test_docker_endpoints_parse_with_rasas_readers(monkeypatch):
    from rasa.core.utils import AvailableEndpoints

    for name in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_USER",
                 "RABBITMQ_DEFAULT_PASS"):
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    monkeypatch.setenv("NEBRAS_NLG_API_TOKEN", "")  # an empty token is allowed (NLG auth off)
    endpoints = AvailableEndpoints.read_endpoints(str(DOCKER_ENDPOINTS))
    assert endpoints.action.url == "http://actions:5055/webhook"
    assert endpoints.nlg.url == "http://nlg:5056/nlg" and not endpoints.nlg.token
    store = endpoints.tracker_store
    assert store.type == "SQL" and store.url == "postgres"
    assert store.kwargs["dialect"] == "postgresql" and store.kwargs["db"] == "value-of-postgres_db"
    assert store.kwargs["password"] == "value-of-postgres_password"
    assert endpoints.lock_store.type == "nebras_bot.serving.lock_store.AtomicRedisLockStore"
    assert endpoints.lock_store.url == "redis"
    broker = endpoints.event_broker
    assert broker.type == "pika" and broker.url == "rabbitmq"
    assert broker.kwargs["queues"] == ["rasa_production_events"]  # what `nebras learn --broker` reads


def test_docker_endpoints_queue_matches_the_learning_harvest():
    from nebras_bot.learning.settings import LearningSettings

    assert LearningSettings().broker_queue in load_yaml(DOCKER_ENDPOINTS)["event_broker"]["queues"]


def test_docker_endpoints_name_compose_services(compose):
    endpoints = load_yaml(DOCKER_ENDPOINTS)
    services = compose["services"]
    hosts = {
        re.sub(r"^https?://", "", endpoints["action_endpoint"]["url"]).split(":")[0],
        re.sub(r"^https?://", "", endpoints["nlg"]["url"]).split(":")[0],
        endpoints["tracker_store"]["url"], endpoints["lock_store"]["url"], endpoints["event_broker"]["url"],
    }
    assert hosts <= set(services), hosts - set(services)


# ---------------------------------------------------------------- Prometheus and Grafana
def test_prometheus_scrapes_the_compose_services(compose):
    config = load_yaml(ROOT / "deploy" / "prometheus.yml")
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert "assistant:8000" in targets and "nlg:5056" in targets
    for target in targets:
        host = target.split(":")[0]
        assert host == "localhost" or host in compose["services"], target
    mounted = " ".join(compose["services"]["prometheus"]["volumes"])
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml" in mounted


def _metric_families():
    from prometheus_client import REGISTRY

    import nebras_bot.monitoring.metrics  # noqa: F401  (registers the nebras_* metrics)

    names = set()
    for family in REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
    return names


def test_grafana_dashboard_queries_only_existing_metrics():
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    known = _metric_families()
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\bnebras_\w+", target["expr"]))
    # metrics whose samples appear only once observed (histogram buckets, counters) are registered
    # under their family name; strip the sample suffixes to compare
    def family(name: str) -> str:
        return re.sub(r"_(bucket|sum|count|total|info)$", "", name)

    known_families = {family(n) for n in known}
    assert {family(n) for n in used} <= known_families, {family(n) for n in used} - known_families
    expected = {"nebras_requests", "nebras_request_latency_seconds", "nebras_turns", "nebras_generation_latency_seconds",
                "nebras_fallbacks", "nebras_errors", "nebras_tickets_created", "nebras_model"}
    assert expected <= {family(n) for n in used}


def test_grafana_dashboard_json_is_generated_from_its_script():
    import runpy

    module = runpy.run_path(str(ROOT / "deploy" / "make_dashboard.py"))
    expected = json.dumps(module["dashboard"](), indent=2) + "\n"
    assert (ROOT / "deploy" / "grafana-dashboard.json").read_text() == expected, \
        "run python deploy/make_dashboard.py"


def test_grafana_provisioning_points_at_the_dashboard(compose):
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    source = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = load_yaml(provisioning / "dashboards" / "nebras.yml")["providers"][0]
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.startswith("./deploy/grafana-dashboard.json:" + provider["options"]["path"]) for m in mounts)
