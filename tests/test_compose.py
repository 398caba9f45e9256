"""The docker-compose stack: what a user of ``docker compose up`` relies on, checked without an engine.

The file is checked twice: against the Compose Specification's JSON schema (the copy shipped in
the test dependency check-jsonschema), and by a Compose implementation, ``docker compose config``
(Docker's plugin, or Debian's docker-compose, installed with apt-get when missing), which merges
the YAML anchors and resolves the variables the way ``docker compose up`` does. Then the stack's
promises: Airflow's own service layout, pinned images, the project installed by
``docker/Dockerfile`` with the pinned constraints (its install rehearsed in a virtualenv), the
repo's folders mounted where the image installed them, the embedded engine by default with the
lake on a named volume, every setting passed through from the environment, and no AWS credential
baked in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import fields
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from runtime_events.settings import PREFIX, Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / "docker" / "Dockerfile.dockerignore"

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
ONE_OFF_SERVICES = ("airflow-init", "airflow-cli")
SETTING_VARIABLES = [f"AIRFLOW_VAR_{(PREFIX + f.name).upper()}" for f in fields(Settings)]
AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def constraint_pin(package: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def airflow_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if name.startswith("airflow-")}


# -- the format ------------------------------------------------------------------------------------
def compose_schema_errors(document: dict) -> list[str]:
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification_schema(compose):
    assert compose_schema_errors(compose) == []
    # The schema is strict enough to catch a misspelt key: the check above can fail.
    broken = json.loads(json.dumps(compose))
    broken["services"]["airflow-scheduler"]["healthcheck"]["intervall"] = "30s"
    broken["services"]["postgres"]["depends_on"] = {"airflow-init": {"condition": "when_ready"}}
    assert len(compose_schema_errors(broken)) >= 2


@pytest.fixture(scope="module")
def docker_compose() -> list[str]:
    """A Compose implementation's command line: Docker's compose plugin when the machine has it,
    else Debian's docker-compose, installed with apt-get when this runs as root."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if not shutil.which("docker-compose") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-compose"]
        if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, capture_output=True, timeout=600)
    if not shutil.which("docker-compose"):
        pytest.skip("no Compose implementation: neither `docker compose` nor Debian's docker-compose "
                    "(apt-get install docker-compose) could be found or installed")
    return ["docker-compose"]


