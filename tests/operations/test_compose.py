"""docker-compose.yml, read as Docker would (Docker does not run on the test machines): every app service
runs a command that exists with flags it accepts, has the configuration it needs, restarts, and is
health-checked by a snippet that compiles and asks the port the service listens on."""

import ast
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = ["web", "relay", "forwarder"]
APP_SERVICES = ["migrate", *LONG_RUNNING]
# Read with a default that works on one machine only (a local SQLite file, Redis and Kafka on loopback, the
# insecure key): in containers each must come from the environment.
PER_MACHINE_DEFAULTS = {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "DJANGO_SECRET_KEY"}


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def parsed(command: list[str]):
    """The options `manage.py` would run the command with; fails as manage.py would on an unknown flag."""
    assert command[:2] == ["python", "manage.py"], command
    name, args = command[2], command[3:]
    commands = get_commands()
    assert name in commands, f"manage.py has no command {name!r}"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    try:
        return name, parser.parse_args(args)
    except SystemExit:  # argparse's way to refuse
        pytest.fail(f"manage.py {name} refuses {shlex.join(args)}")


def dockerfile_cmd() -> list[str]:
    (line,) = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


def command_of(service: dict) -> list[str]:
    return service.get("command") or dockerfile_cmd()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_app_service_runs_a_manage_py_command_that_accepts_its_flags(services, name):
    parsed(command_of(services[name]))


def test_the_dockerfile_command_runs_and_listens_on_every_interface():
    command, options = parsed(dockerfile_cmd())
    assert (command, options.host) == ("serve", "0.0.0.0")


def test_the_web_service_listens_on_every_interface_on_the_port_it_publishes(services):
    command, options = parsed(command_of(services["web"]))

    assert (command, options.host) == ("serve", "0.0.0.0")
    published = [int(mapping.rsplit(":", 1)[1]) for mapping in services["web"]["ports"]]
    assert published == [options.port]


def names_read_without_default() -> set[str]:
    """`os.environ["X"]` and `os.environ.get("X")` in the app's code, unless the module tests `"X" in os.environ`."""
    names = set()
    for path in [*ROOT.glob("chats/**/*.py"), *ROOT.glob("chatproject/*.py"), *ROOT.glob("messaging_domain/*.py")]:
        tree = ast.parse(path.read_text())
        read, guarded = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                read.add(ast.unparse(node.slice))
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in {"os.environ.get", "os.getenv"}:
                if len(node.args) == 1 and not node.keywords:
                    read.add(ast.unparse(node.args[0]))
            elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In) for op in node.ops):
                if ast.unparse(node.comparators[0]) == "os.environ":
                    guarded.add(ast.unparse(node.left))
        names |= {ast.literal_eval(name) for name in read - guarded if name.startswith(("'", '"'))}
    return names


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_app_service_sets_what_the_app_reads_without_a_usable_default(services, name):
    needed = names_read_without_default() | PER_MACHINE_DEFAULTS
    assert "DJANGO_SECRET_KEY" in needed  # the scan finds what it should

    environment = services[name].get("environment", {})
    missing = sorted(needed - set(environment))
    assert missing == [], missing
    assert all(str(environment[variable]).strip() for variable in needed)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_restarts_unless_stopped(services, name):
    assert services[name].get("restart") == "unless-stopped"


def healthcheck_snippet(service: dict) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and len(test) == 4, test
    return test[3]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck_in_python_that_compiles(services, name):
    snippet = healthcheck_snippet(services[name])

    compile(snippet, f"{name} healthcheck", "exec")
    assert "urlopen" in snippet  # urlopen raises on a refused connection and on a 4xx / 5xx answer


@pytest.mark.parametrize(
    "name, path, port_option",
    [("web", "/api/health/", "port"), ("relay", "/metrics", "metrics_port"), ("forwarder", "/metrics", "metrics_port")],
)
def test_every_healthcheck_asks_the_port_its_service_serves(services, name, path, port_option):
    _, options = parsed(command_of(services[name]))
    (url,) = re.findall(r"'(http://[^']+)'", healthcheck_snippet(services[name]))

    assert url == f"http://127.0.0.1:{getattr(options, port_option)}{path}"
