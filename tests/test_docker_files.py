"""``docker/``: the compose file, the Dockerfiles, the entrypoint and ``.dockerignore``, checked by structure.

No Docker engine runs here, so the compose file is parsed (PyYAML) and interpolated the way Compose does
(``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``), the Dockerfiles are read instruction by
instruction (hadolint-like rules by hand), ``.dockerignore`` is matched the way the builder matches it, and
the entrypoint's roles are run with ``IEL_DRY_RUN=1`` (it prints the command it would ``exec``).  The same
topology runs for real, without Docker, in ``tests/test_cluster_topology.py``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
SECRETS = {"POSTGRES_PASSWORD": "pw-from-env", "RAY_AUTH_TOKEN": "token-from-env"}
LONG_RUNNING = ("postgres", "mlflow", "ray-head", "ray-worker", "ray-worker-gpu")
IEL_SERVICES = ("mlflow", "ray-head", "ray-worker", "ray-worker-gpu", "submit")
RAY_SERVICES = ("ray-head", "ray-worker", "ray-worker-gpu", "submit")


# ----------------------------------------------------------------------------------- compose helpers
_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over a parsed document (strings only; keys untouched)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return ""

    return _VAR.sub(repl, value)


def variables(text: str) -> set[str]:
    return {m.group("name") for m in _VAR.finditer(text) if m.group("name")}


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (DOCKER / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def raw(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as Compose sees it with only the two secrets set (every other value defaulted)."""
    return interpolate(raw, dict(SECRETS))


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command_option(command: list[str], option: str) -> str:
    assert option in command, f"{option} missing from {command}"
    return command[command.index(option) + 1]


# ------------------------------------------------------------------------------------------ compose
def test_compose_has_the_cluster_services(raw: dict[str, Any]) -> None:
    services = raw["services"]
    assert set(services) >= {"ray-head", "ray-worker", "ray-worker-gpu", "postgres", "mlflow", "submit"}
    # One image for head, workers, MLflow and the submitter, built from the chosen Dockerfile.
    images = {services[s]["image"] for s in IEL_SERVICES}
    builds = {services[s]["build"]["dockerfile"] for s in IEL_SERVICES}
    assert images == {"${IEL_IMAGE:-iel-ablation:latest}"}
    assert builds == {"docker/${IEL_DOCKERFILE:-Dockerfile}"}
    assert (DOCKER / services["ray-head"]["build"]["context"]).resolve() == ROOT
    roles = {s: (services[s].get("entrypoint") or services[s]["command"]) for s in IEL_SERVICES}
    assert roles["ray-head"][0] == "head"
    assert roles["ray-worker"][0] == roles["ray-worker-gpu"][0] == "worker"
    assert roles["mlflow"][0] == "mlflow"
    assert roles["submit"] == ["iel-entrypoint", "submit"]
    assert services["submit"]["profiles"] == ["submit"]  # a one-shot command, not part of `up`


def test_long_running_services_have_healthchecks(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), check
        assert {"interval", "timeout", "retries"} <= set(check), check
    assert "healthcheck" not in services["submit"]
    # `service_healthy` only makes sense on a service that has a healthcheck
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_published_ports_bind_to_loopback_unless_configured(raw: dict[str, Any]) -> None:
    published = 0
    for name, service in raw["services"].items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("${IEL_BIND:-127.0.0.1}:"), (name, port)
            published += 1
            default = interpolate(port, {})
            assert default.split(":")[0] == "127.0.0.1", default
            assert interpolate(port, {"IEL_BIND": "0.0.0.0"}).split(":")[0] == "0.0.0.0"
    assert published >= 4  # postgres, mlflow, Ray dashboard and Ray Client
    for name in ("ray-worker", "ray-worker-gpu"):  # scalable: no fixed name, no host port
        assert "ports" not in raw["services"][name] and "container_name" not in raw["services"][name]


def test_secrets_come_from_the_environment_only(raw: dict[str, Any], compose_text: str) -> None:
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        with pytest.raises(MissingVariable, match=missing):
            interpolate(raw, env)
        with pytest.raises(MissingVariable, match=missing):  # empty counts as missing (":?")
            interpolate(raw, {**env, missing: ""})
    # every mention of a secret is a required variable, never a default or a literal
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", compose_text)
        assert uses and all(u.startswith(":?") for u in uses), (secret, uses)
    for name, service in raw["services"].items():
        for key, value in env_of(service).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), (name, key, value)
    for url in re.findall(r"[a-z+]+://[^\s\"']+", compose_text):
        credentials = re.match(r"[a-z+]+://([^@/]*)@", url)
        if credentials:  # user:password@ only as variables
            assert "${POSTGRES_PASSWORD:?" in credentials.group(1), url


