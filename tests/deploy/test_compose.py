"""docker-compose.yml, the split-host files, the Caddyfile and .env.example, checked without a
Docker engine: the compose-spec JSON schema (shipped by check-jsonschema, Apache-2.0) for
structure, and the rules the schema cannot see for what makes the stack start correctly."""

import copy
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from polaris.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SPLIT = sorted((ROOT / "deploy" / "split").glob("*.yml"))
ALL_COMPOSE = [COMPOSE, *SPLIT]
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
CADDY = [ROOT / "deploy" / "Caddyfile", *sorted((ROOT / "deploy" / "caddy").glob("*.caddy"))]

# Variables that are not Settings: read by compose, Caddy or the postgres image, each
# documented in .env.example.
COMPOSE_ONLY = {
    "POSTGRES_PASSWORD",
    "POSTGRES_USER",
    "POSTGRES_DB",
    "OCPP_HOST",
    "ACME_EMAIL",
    "POLARIS_IMAGE_TAG",
    "WEB_UPSTREAM",
    "OCPP_UPSTREAM",
    "POSTGRES_BIND_ADDRESS",
    "OCPP_API_BIND_ADDRESS",
}
SECRETISH = re.compile(r"PASSWORD|SECRET|_KEY$|KEY_BASE64")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def load(path):
    return yaml.safe_load(path.read_text())


def compose_schema():
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)


def env_example_names():
    """Variable -> whether it is assigned (NAME=...) or only shown commented (# NAME=...)."""
    names = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=", line)
        if m:
            names[m[2]] = m[1] is None
    return names


def our_services(doc):
    """Services running the Polaris image."""
    return {n: s for n, s in doc["services"].items() if "polaris-express" in str(s.get("image", ""))}


@pytest.mark.parametrize("path", ALL_COMPOSE, ids=lambda p: p.name)
def test_compose_files_match_the_compose_spec(path):
    jsonschema.Draft202012Validator(compose_schema()).validate(load(path))