def compose_config(docker_compose: list[str], tmp_path: Path, **variables: str) -> dict:
    """``docker compose config``: the file as Compose resolves it, with only ``variables`` set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "AWS_", "RUNTIME_EVENTS", "COMPOSE_", "DOCKER_"))}
    env |= {"HOME": str(tmp_path), **variables}
    done = subprocess.run([*docker_compose, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE),
                           "config"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_accepts_the_file_and_passes_settings_through(docker_compose, tmp_path):
    unset = compose_config(docker_compose, tmp_path)
    assert set(unset["services"]) == {"postgres", *AIRFLOW_SERVICES, *ONE_OFF_SERVICES}
    for name, service in airflow_services(unset).items():
        environment = service.get("environment") or {}
        # Unset in the shell, unset in the container: the embedded engine and the other defaults
        # apply, and an Airflow Variable set in the UI is not shadowed by an empty value.
        for variable in [*SETTING_VARIABLES, *AWS_CREDENTIALS]:
            assert environment.get(variable) is None, (name, variable)
        assert service["user"] in ("50000:0", "0:0"), name
        assert f"{tmp_path}/.aws:/home/airflow/.aws:ro" in [_volume_text(v) for v in service["volumes"]], name

    athena = compose_config(
        docker_compose, tmp_path, AIRFLOW_UID="1234",
        AIRFLOW_VAR_RUNTIME_EVENTS_ENGINE="athena", AWS_PROFILE="security-data",
        AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION="s3://bucket/lightspin/k8s_runtime_events/",
    )
    for name, service in airflow_services(athena).items():
        environment = service["environment"]
        assert environment["AIRFLOW_VAR_RUNTIME_EVENTS_ENGINE"] == "athena", name
        assert environment["AWS_PROFILE"] == "security-data", name
        assert environment["AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION"].startswith("s3://bucket/"), name
        assert service["user"] == ("0:0" if name == "airflow-init" else "1234:0"), name
    init_script = " ".join(athena["services"]["airflow-init"]["command"])
    assert 'chown -R "1234:0"' in init_script


def _volume_text(volume) -> str:
    if isinstance(volume, str):
        return volume.removesuffix(":rw")
    mode = ":ro" if volume.get("read_only") else ""
    return f"{volume['source']}:{volume['target']}{mode}"


# -- the stack -------------------------------------------------------------------------------------
def test_stack_has_the_services_of_airflows_compose_file(compose):
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    for name, command in AIRFLOW_SERVICES.items():
        service = services[name]
        assert service["command"] == command, name
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "always", name
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name
    init = services["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["user"] == "0:0"
    # Tasks reach the API server that the execution API URL names.
    environment = services["airflow-scheduler"]["environment"]
    url = re.fullmatch(r"http://([a-z-]+):(\d+)/execution/", environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url and services[url.group(1)]["command"] == "api-server"
    assert any(port.endswith(f":{url.group(2)}") for port in services[url.group(1)]["ports"])
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # One airflow.cfg (JWT secret, Fernet key) shared by every container, on a volume.
    config_dir = str(Path(environment["AIRFLOW_CONFIG"]).parent)
    for name, service in airflow_services(compose).items():
        assert service["environment"]["AIRFLOW_CONFIG"] == environment["AIRFLOW_CONFIG"], name
        assert any(v.split(":")[1] == config_dir and v.split(":")[0] in compose["volumes"]
                   for v in service["volumes"]), name


def test_images_are_pinned_and_match_the_projects_airflow(compose, dockerfile):
    airflow = constraint_pin("apache-airflow")
    python = re.search(r">=(3\.\d+)", tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
                       ["requires-python"]).group(1)
    assert [args for keyword, args in dockerfile if keyword == "FROM"] == [f"apache/airflow:{airflow}-python{python}"]
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
        if name.startswith("airflow-"):
            assert service["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}, name
            assert image.endswith(f":{airflow}-python{python}"), name


def test_dockerfile_installs_the_project_with_its_constraints(dockerfile):
    copies = [args.split() for keyword, args in dockerfile if keyword == "COPY"]
    sources = {source: parts[-1] for parts in copies for source in parts[1:-1] if not source.startswith("--")}
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repo"
    home = sources["pyproject.toml"].rstrip("/")
    assert sources["constraints.txt"].rstrip("/") == home
    install = " ".join(args for keyword, args in dockerfile if keyword == "RUN" and "pip install" in args)
    assert f"--constraint {home}/constraints.txt" in install
    assert f'--editable "{home}[embedded,deferrable]"' in install  # the image runs the embedded engine too
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install  # pip may never change the image's Airflow
    # The build context is only what the image copies: never .venv, the lake or credentials.
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "**"
    assert {p.removeprefix("!") for p in patterns if p.startswith("!")} == set(sources)


def test_repo_folders_are_mounted_where_the_image_installed_them(compose, dockerfile):
    copies = [args.split() for keyword, args in dockerfile if keyword == "COPY"]
    installed = {parts[-2]: parts[-1].rstrip("/") for parts in copies if parts[-2] in ("dags", "plugins", "include")}
    home = str(Path(installed["plugins"]).parent)
    for name, service in airflow_services(compose).items():
        mounts = dict(v.split(":")[:2] for v in service["volumes"])
        for folder in ("dags", "plugins", "include"):
            assert mounts.get(f"./{folder}") == installed[folder] == f"{home}/{folder}", (name, folder)
        # The package finds include/sql beside plugins/ (a checkout's layout) and keeps its lake in
        # <home>/.lake, which is a named volume that outlives the containers.
        lake = next(source for source, target in mounts.items() if target == f"{home}/.lake")
        assert lake in compose["volumes"], name
        assert service["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == installed["dags"], name


@pytest.mark.slow
def test_the_images_install_takes_the_mounted_folders(compose, dockerfile, tmp_path):
    """docker/Dockerfile's install rehearsed without Docker: its COPY lines into a folder that
    stands for the image's root, its editable install with the pinned constraints (uv standing in
    for pip), and then, as in a container, the package must read its SQL from the mounted
    include/, keep its lake in the named volume, and the DAGs folder must hold the DAG."""
    from test_packaging import fresh_venv, run

    image = tmp_path / "image"
    for parts in (args.split() for keyword, args in dockerfile if keyword == "COPY"):
        target = image / parts[-1].lstrip("/")
        for source in (p for p in parts[1:-1] if not p.startswith("--")):
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, target / source)
    install = next(args for keyword, args in dockerfile if keyword == "RUN" and "pip install" in args)
    home, extras = re.search(r'--editable "?([^"\s\[]+)(\[[^\]]*\])?"?', install).groups()
    venv = fresh_venv(tmp_path / "venv", f"apache-airflow=={constraint_pin('apache-airflow')}",
                      "--editable", f"{image / home.lstrip('/')}{extras or ''}")

    scheduler = compose["services"]["airflow-scheduler"]
    lake = next(v.split(":")[1] for v in scheduler["volumes"] if v.startswith("runtime-events-lake:"))
    probe = """
