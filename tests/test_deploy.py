"""The deployment files, checked without a Docker engine: docker-compose.yml against the Compose
Specification's JSON schema and the services' contract, the Dockerfile's build targets (read with
dockerfile-parse), and pyproject.toml's installs per role against the lock.

tests/data/compose-spec.json is the Compose Specification JSON schema (compose-spec/compose-spec,
schema/compose-spec.json as of March 2021, Apache-2.0), taken byte for byte from the PyPI wheel
docker-compose 1.29.2, compose/config/compose_spec.json (sha256 0dc04bd3...2bac). It predates some
later keys (top-level `name`, healthcheck `start_interval`, `gpus`), so the compose file keeps to
the keys it knows; Compose v2 accepts them all.

The compose file is validated as written, before Compose's `${VAR}` interpolation: every
interpolated value sits in a string field, so the schema's types hold either way.
"""

import json
import re
import shlex
import tomllib
from collections.abc import Iterable
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from jobs.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements" / "constraints.txt"
# Origin and license: see the module docstring (Compose Specification, Apache-2.0).
SCHEMA_FILE = Path(__file__).parent / "data" / "compose-spec.json"

LONG_RUNNING = {"api", "worker", "webhook-worker", "scheduler", "redis", "minio"}
# Beat answers no pings; a scheduler that exits is restarted instead.
WITHOUT_HEALTHCHECK = {"scheduler"}
# The Dockerfile target each Python service runs.
TARGETS = {"api": "api", "worker": "worker", "webhook-worker": "service", "scheduler": "service"}
COMMANDS = {
    "api": [
        *["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"],
        *["--http", "h11", "--h11-max-incomplete-event-size", "1048576"],
    ],
    "worker": ["python", "-m", "worker.render_worker"],
    "webhook-worker": ["python", "-m", "worker.webhook_worker"],
    "scheduler": ["python", "-m", "worker.scheduler"],
}
# What only the render worker may install: torch, the model libraries and CUDA.
HEAVY = {"torch", "diffusers", "transformers", "onnxruntime", "onnx", "safetensors", "xformers", "triton"}
GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")


# --- docker-compose.yml ----------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe loading that refuses a key given twice in one mapping (Compose refuses it too;
    PyYAML would keep the last). Merge keys (`<<: *anchor`) are allowed to be overridden."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.load(COMPOSE_FILE.read_text(), Loader=_StrictLoader)


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    # Its `$schema` names draft 2019-09 by a URI that draft does not use (http://.../schema#).
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_is_valid_against_the_compose_spec(compose: dict, schema_validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in schema_validator.iter_errors(compose)]
    assert errors == []
    assert "version" not in compose, "the Compose specification has no version key"


def test_the_schema_rejects_a_misspelt_key(compose: dict, schema_validator) -> None:
    """The schema has teeth: an unknown service key is an error, so a typo cannot pass."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["heathcheck"] = broken["services"]["worker"].pop("healthcheck")
    assert not schema_validator.is_valid(broken)


def test_only_the_documented_variables_are_required(compose: dict) -> None:
    """`${VAR:?message}` is Compose's "unset or empty stops `up` with this message"."""
    required = set(re.findall(r"\$\{(\w+):\?[^}]+\}", COMPOSE_FILE.read_text()))
    assert required == {"PAINTS_UNDO_API_KEYS", "MINIO_ROOT_PASSWORD"}
    keys = compose["services"]["api"]["environment"]["PAINTS_UNDO_API_KEYS"]
    assert re.fullmatch(r"\$\{PAINTS_UNDO_API_KEYS:\?.*comma-separated API keys\}", keys), keys


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == LONG_RUNNING | {"minio-init"}


def test_long_running_services_have_healthchecks_and_restart(compose: dict) -> None:
    for name in LONG_RUNNING:
        service = compose["services"][name]
        assert service.get("restart") == "unless-stopped", name
        if name in WITHOUT_HEALTHCHECK:
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert compose["services"]["minio-init"]["restart"] == "no"