def test_the_schema_rejects_a_broken_file():
    """The validator really bites: a misspelled depends_on condition is refused."""
    doc = copy.deepcopy(load(COMPOSE))
    doc["services"]["web"]["depends_on"]["migrate"]["condition"] = "service_completed"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(compose_schema()).validate(doc)
    doc = copy.deepcopy(load(COMPOSE))
    doc["services"]["web"]["helthcheck"] = doc["services"]["web"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(compose_schema()).validate(doc)


def test_single_host_stack_has_every_role():
    services = load(COMPOSE)["services"]
    assert set(services) == {"postgres", "migrate", "ocpp", "web", "sync", "caddy"}
    commands = {n: s["command"][0] for n, s in our_services(load(COMPOSE)).items()}
    assert commands == {"migrate": "migrate", "ocpp": "ocpp", "web": "web", "sync": "sync"}


@pytest.mark.parametrize("path", ALL_COMPOSE, ids=lambda p: p.name)
def test_depends_on_targets_exist(path):
    services = load(path)["services"]
    for name, svc in services.items():
        for target in svc.get("depends_on", {}):
            assert target in services, f"{path.name}: {name} depends on missing service {target}"


def test_migrate_is_one_shot_and_everything_waits_for_it():
    services = load(COMPOSE)["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("ocpp", "web", "sync"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["restart"] == "unless-stopped"
    web = load(ROOT / "deploy" / "split" / "web.yml")["services"]
    assert web["migrate"]["restart"] == "no"
    assert web["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("path", ALL_COMPOSE, ids=lambda p: p.name)
def test_long_running_services_have_healthchecks(path):
    for name, svc in load(path)["services"].items():
        if name == "migrate":
            continue
        test = svc.get("healthcheck", {}).get("test")
        if name == "caddy" and path != COMPOSE:
            continue  # the split files keep Caddy minimal; the single-host file checks it
        assert test, f"{path.name}: {name} has no healthcheck"
        if name == "postgres":
            assert "pg_isready" in " ".join(test)
        if name in ("ocpp", "web", "sync"):
            assert test == ["CMD", "python", "-m", "polaris.ops.healthcheck", name]


def test_postgres_keeps_its_data_in_a_volume():
    doc = load(COMPOSE)
    volumes = doc["services"]["postgres"]["volumes"]
    assert any(v.split(":")[0] in doc["volumes"] for v in volumes)
    assert "ports" not in doc["services"]["postgres"], "single host: Postgres is not published"


@pytest.mark.parametrize("path", ALL_COMPOSE, ids=lambda p: p.name)
def test_environment_names_are_settings_or_documented(path):
    doc = load(path)
    documented = env_example_names()
    for name, svc in our_services(doc).items():
        unknown = set(svc.get("environment", {})) - set(Settings.model_fields)
        assert not unknown, f"{path.name}: {name} sets {unknown}, which no Settings field reads"
    used = set(INTERPOLATION.findall(path.read_text()))
    assert used <= set(Settings.model_fields) | COMPOSE_ONLY, used - set(Settings.model_fields) - COMPOSE_ONLY
    assert used <= set(documented), f"not in deploy/.env.example: {used - set(documented)}"


def test_env_example_lists_every_setting_with_a_comment():
    names = env_example_names()
    assert set(Settings.model_fields) <= set(names), set(Settings.model_fields) - set(names)
    assert set(names) <= set(Settings.model_fields) | COMPOSE_ONLY, set(names) - set(Settings.model_fields)
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=", line)
        if not m:
            continue
        # the comment above says what it is (possibly above a group of commented defaults)
        j = i - 1
        while j >= 0 and re.match(r"^#\s*[A-Z][A-Z0-9_]*=", lines[j]):
            j -= 1
        assert j >= 0 and lines[j].startswith("#") and len(lines[j]) > 10, f"{m[2]} has no comment"


def test_env_example_holds_no_secret_values():
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m and SECRETISH.search(m[1]):
            assert m[2] == "", f"{m[1]} must be empty in the example (polaris secrets fills it)"


def test_env_example_parses_as_settings():
    """Copied as-is it loads (types are right); only the secrets are missing."""
    s = Settings(_env_file=ENV_EXAMPLE)
    assert s.CUSTOMER_BASE_URL == "https://polaris.example.com" and s.COOKIE_DOMAIN == ".example.com"
    assert s.AUTH_SECRET is not None and s.AUTH_SECRET.get_secret_value() == ""


@pytest.mark.parametrize("path", ALL_COMPOSE, ids=lambda p: p.name)
def test_no_secret_is_hard_coded(path):
    text = path.read_text()
    assert not re.search(r"[0-9a-f]{32,}", text), "a long hex string looks like a secret"
    for svc in load(path)["services"].values():
        env = svc.get("environment", {})
        for key, value in env.items():
            if SECRETISH.search(key):
                assert str(value).startswith("${"), f"{key} must come from .env, not the compose file"
        assert "DATABASE_URL" not in env or "${" in env["DATABASE_URL"]


def test_caddy_gets_every_variable_its_sites_use():
    caddy = load(COMPOSE)["services"]["caddy"]
    used = set()
    for path in CADDY:
        used |= set(re.findall(r"\{\$([A-Z_][A-Z0-9_]*)", path.read_text()))
    assert used == set(caddy["environment"])
    documented = env_example_names()
    assert used <= set(documented)
    mounts = " ".join(caddy["volumes"])
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile" in mounts and "./deploy/caddy:/etc/caddy/sites" in mounts
    assert "import /etc/caddy/sites/*.caddy" in CADDY[0].read_text()


def test_caddy_serves_every_hostname_and_both_charger_paths():
    web = (ROOT / "deploy" / "caddy" / "web.caddy").read_text()
    ocpp = (ROOT / "deploy" / "caddy" / "ocpp.caddy").read_text()
    assert "{$CUSTOMER_BASE_URL}, {$ADMIN_BASE_URL} {" in web
    assert "{$OCPP_HOST} {" in ocpp
    assert "/ocpp/*" in ocpp and "/steve/websocket/CentralSystemService/*" in ocpp
    assert "stream_close_delay" in ocpp
    assert "flush_interval -1" in web  # SSE
    for text in (web, ocpp):
        assert text.count("{") == text.count("}")


@pytest.mark.parametrize("path", SPLIT, ids=lambda p: p.name)
def test_split_files_mount_paths_that_exist(path):
    """Relative paths in a split file resolve from deploy/split/ (compose's project dir)."""
    for svc in load(path)["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).resolve().exists(), f"{path.name}: {source}"
        build = svc.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file()
        if "env_file" in svc:
            assert (path.parent / svc["env_file"]).resolve() == ROOT / ".env"


def test_split_hosts_cover_every_role_once():
    roles = []
    for path in SPLIT:
        roles += list(load(path)["services"])
    assert sorted(r for r in roles if r != "caddy") == ["migrate", "ocpp", "postgres", "sync", "web"]


@pytest.mark.parametrize("path", ALL_COMPOSE, ids=lambda p: p.name)
def test_service_commands_are_valid_polaris_command_lines(path):
    """What each container runs parses with the real `polaris` parser (catches flag drift)."""
    from polaris.cli.main import build_parser

    parser = build_parser()
    for name, svc in our_services(load(path)).items():
        args = parser.parse_args(svc["command"])
        assert args.command == svc["command"][0], name
        if name in ("ocpp", "web"):
            assert args.host == "0.0.0.0", f"{name} must listen beyond the container's loopback"
        if name == "ocpp":
            assert args.api_host == "0.0.0.0", "the web container calls the command API over the network"


@pytest.mark.parametrize("path", [p for p in ALL_COMPOSE if "caddy" in load(p)["services"]], ids=lambda p: p.name)
def test_caddy_has_the_address_the_processes_trust(path):
    """TRUSTED_PROXIES' default is Caddy's fixed address on the project's network, and no other
    container can be given that address (it is outside the dynamic range)."""
    import ipaddress

    from polaris.config import COMPOSE_CADDY_ADDRESS

    doc = load(path)
    address = doc["services"]["caddy"]["networks"]["default"]["ipv4_address"]
    assert address == COMPOSE_CADDY_ADDRESS == Settings.model_fields["TRUSTED_PROXIES"].default
    (pool,) = doc["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(pool["subnet"])
    assert ipaddress.ip_address(address) not in ipaddress.ip_network(pool["ip_range"])