def test_ray_token_authentication_on_every_node_and_driver(raw: dict[str, Any]) -> None:
    for name in RAY_SERVICES:
        env = env_of(raw["services"][name])
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name


def test_gpu_workers_reserve_gpus_and_cpu_workers_do_not(raw: dict[str, Any]) -> None:
    gpu = raw["services"]["ray-worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert interpolate(devices[0]["count"], {}) == "1"
    cpu = raw["services"]["ray-worker"]
    assert "profiles" not in cpu and "resources" not in (cpu.get("deploy") or {})
    for worker in (gpu, cpu):  # `--scale` has a default from the environment
        assert re.fullmatch(r"\$\{RAY_(GPU_)?WORKERS:-1\}", worker["deploy"]["replicas"])


def test_postgres_keeps_its_data_in_a_named_volume(raw: dict[str, Any]) -> None:
    postgres = raw["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+", postgres["image"]), (
        "pin the major version (the volume depends on it)"
    )
    mounts = dict(v.split(":", 1) for v in postgres["volumes"])
    assert mounts == {"postgres-data": "/var/lib/postgresql/data"}
    assert "postgres-data" in raw["volumes"] and "mlflow-artifacts" in raw["volumes"]
    env = env_of(postgres)
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_mlflow_server_uses_postgres_and_serves_artifacts(compose: dict[str, Any]) -> None:
    mlflow = compose["services"]["mlflow"]
    env = env_of(mlflow)
    store = env["MLFLOW_BACKEND_STORE_URI"]
    assert store == "postgresql+psycopg://iel:pw-from-env@postgres:5432/mlflow"
    # MLflow's tables live in their own database: its alembic_version would clash with ours
    results = env_of(compose["services"]["submit"])["IEL_DB_URL"]
    assert results.rsplit("/", 1)[-1] != store.rsplit("/", 1)[-1]
    command = mlflow["command"]
    assert "--serve-artifacts" in command
    destination = command_option(command, "--artifacts-destination")
    assert f"mlflow-artifacts:{destination}" in mlflow["volumes"]
    assert env["IEL_MLFLOW_HOST"] == "0.0.0.0" and env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    # MLflow answers 403 to Host headers it does not allow: workers and the submitter say "mlflow:5000"
    allowed = command_option(command, "--allowed-hosts").split(",")

    def ok(host: str) -> bool:  # mlflow.server.security_utils.is_allowed_host_header
        return any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed)

    assert ok("mlflow:5000") and ok("127.0.0.1:5000") and ok("localhost:5000")
    assert not ok("attacker.example:5000")


