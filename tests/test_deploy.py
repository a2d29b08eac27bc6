"""The deployment files, checked without a Docker engine: docker-compose.yml against the Compose
Specification's JSON schema and the services' contract, Dockerfile.gpu by its instructions.

tests/data/compose-spec.json is the Compose Specification JSON schema (compose-spec/compose-spec,
schema/compose-spec.json as of March 2021, Apache-2.0), taken byte for byte from the PyPI wheel
docker-compose 1.29.2, compose/config/compose_spec.json (sha256 0dc04bd3...2bac). It predates some
later keys (top-level `name`, healthcheck `start_interval`, `gpus`), so the compose file keeps to
the keys it knows; Compose v2 accepts them all.
"""

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app

from jobs.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile.gpu"
# Origin and license: see the module docstring (Compose Specification, Apache-2.0).
SCHEMA_FILE = Path(__file__).parent / "data" / "compose-spec.json"

# What `docker compose up` needs from the shell: the two required variables.
REQUIRED_ENV = {"PAINTS_UNDO_API_KEYS": "key-one,key-two", "MINIO_ROOT_PASSWORD": "a-long-password"}
PYTHON_SERVICES = ("api", "worker", "webhook-worker")
LONG_RUNNING = {"api", "worker", "webhook-worker", "redis", "minio"}
COMMANDS = {
    "api": ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"],
    "worker": ["python", "-m", "worker.render_worker"],
    "webhook-worker": ["python", "-m", "worker.webhook_worker"],
}
GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")


# --- Compose interpolation -------------------------------------------------------------------


class MissingVariable(ValueError):
    """A `${VAR:?message}` whose variable is unset (or empty): Compose refuses to start."""


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^${}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def interpolate_string(text: str, env: Mapping[str, str]) -> str:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
    `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$`; nesting is refused, not guessed."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise ValueError(f"invalid or nested interpolation in {text!r}")
        name = match["braced"] or match["named"]
        value = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op is None:
            return value or ""
        if op.endswith("-"):
            return arg if missing else value
        if op.endswith("?"):
            if missing:
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return value
        return "" if missing else arg  # "+"

    return _INTERPOLATION.sub(replace, text)


def interpolate(node: object, env: Mapping[str, str]) -> object:
    """Every string value of a loaded compose file, as Compose does (keys are left alone)."""
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    return node


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


def load_compose(env: Mapping[str, str] | None = None) -> dict:
    raw = yaml.load(COMPOSE_FILE.read_text(), Loader=_StrictLoader)
    return interpolate(raw, REQUIRED_ENV if env is None else env)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    # Its `$schema` names draft 2019-09 by a URI that draft does not use (http://.../schema#).
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_interpolation_follows_compose() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate_string("${SET:-d}/${EMPTY:-d}/${UNSET:-d}/${EMPTY-d}", env) == "value/d/d/"
    assert (
        interpolate_string("$SET ${SET} ${UNSET} $$HOSTNAME ${SET:+alt}${EMPTY:+alt}", env)
        == "value value  $HOSTNAME alt"
    )
    assert interpolate_string("${EMPTY?m}", env) == ""
    with pytest.raises(MissingVariable, match="UNSET is missing a value: say why"):
        interpolate_string("${UNSET:?say why}", env)
    with pytest.raises(MissingVariable):
        interpolate_string("${EMPTY:?m}", env)
    with pytest.raises(ValueError, match="nested"):
        interpolate_string("${A:-${B}}", env)


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_spec(compose: dict, schema_validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in schema_validator.iter_errors(compose)]
    assert errors == []
    assert "version" not in compose, "the Compose specification has no version key"