import json
from airflow.dag_processing.dagbag import DagBag
from runtime_events.paths import SQL_DIR
from runtime_events.settings import Settings
settings = Settings.load()
bag = DagBag()
print(json.dumps({"sql_dir": str(SQL_DIR), "raw": settings.raw_location, "curated": settings.curated_location,
                  "dags": sorted(bag.dags), "errors": list(bag.import_errors),
                  "searchpath": bag.dags["runtime_events_daily"].template_searchpath}))
"""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(image / scheduler["environment"]["AIRFLOW__CORE__DAGS_FOLDER"].lstrip("/"))}
    found = json.loads(run(["python", "-c", probe], env, tmp_path).strip().splitlines()[-1])
    root = image / home.lstrip("/")
    assert found["sql_dir"] == str(root / "include" / "sql")
    assert found["searchpath"] == [found["sql_dir"]]
    assert found["raw"].startswith(str(image / lake.lstrip("/")) + "/")
    assert found["curated"].startswith(str(image / lake.lstrip("/")) + "/")
    assert (found["dags"], found["errors"]) == (["runtime_events_daily"], [])


def test_every_setting_passes_through_and_none_is_fixed(compose):
    for name, service in airflow_services(compose).items():
        environment = service["environment"]
        for variable in SETTING_VARIABLES:
            assert variable in environment, f"{name} does not pass {variable} through"
            assert environment[variable] is None, f"{name} fixes {variable}"
        assert not [k for k in environment if k.startswith("AIRFLOW_VAR_") and k not in SETTING_VARIABLES]


def test_aws_credentials_are_never_baked_in(compose):
    for name, service in airflow_services(compose).items():
        environment = service["environment"]
        for variable in AWS_CREDENTIALS:
            assert environment.get(variable, None) is None, f"{name} sets {variable}"
        aws_mounts = [v for v in service["volumes"] if "/.aws" in v]
        assert aws_mounts == ["~/.aws:/home/airflow/.aws:ro"], name
        assert environment["AWS_SHARED_CREDENTIALS_FILE"].startswith("/home/airflow/.aws/")
    assert not re.search(r"AWS_|\.aws", DOCKERFILE.read_text())


def test_airflow_cli_runs_the_program_it_is_given(compose, tmp_path):
    """``docker compose run --rm airflow-cli runtime-events generate ...`` runs runtime-events:
    the entrypoint hands its arguments to ``exec``, past the image's airflow-only entrypoint."""
    cli = compose["services"]["airflow-cli"]
    entrypoint = cli["entrypoint"]
    assert entrypoint[:4] == ["/usr/bin/dumb-init", "--", "/entrypoint", "bash"]
    # Compose turns $$ into $; run the same bash command line here.
    shell_args = [arg.replace("$$", "$") for arg in entrypoint[4:]]
    done = subprocess.run(["bash", *shell_args, "printf", "%s|", "runtime-events", "a b"],
                          capture_output=True, text=True, check=True)
    assert done.stdout == "runtime-events|a b|"
    assert cli["profiles"] and "airflow-init" not in cli["depends_on"]


def test_readme_commands_name_services_of_the_stack(compose):
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"docker compose (?:run --rm|exec|logs(?: -f)?) ([a-z-]+)", readme))
    assert "airflow-cli" in named
    assert named <= set(compose["services"]), named - set(compose["services"])
    assert "docker compose run --rm airflow-cli runtime-events generate" in readme