def test_drivers_point_at_the_services(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    submit, head = env_of(services["submit"]), env_of(services["ray-head"])
    mlflow_port = env_of(services["mlflow"])["IEL_MLFLOW_PORT"]
    assert submit["IEL_MLFLOW_URI"] == f"http://mlflow:{mlflow_port}"
    assert submit["IEL_RAY_ADDRESS"] == "ray://ray-head:10001"  # Ray Client: the submitter is no Ray node
    assert head["IEL_RAY_ADDRESS"] == "auto"  # a `ray job submit` driver runs on the head
    assert head["IEL_RAY_NUM_CPUS"] == "0"  # by default the head schedules; trials run on workers
    for worker in ("ray-worker", "ray-worker-gpu"):
        assert env_of(services[worker])["IEL_RAY_HEAD"] == "ray-head:6379"
        assert "IEL_DB_URL" not in env_of(services[worker])  # workers never write the results database
    # The submitter's environment resolves to PostgreSQL + the MLflow server (which keeps the artifacts).
    for key in ("IEL_DB_URL", "IEL_MLFLOW_URI", "IEL_RAY_ADDRESS", "IEL_HOME"):
        monkeypatch.setenv(key, submit[key])
    settings = Settings.resolve()
    assert settings.db_url == "postgresql+psycopg://iel:pw-from-env@postgres:5432/iel"
    assert settings.mlflow_uri == "http://mlflow:5000" and settings.artifact_root is None
    assert settings.ray_address == "ray://ray-head:10001"
    assert services["submit"]["volumes"] == ["../studies:/app/studies:ro"]


def test_env_example_documents_every_variable(compose_text: str) -> None:
    example: dict[str, str] = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            example[key.strip()] = value.strip()
    assert variables(compose_text) <= set(example), variables(compose_text) - set(example)
    for secret in SECRETS:
        assert example[secret] == "", f"{secret} must be empty in .env.example"
    assert example["IEL_BIND"] == "127.0.0.1"


# ---------------------------------------------------------------------------------------- Dockerfiles
def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def build_args(instrs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(a.split("=", 1) for k, a in instrs if k == "ARG" and "=" in a)


def common_rules(path: Path) -> list[tuple[str, str]]:
    instrs = instructions(path)
    kinds = [k for k, _ in instrs]
    assert "ADD" not in kinds, "COPY, not ADD"
    assert kinds.count("FROM") == 1
    users = [a for k, a in instrs if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as an unprivileged user"
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN"), "no RUN after USER"
    healthcheck = [a for k, a in instrs if k == "HEALTHCHECK"]
    assert healthcheck and "iel-entrypoint" in healthcheck[0] and "healthcheck" in healthcheck[0]
    for kind in ("ENTRYPOINT", "CMD"):  # exec form, so signals reach the process
        (arg,) = [a for k, a in instrs if k == kind]
        assert arg.startswith("["), f"{kind} must use the exec (JSON) form"
    assert [a for k, a in instrs if k == "ENTRYPOINT"] == ['["iel-entrypoint"]']
    for kind, arg in instrs:
        if kind == "WORKDIR":
            assert arg.startswith("/")
        if kind in ("ENV", "ARG"):
            for name in re.findall(r"([A-Z_]*(?:PASSWORD|TOKEN|SECRET)[A-Z_]*)=", arg):
                pytest.fail(f"{path.name} bakes a secret-like variable into the image: {name}")
        if kind == "RUN" and "pip install" in arg:
            assert "--no-cache-dir" in arg
        if kind == "RUN" and "apt-get install" in arg:
            assert "--no-install-recommends" in arg and "rm -rf /var/lib/apt/lists" in arg
        if kind == "RUN":
            assert "sudo " not in arg and "curl " not in arg and "wget " not in arg
    installs = " ".join(a for k, a in instrs if k == "RUN" and "pip install" in a)
    assert re.search(r"pip install --no-cache-dir \. ", installs), (
        "the project is installed with `pip install .`"
    )
    assert '"ray[default]==${RAY_VERSION}"' in installs  # same Ray on every node and driver
    assert re.fullmatch(r"\d+\.\d+\.\d+", build_args(instrs)["RAY_VERSION"])
    copies = [a for k, a in instrs if k == "COPY"]
    assert "docker/entrypoint.sh /usr/local/bin/iel-entrypoint" in copies
    return instrs


def test_cpu_dockerfile() -> None:
    instrs = common_rules(DOCKER / "Dockerfile")
    assert [a for k, a in instrs if k == "FROM"] == ["python:3.11-slim"]
    args = build_args(instrs)
    assert args["TORCH_VERSION"] == "2.13.0"
    torch_run = [a for k, a in instrs if k == "RUN" and "torch==" in a]
    assert len(torch_run) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_run[0]
    assert '"torch==${TORCH_VERSION}"' in torch_run[0]
    # torch is installed before the project, so `pip install .` finds it and pulls no CUDA wheels
    runs = [a for k, a in instrs if k == "RUN"]
    assert runs.index(torch_run[0]) < next(
        i for i, a in enumerate(runs) if "pip install --no-cache-dir ." in a
    )


def test_cuda_dockerfile() -> None:
    instrs = common_rules(DOCKER / "Dockerfile.cuda")
    assert [a for k, a in instrs if k == "FROM"] == ["${PYTORCH_IMAGE}"]
    pre_from = instructions(DOCKER / "Dockerfile.cuda")[0]
    assert pre_from[0] == "ARG" and pre_from[1].startswith("PYTORCH_IMAGE=")
    image = pre_from[1].split("=", 1)[1]
    m = re.fullmatch(r"pytorch/pytorch:(\d+)\.(\d+)\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", image)
    assert m, image
    # the base image's torch must satisfy the project's requirement (pip keeps it, no reinstall)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_req,) = [d for d in deps if d.startswith("torch")]
    req = re.fullmatch(r"torch>=(\d+)\.(\d+),<=(\d+)\.(\d+)\.\d+", torch_req)
    assert req, torch_req
    low, high = (int(req[1]), int(req[2])), (int(req[3]), int(req[4]))
    assert low <= (int(m[1]), int(m[2])) <= high, (image, torch_req)
    assert not any("torch==" in a for k, a in instrs if k == "RUN")
    cpu_args = build_args(instructions(DOCKER / "Dockerfile"))
    assert build_args(instrs)["RAY_VERSION"] == cpu_args["RAY_VERSION"]


# ----------------------------------------------------------------------------------- .dockerignore
def ignored(path: str, patterns: list[str]) -> bool:
    """The builder's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = re.escape(body).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, c) for c in candidates):
            verdict = not negate
    return verdict


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.lstrip().startswith("#")]
    needed = [
        "pyproject.toml",
        "README.md",
        "ielcore/__init__.py",
        "workers/actor.py",
        "orchestrator/cli.py",
        "orchestrator/alembic.ini",
        "studies/quickstart.yaml",
        "configs/small_heat.yaml",
        "docker/entrypoint.sh",
    ]
    for path in needed:
        assert not ignored(path, patterns), f"{path} is needed by the Dockerfiles"
    for path in [".venv/bin/python", ".git/HEAD", "docker/.env", "iel-runs/iel.db", "mlruns/0/meta.yaml",
                 "ielcore/__pycache__/spec.cpython-311.pyc", "tests/test_db.py", ".env"]:  # fmt: skip
        assert ignored(path, patterns), f"{path} must not reach the build context"
    # every COPY source of both Dockerfiles exists and survives .dockerignore
    for name in ("Dockerfile", "Dockerfile.cuda"):
        for kind, arg in instructions(DOCKER / name):
            if kind == "COPY":
                for src in arg.split()[:-1]:
                    assert (ROOT / src).exists(), src
                    assert not ignored(src, patterns), src


# --------------------------------------------------------------------------------------- entrypoint
def entry(
    *args: str, env: dict[str, str] | None = None, dry: bool = True
) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
    if dry:
        full["IEL_DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args], env=full, capture_output=True, text=True, timeout=30
    )


def test_entrypoint_is_valid_bash_and_executable() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    assert subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True).returncode == 0
    assert ENTRYPOINT.read_text().startswith("#!/usr/bin/env bash\n")


def test_entrypoint_head_and_worker_commands() -> None:
    out = entry("head", "--dashboard-agent-listen-port=1234")
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout)
    assert argv[:3] == ["ray", "start", "--block"]
    assert {"--head", "--disable-usage-stats", "--port=6379", "--ray-client-server-port=10001",
            "--include-dashboard=true", "--dashboard-host=0.0.0.0"} <= set(argv)  # fmt: skip
    assert argv[-1] == "--dashboard-agent-listen-port=1234"  # extra arguments are passed on
    assert not any(a.startswith("--num-cpus") for a in argv)  # unset: Ray detects the container's CPUs
    argv = shlex.split(
        entry(
            "head", env={"IEL_RAY_NUM_CPUS": "0", "IEL_RAY_DASHBOARD": "false", "IEL_RAY_PORT": "7000"}
        ).stdout
    )
    assert {"--num-cpus=0", "--include-dashboard=false", "--port=7000"} <= set(argv)
    missing = entry("worker")
    assert missing.returncode == 2 and "IEL_RAY_HEAD" in missing.stderr
    argv = shlex.split(entry("worker", env={"IEL_RAY_HEAD": "ray-head:6379", "IEL_RAY_NUM_GPUS": "1"}).stdout)
    assert argv[:3] == ["ray", "start", "--address=ray-head:6379"]
    assert {"--block", "--num-gpus=1"} <= set(argv) and "--head" not in argv


def test_entrypoint_mlflow_submit_and_passthrough() -> None:
    missing = entry("mlflow")
    assert missing.returncode == 2 and "MLFLOW_BACKEND_STORE_URI" in missing.stderr
    url = "postgresql+psycopg://iel:secret@postgres:5432/mlflow"
    out = entry("mlflow", "--serve-artifacts", env={"MLFLOW_BACKEND_STORE_URI": url})
    argv = shlex.split(out.stdout)
    assert argv == [
        "python",
        "-m",
        "mlflow",
        "server",
        "--host",
        "0.0.0.0",
        "--port",
        "5000",
        "--serve-artifacts",
    ]
    assert "secret" not in out.stdout  # the store URL travels in the environment, not on the command line
    assert entry("submit").returncode == 2
    assert shlex.split(entry("submit", "studies/x.yaml", "--max-concurrent", "2").stdout) == [
        "iel", "submit", "studies/x.yaml", "--max-concurrent", "2"]  # fmt: skip
    assert entry().returncode == 2
    echoed = entry("echo", "hello", dry=False)
    assert (echoed.returncode, echoed.stdout) == (0, "hello\n")


def test_entrypoint_healthcheck_follows_the_noted_role(tmp_path: Path) -> None:
    role_file = tmp_path / "role"
    env = {"IEL_ROLE_FILE": str(role_file)}
    assert entry("healthcheck", env=env, dry=False).returncode == 0  # no role noted: nothing to check
    role_file.write_text("submit\n")
    assert entry("healthcheck", env=env, dry=False).returncode == 0
    role_file.write_text("mlflow\n")
    from tests.postgres import free_port

    down = entry("healthcheck", env={**env, "IEL_MLFLOW_PORT": str(free_port())}, dry=False)
    assert down.returncode != 0  # nothing listens there
    # the roles the compose file runs are the roles the entrypoint knows
    text = ENTRYPOINT.read_text()
    for role in ("head", "worker", "mlflow", "submit", "healthcheck"):
        assert f"\n    {role})\n" in text