def test_the_schema_rejects_a_misspelt_key(compose: dict, schema_validator) -> None:
    """The schema has teeth: an unknown service key is an error, so a typo cannot pass."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["heathcheck"] = broken["services"]["worker"].pop("healthcheck")
    assert not schema_validator.is_valid(broken)


@pytest.mark.parametrize("api_keys", [None, ""])
def test_missing_api_keys_stop_startup(api_keys: str | None) -> None:
    env = dict(REQUIRED_ENV)
    if api_keys is None:
        del env["PAINTS_UNDO_API_KEYS"]
    else:
        env["PAINTS_UNDO_API_KEYS"] = api_keys
    with pytest.raises(MissingVariable, match="PAINTS_UNDO_API_KEYS.*comma-separated API keys"):
        load_compose(env)


def test_missing_minio_password_stops_startup() -> None:
    env = {key: value for key, value in REQUIRED_ENV.items() if key != "MINIO_ROOT_PASSWORD"}
    with pytest.raises(MissingVariable, match="MINIO_ROOT_PASSWORD"):
        load_compose(env)


def test_only_the_documented_variables_are_required() -> None:
    """With the two required variables set and nothing else (no PORT, no model...), it loads."""
    assert load_compose(REQUIRED_ENV)["services"]["api"]["environment"]["PAINTS_UNDO_API_KEYS"] == "key-one,key-two"


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == LONG_RUNNING | {"minio-init"}


def test_long_running_services_have_healthchecks_and_restart(compose: dict) -> None:
    for name in LONG_RUNNING:
        service = compose["services"][name]
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") == "unless-stopped", name
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
    assert api["ports"] == ["8000:8000"]
    assert load_compose({**REQUIRED_ENV, "PORT": "9100"})["services"]["api"]["ports"] == ["9100:8000"]


@pytest.mark.parametrize(("service", "node"), [("worker", "render"), ("webhook-worker", "webhooks")])
def test_celery_health_checks_ping_their_own_node(compose: dict, service: str, node: str) -> None:
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    # `$$HOSTNAME` in the file: after interpolation the shell sees `$HOSTNAME`.
    assert shlex.split(test[1]) == [
        *("celery", "-A", "worker.cli_app", "inspect", "ping"),
        *("--destination", f"{node}@$HOSTNAME", "--timeout", "10"),
    ]


def test_worker_reserves_an_nvidia_gpu(compose: dict) -> None:
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["stop_grace_period"] == "60s"
    assert worker["shm_size"]
    assert "models:/models" in worker["volumes"]
    for name in ("api", "webhook-worker"):
        assert "deploy" not in compose["services"][name], f"{name} needs no GPU"


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


def test_python_services_wait_for_redis_and_the_bucket(compose: dict) -> None:
    for name in PYTHON_SERVICES:
        assert compose["services"][name]["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "minio-init": {"condition": "service_completed_successfully"},
        }, name


def test_python_services_share_one_image_and_environment(compose: dict) -> None:
    services = [compose["services"][name] for name in PYTHON_SERVICES]
    assert all(
        s["build"] == {"context": ".", "dockerfile": "Dockerfile.gpu", "args": {"WITH_XFORMERS": "0"}} for s in services
    )
    assert len({s["image"] for s in services}) == 1
    # Beyond the shared environment: the API's keys, and the render worker's cold shutdown on SIGTERM.
    own = {"PAINTS_UNDO_API_KEYS", "REMAP_SIGTERM"}
    shared = {key: value for key, value in services[0]["environment"].items() if key not in own}
    assert all({k: v for k, v in s["environment"].items() if k not in own} == shared for s in services[1:])
    assert compose["services"]["worker"]["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    assert shared["PAINTS_UNDO_REDIS_URL"] == "redis://redis:6379/0"
    assert shared["PAINTS_UNDO_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert shared["PAINTS_UNDO_S3_PUBLIC_ENDPOINT_URL"] == "http://localhost:9000"
    assert shared["PAINTS_UNDO_MODEL"] == "lllyasviel"
    assert shared["AWS_DEFAULT_REGION"] == "us-east-1"
    minio = compose["services"]["minio"]["environment"]
    assert shared["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert shared["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"] == REQUIRED_ENV["MINIO_ROOT_PASSWORD"]
    # Only the API gets the API keys.
    assert services[0]["environment"]["PAINTS_UNDO_API_KEYS"] == REQUIRED_ENV["PAINTS_UNDO_API_KEYS"]
    assert all("PAINTS_UNDO_API_KEYS" not in s["environment"] for s in services[1:])


def test_paints_undo_variables_are_settings_fields(compose: dict) -> None:
    known = {"PAINTS_UNDO_" + name.upper() for name in ServiceSettings.model_fields} | {"PAINTS_UNDO_API_KEYS"}
    used = {
        key
        for service in compose["services"].values()
        for key in (service.get("environment") or {})
        if key.startswith("PAINTS_UNDO_")
    }
    assert used and used <= known, sorted(used - known)


def test_service_commands_are_the_entry_points(compose: dict) -> None:
    for name, command in COMMANDS.items():
        assert compose["services"][name]["command"] == command, name


def _module_file(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@pytest.mark.parametrize("module", ["api.main", "worker.render_worker", "worker.webhook_worker", "worker.cli_app"])
def test_entry_point_modules_exist(module: str) -> None:
    assert _module_file(module).is_file(), f"{module} is run by docker-compose.yml but missing"


def test_celery_health_checks_find_the_app() -> None:
    """`celery -A worker.cli_app` needs a Celery instance there (named `app` or `celery`)."""
    assert isinstance(find_app("worker.cli_app"), Celery)


# --- Dockerfile.gpu --------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, `\\` continuations joined and comment lines dropped (also
    inside a continuation, as Docker does)."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def _assignments(args: str) -> dict[str, str]:
    """`A=1 B="x y"` (ENV, ARG) as a dict; an ARG without a default maps to ""."""
    return dict((item.split("=", 1) + [""])[:2] for item in shlex.split(args))


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def build_args(dockerfile) -> dict[str, str]:
    return {key: value for kind, args in dockerfile if kind == "ARG" for key, value in _assignments(args).items()}


@pytest.fixture(scope="module")
def env(dockerfile) -> dict[str, str]:
    return {key: value for kind, args in dockerfile if kind == "ENV" for key, value in _assignments(args).items()}


def _expand(text: str, args: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def test_dockerfile_parser() -> None:
    text = '# c\nFROM a AS b\n\nRUN x \\\n  # inside\n  && y\nENV A=1 \\\n    B="two words"\n'
    assert dockerfile_instructions(text) == [("FROM", "a AS b"), ("RUN", "x && y"), ("ENV", 'A=1 B="two words"')]
    assert _assignments('A=1 B="two words" C') == {"A": "1", "B": "two words", "C": ""}


def test_base_image_is_a_cuda_runtime_image_matching_the_torch_build(dockerfile, build_args) -> None:
    froms = [args for kind, args in dockerfile if kind == "FROM"]
    assert len(froms) == 1
    image = _expand(froms[0].split()[0], build_args)
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)(\.\d+)?-(cudnn\d*-)?runtime-ubuntu\d+\.\d+", image)
    assert match, f"{image} is not an nvidia/cuda runtime image"
    assert build_args["TORCH_CUDA"] == f"cu{match[1]}{match[2]}", "the torch build and the base image disagree"


def test_torch_is_the_pinned_cuda_build(dockerfile, build_args) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", build_args["TORCH_VERSION"])
    runs = [_expand(args, build_args) for kind, args in dockerfile if kind == "RUN"]
    version, cuda = build_args["TORCH_VERSION"], build_args["TORCH_CUDA"]
    assert any(
        "pip install" in run
        and f'"torch=={version}"' in run
        and f'--index-url "https://download.pytorch.org/whl/{cuda}"' in run
        for run in runs
    ), "torch must come from the PyTorch CUDA index at the pinned version"
    # The same torch as the Makefile installs for tests.
    assert f'"torch=={version}"' in (ROOT / "Makefile").read_text()


def test_dependencies_are_installed_before_the_sources_are_copied(dockerfile) -> None:
    steps = [f"{kind} {args}" for kind, args in dockerfile]
    first_source = next(i for i, step in enumerate(steps) if re.match(r"COPY (model_core|api|worker)\b", step))
    dependencies = next(i for i, step in enumerate(steps) if step.startswith("RUN") and '"$target"' in step)
    assert steps.index("COPY pyproject.toml ./") < dependencies < first_source


def test_xformers_is_optional(dockerfile, build_args) -> None:
    assert build_args["WITH_XFORMERS"] == "0"
    assert any(kind == "RUN" and "WITH_XFORMERS" in args and ".[xformers]" in args for kind, args in dockerfile)


def test_runs_as_a_non_root_user_owning_models_and_app(dockerfile, env) -> None:
    kinds = [kind for kind, _ in dockerfile]
    users = [args for kind, args in dockerfile[: kinds.index("CMD")] if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0] in ("10001", "app")
    runs = " ".join(args for kind, args in dockerfile if kind == "RUN")
    assert "--uid 10001" in runs
    assert re.search(r"chown \S+ /app /models\b", runs)
    assert env["HF_HOME"] == "/models/huggingface"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_default_command_is_the_render_worker(dockerfile) -> None:
    cmds = [args for kind, args in dockerfile if kind == "CMD"]
    assert [json.loads(cmd) for cmd in cmds] == [COMMANDS["worker"]]
    assert ("EXPOSE", "8000") in dockerfile


def test_no_secrets_in_the_image(dockerfile) -> None:
    """Keys and passwords come from the environment at run time, never from ENV or ARG."""
    secret = re.compile(r"SECRET|PASSWORD|KEY|TOKEN|CREDENTIAL", re.IGNORECASE)
    for kind, args in dockerfile:
        if kind in ("ENV", "ARG"):
            assert not secret.search(args), (kind, args)


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "data", ".env"} <= patterns
    # The files the Dockerfile copies are not ignored.
    assert not patterns & {"pyproject.toml", "README.md", "model_core", "api", "worker"}