def test_durations_are_go_durations(compose: dict) -> None:
    """The schema does not check `format: duration`; Compose wants Go durations such as 1m30s."""
    for name, service in compose["services"].items():
        values = {key: service.get("healthcheck", {}).get(key) for key in ("interval", "timeout", "start_period")}
        values["stop_grace_period"] = service.get("stop_grace_period")
        for key, value in values.items():
            assert value is None or GO_DURATION.fullmatch(value), (name, key, value)


def test_api_health_check_reads_healthz_without_curl(compose: dict) -> None:
    api = compose["services"]["api"]
    test = api["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8000/healthz'" in test[3]
    compile(test[3], "healthcheck", "exec")
    assert api["ports"] == ["${PORT:-8000}:8000"]


@pytest.mark.parametrize(("service", "node"), [("worker", "render"), ("webhook-worker", "webhooks")])
def test_celery_health_checks_ping_their_own_node(compose: dict, service: str, node: str) -> None:
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    # `$$` is Compose's literal `$`: the container's shell expands $HOSTNAME.
    assert shlex.split(test[1].replace("$$", "$")) == [
        *("celery", "-A", "worker.cli_app", "inspect", "ping"),
        *("--destination", f"{node}@$HOSTNAME", "--timeout", "10"),
    ]


def test_only_the_worker_reserves_a_gpu(compose: dict) -> None:
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["stop_grace_period"] == "60s"
    assert worker["shm_size"]
    assert "models:/models" in worker["volumes"]
    for name in ("api", "webhook-worker", "scheduler"):
        assert "resources" not in compose["services"][name].get("deploy", {}), f"{name} needs no GPU"


def test_one_scheduler(compose: dict) -> None:
    """Two beats would send every periodic task twice."""
    scheduler = compose["services"]["scheduler"]
    assert scheduler["deploy"] == {"replicas": 1}
    assert scheduler["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_the_schedule_file_is_on_a_volume_the_scheduler_can_write(compose: dict, stages: dict) -> None:
    """A new container keeps beat's record of when each task last ran; the image's user owns the folder."""
    scheduler = compose["services"]["scheduler"]
    folder = str(Path(scheduler["environment"]["PAINTS_UNDO_SCHEDULE_FILE"]).parent)
    volume, _, mounted_at = next(v for v in scheduler["volumes"] if v.endswith(":" + folder)).partition(":")
    assert volume in compose["volumes"]
    runs = " ".join(value for kind, value in _chain(stages, TARGETS["scheduler"]) if kind == "RUN")
    assert re.search(rf"chown 10001:10001 [^&]*{re.escape(mounted_at)}\b", runs), runs


def test_redis_persists_with_appendonly_on_a_volume(compose: dict) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].split(".")[0] == "7"
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert {"redis-data", "minio-data", "models"} <= set(compose["volumes"])


def test_minio_init_creates_the_storage_bucket(compose: dict) -> None:
    storage = urlparse(compose["services"]["worker"]["environment"]["PAINTS_UNDO_STORAGE_URL"])
    assert storage.scheme == "s3"
    init = compose["services"]["minio-init"]
    assert init["image"].split(":")[0] == "minio/mc"
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    script = " ".join(init["command"])
    assert re.search(rf"\bmc mb --ignore-existing local/{re.escape(storage.netloc)}(\s|$)", script), script
    assert re.search(r"\bmc alias set local http://minio:9000\b", script), script
    minio = compose["services"]["minio"]
    assert minio["image"].split(":")[0] == "minio/minio"
    assert "minio-data:/data" in minio["volumes"]


@pytest.mark.parametrize("name", ["api", "worker", "webhook-worker"])
def test_services_that_use_storage_wait_for_redis_and_the_bucket(compose: dict, name: str) -> None:
    assert compose["services"][name]["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "minio-init": {"condition": "service_completed_successfully"},
    }


def test_python_services_share_one_environment(compose: dict) -> None:
    services = {name: compose["services"][name] for name in TARGETS}
    # Beyond the shared environment: the API's keys, the render worker's cold shutdown on SIGTERM, the
    # scheduler's file.
    own = {"PAINTS_UNDO_API_KEYS", "REMAP_SIGTERM", "PAINTS_UNDO_SCHEDULE_FILE"}
    shared = [{k: v for k, v in s["environment"].items() if k not in own} for s in services.values()]
    assert all(environment == shared[0] for environment in shared)
    assert services["worker"]["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    assert shared[0]["PAINTS_UNDO_REDIS_URL"] == "redis://redis:6379/0"
    assert shared[0]["PAINTS_UNDO_S3_ENDPOINT_URL"] == "http://minio:9000"
    minio = compose["services"]["minio"]["environment"]
    assert shared[0]["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert shared[0]["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    assert [name for name, s in services.items() if "PAINTS_UNDO_API_KEYS" in s["environment"]] == ["api"]


def test_paints_undo_variables_are_settings_fields(compose: dict) -> None:
    known = {"PAINTS_UNDO_" + name.upper() for name in ServiceSettings.model_fields} | {"PAINTS_UNDO_API_KEYS"}
    used = {
        key
        for service in compose["services"].values()
        for key in (service.get("environment") or {})
        if key.startswith("PAINTS_UNDO_")
    }
    assert used and used <= known, sorted(used - known)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_each_python_service_builds_its_own_target(compose: dict, stages: dict, name: str) -> None:
    service = compose["services"][name]
    assert service["build"]["context"] == "."
    assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    assert service["build"]["target"] == TARGETS[name]
    assert TARGETS[name] in stages
    assert service["pull_policy"] == "build"
    # One image name per target: two targets under one name would overwrite each other.
    same_image = {other for other in TARGETS if compose["services"][other]["image"] == service["image"]}
    assert same_image == {other for other in TARGETS if TARGETS[other] == TARGETS[name]}


def test_service_commands_are_the_entry_points(compose: dict) -> None:
    for name, command in COMMANDS.items():
        assert compose["services"][name]["command"] == command, name


@pytest.mark.parametrize("module", ["api.main", *(c[2] for c in COMMANDS.values() if c[:2] == ["python", "-m"])])
def test_entry_point_modules_exist(module: str) -> None:
    assert find_spec(module) is not None, f"{module} is run by docker-compose.yml or the Dockerfile but missing"


def test_celery_health_checks_find_the_app() -> None:
    """`celery -A worker.cli_app` needs a Celery instance there (named `app` or `celery`)."""
    assert isinstance(find_app("worker.cli_app"), Celery)


# --- Dockerfile ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE), cache_content=True)


@pytest.fixture(scope="module")
def stages(dockerfile: DockerfileParser) -> dict[str, dict]:
    return dockerfile_stages(dockerfile)


def dockerfile_stages(dockerfile: DockerfileParser) -> dict[str, dict]:
    """Each named stage: its `FROM` (image or stage) and its instructions as (INSTRUCTION, value)."""
    found: dict[str, dict] = {}
    for item in dockerfile.structure:
        if item["instruction"] == "FROM":
            base, _, name = item["value"].partition(" AS ")
            stage = found[name.strip()] = {"from": base.strip(), "steps": []}
        elif item["instruction"] != "COMMENT":
            stage["steps"].append((item["instruction"], item["value"]))
    return found


def _chain(stages: dict, target: str) -> list[tuple[str, str]]:
    """A target's instructions, from those of the stages it is built on; and its base image last."""
    steps: list[tuple[str, str]] = []
    while target in stages:
        steps = stages[target]["steps"] + steps
        target = stages[target]["from"]
    return [*steps, ("IMAGE", target)]


def _installed_extras(steps: Iterable[tuple[str, str]]) -> list[set[str]]:
    """The extras of each `pip install` of the project (`.` or `".[a,b]"`), in order."""
    found = []
    for kind, value in steps:
        if kind == "RUN":
            for match in re.finditer(r"""(?:^|[\s=])["']?\.(?:\[([\w,]*)\])?["']?(?=\s|;|$)""", value):
                found.append(set(filter(None, (match[1] or "").split(","))))
    return found


@pytest.mark.parametrize(("target", "extras"), [("api", {"api"}), ("service", set())])
def test_the_light_images_are_slim_python_without_torch(stages: dict, target: str, extras: set[str]) -> None:
    steps = _chain(stages, target)
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", steps[-1][1]), steps[-1]
    runs = " ".join(value for kind, value in steps if kind == "RUN")
    assert "torch" not in runs and "download.pytorch.org" not in runs
    # The dependency layer, then the sources installed --no-deps (no extras there).
    assert _installed_extras(steps) == [extras, set()]
    assert not base_dependencies_with(extras) & HEAVY


def test_the_worker_image_has_the_cuda_torch_of_its_base_image(dockerfile: DockerfileParser, stages: dict) -> None:
    steps = _chain(stages, "worker")
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)(\.\d+)?-(cudnn\d*-)?runtime-ubuntu\d+\.\d+", steps[-1][1])
    assert match, f"{steps[-1][1]} is not an nvidia/cuda runtime image"
    assert dockerfile.args["TORCH_CUDA"] == f"cu{match[1]}{match[2]}", "the torch build and the base image disagree"
    runs = [value for kind, value in steps if kind == "RUN"]
    torch_from_the_cuda_index = re.compile(
        r'pip install --no-deps --constraint \S+ torch\s+--index-url "https://download\.pytorch\.org/whl/\$\{TORCH_CUDA\}"'
    )
    cuda_torch = [i for i, run in enumerate(runs) if torch_from_the_cuda_index.search(run)]
    assert cuda_torch, "torch must come from the PyTorch CUDA index, at the locked version"
    # Before the worker's dependencies: installed after them, pip would have taken PyPI's torch.
    worker_extras = [
        i for i, run in enumerate(runs) if {"worker", "tiny"} <= set.union(set(), *_installed_extras([("RUN", run)]))
    ]
    assert worker_extras and cuda_torch[0] < worker_extras[0]
    assert dockerfile.args["WITH_XFORMERS"] == "0"
    assert any("WITH_XFORMERS" in run and ".[worker,tiny,xformers]" in run for run in runs)
    assert dockerfile.envs["HF_HOME"] == "/models/huggingface"


@pytest.mark.parametrize("target", ["api", "service", "worker"])
def test_every_install_is_locked(stages: dict, target: str) -> None:
    """Every pip install that resolves dependencies takes the lock, before the sources arrive."""
    steps = _chain(stages, target)
    installs = [i for i, (kind, value) in enumerate(steps) if kind == "RUN" and "pip install" in value]
    assert installs
    for i in installs:
        value = steps[i][1]
        assert "--no-deps" in value or "--constraint" in value, value
    lock_copied = next(i for i, (kind, value) in enumerate(steps) if kind == "COPY" and "constraints.txt" in value)
    first_source = next(
        i
        for i, (kind, value) in enumerate(steps)
        if kind == "COPY" and re.match(r"(model_core|jobs|api|worker)\b", value)
    )
    dependencies = [i for i in installs if "--no-deps" not in steps[i][1]]
    assert lock_copied < min(dependencies) and max(dependencies) < first_source


@pytest.mark.parametrize("target", ["api", "service", "worker"])
def test_images_run_as_a_non_root_user_owning_app(stages: dict, target: str) -> None:
    steps = _chain(stages, target)
    users = [value for kind, value in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    runs = " ".join(value for kind, value in steps if kind == "RUN")
    assert "--uid 10001" in runs
    assert re.search(r"chown 10001:10001 /app\b", runs)
    assert any("PYTHONUNBUFFERED=1" in value for kind, value in steps if kind == "ENV")


@pytest.mark.parametrize(("target", "service"), [("api", "api"), ("service", "webhook-worker"), ("worker", "worker")])
def test_an_image_run_without_compose_starts_its_role(stages: dict, target: str, service: str) -> None:
    cmds = [json.loads(value) for kind, value in stages[target]["steps"] if kind == "CMD"]
    assert cmds == [COMMANDS[service]]


def test_no_secrets_in_the_images(dockerfile: DockerfileParser) -> None:
    """Keys and passwords come from the environment at run time, never from ENV or ARG."""
    secret = re.compile(r"SECRET|PASSWORD|KEY|TOKEN|CREDENTIAL", re.IGNORECASE)
    for item in dockerfile.structure:
        if item["instruction"] in ("ENV", "ARG"):
            assert not secret.search(item["value"]), item["content"]


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "data", ".env"} <= patterns
    # The files the Dockerfile copies are not ignored.
    assert not patterns & {"pyproject.toml", "README.md", "requirements", "model_core", "jobs", "api", "worker"}


# --- pyproject.toml and the lock ---------------------------------------------------------------

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def project_requirements(extras: Iterable[str]) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = [*project["dependencies"], *(line for extra in extras for line in project["optional-dependencies"][extra])]
    return [Requirement(line) for line in lines]


def dependency_closure(requirements: Iterable[Requirement]) -> set[str]:
    """The names of every distribution these requirements pull in, read from the installed metadata
    (what `make install` put in this venv), extras and markers included."""
    visited: dict[str, set[str]] = {}
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        extras = ({""} if name not in visited else set()) | (set(requirement.extras) - visited.get(name, set()))
        if not extras:
            continue
        visited.setdefault(name, set()).update(extras)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed: run `make install`")
        for line in requires:
            dependency = Requirement(line)
            if any(dependency.marker is None or dependency.marker.evaluate({"extra": e}) for e in extras):
                pending.append(Requirement(str(dependency).split(";")[0]))
    return set(visited)


def base_dependencies_with(extras: Iterable[str]) -> set[str]:
    return dependency_closure(project_requirements(extras))


def locked_versions() -> dict[str, list[tuple[str, Requirement]]]:
    """Each locked name: its (version, requirement) lines; one per Python range where they differ."""
    locked: dict[str, list[tuple[str, Requirement]]] = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            locked.setdefault(canonicalize_name(requirement.name), []).append((specifier.version, requirement))
    return locked


def test_the_package_ships_every_source_package() -> None:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in ("model_core", "jobs", "api", "worker"):
        assert any(re.fullmatch(pattern.replace("*", ".*"), package) for pattern in include), package


@pytest.mark.parametrize("extras", [(), ("api",)])
def test_the_api_and_the_light_workers_install_no_torch(extras: tuple[str, ...]) -> None:
    closure = base_dependencies_with(extras)
    assert {"pydantic", "celery", "redis", "boto3"} <= closure
    assert not closure & HEAVY, sorted(closure & HEAVY)
    assert not {name for name in closure if name.startswith("nvidia-")}


def test_the_render_worker_installs_torch() -> None:
    """The closure walk sees through to torch: the test above could fail."""
    assert {"torch", "diffusers", "onnxruntime"} <= base_dependencies_with(["worker"])


def test_the_lock_pins_everything_pyproject_asks_for() -> None:
    """A dependency added or raised in pyproject.toml without `make lock` fails here."""
    locked = locked_versions()
    extras = PYPROJECT["project"]["optional-dependencies"]
    for requirement in project_requirements(extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {LOCK.name}: run `make lock`"
        for version, _ in locked[name]:
            assert requirement.specifier.contains(version, prereleases=True), (str(requirement), version)


def test_the_lock_pins_every_installed_dependency_and_this_venv_follows_it() -> None:
    locked = locked_versions()
    closure = base_dependencies_with(["api", "worker", "tiny", "dev"]) - {"paints-undo"}
    assert not closure - set(locked), f"not in the lock, run `make lock`: {sorted(closure - set(locked))}"
    for name in closure:
        wanted = [version for version, line in locked[name] if line.marker is None or line.marker.evaluate()]
        installed = metadata.version(name).split("+")[0]  # torch 2.13.0+cpu is the locked 2.13.0
        assert wanted == [installed], f"{name} {installed} installed, {wanted} locked: run `make install`"


def test_the_lock_holds_the_chosen_torch() -> None:
    (pin,) = [
        Requirement(line)
        for line in (ROOT / "requirements" / "pins.txt").read_text().splitlines()
        if line.startswith("torch")
    ]
    assert [version for version, _ in locked_versions()["torch"]] == [str(pin.specifier).removeprefix("==")]
