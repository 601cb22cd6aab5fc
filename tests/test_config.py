"""Config: every problem named at once, with what the variable is for; secrets never echoed."""

import pytest

from polaris.config import ConfigError, Settings, cookie_domain_covers, load_settings

GOOD = {
    "DATABASE_URL": "postgresql://u:hunter2hunter2@db:5432/polaris",
    "AUTH_SECRET": "s" * 64,
    "COOKIE_DOMAIN": ".example.com",
    "ADMIN_BASE_URL": "https://manage.example.com",
    "CUSTOMER_BASE_URL": "https://polaris.example.com",
    "STEVE_PREAUTH_HMAC_KEY": "p" * 64,
    "STEVE_API_KEY": "k" * 48,
    "LAGO_API_KEY": "lago-key",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def make(**overrides) -> Settings:
    values = {**GOOD, **overrides}
    return Settings(_env_file=None, **{k: v for k, v in values.items() if v is not None})


def test_complete_production_settings_pass_every_check():
    s = make()
    assert s.require("database", "web", "ocpp", "sync") is s
    assert not s.local_mode


def test_every_problem_is_reported_at_once():
    s = make(AUTH_SECRET=None, COOKIE_DOMAIN=".example.com", ADMIN_BASE_URL="https://manage.other.org",
             STEVE_API_KEY=None)
    with pytest.raises(ConfigError) as exc:
        s.require("web")
    text = str(exc.value)
    assert "AUTH_SECRET is not set" in text
    assert "COOKIE_DOMAIN .example.com does not cover ADMIN_BASE_URL host manage.other.org" in text
    assert "STEVE_API_KEY is not set" in text
    assert len(exc.value.problems) == 3


def test_a_short_secret_the_original_accepted_is_a_warning_not_a_stop():
    s = make(AUTH_SECRET="your_secret_key_here", CF_EMAIL_WORKER_SECRET="0123456789abcdef")
    assert s.require("database", "web", "ocpp", "sync") is s
    weak = s.weak_secrets()
    assert len(weak) == 2 and weak[0].startswith("AUTH_SECRET is 20 characters, shorter than the 32 recommended")
    assert "your_secret_key_here" not in " ".join(weak)
    assert make().weak_secrets() == []


def test_missing_variable_says_what_it_is_for():
    with pytest.raises(ConfigError) as exc:
        make(LAGO_API_KEY=None).require("sync")
    assert "LAGO_API_KEY is not set: it is Lago API key" in str(exc.value)


def test_production_needs_cookie_domain_local_mode_does_not():
    with pytest.raises(ConfigError, match="COOKIE_DOMAIN is not set"):
        make(COOKIE_DOMAIN=None).require("web")
    local = make(COOKIE_DOMAIN=None, ADMIN_BASE_URL="http://admin.localhost:8000",
                 CUSTOMER_BASE_URL="http://localhost:8000")
    assert local.local_mode
    local.require("web")


def test_secrets_never_appear_in_errors_or_repr():
    secret = "tooShortButSecret"
    s = make(AUTH_SECRET=secret, STEVE_API_KEY=None)
    with pytest.raises(ConfigError) as exc:
        s.require("web")
    assert secret not in str(exc.value)
    assert s.weak_secrets() and secret not in " ".join(s.weak_secrets())
    assert secret not in repr(s)
    assert "hunter2" not in repr(s)


def test_bad_types_name_the_variable(monkeypatch):
    monkeypatch.setenv("WEB_PORT", "eighty")
    monkeypatch.setenv("OCPP_UNKNOWN_CHARGERS", "maybe")
    with pytest.raises(ConfigError) as exc:
        load_settings(env_file=None)
    text = str(exc.value)
    assert "WEB_PORT is invalid" in text and "HTTP port" in text
    assert "OCPP_UNKNOWN_CHARGERS is invalid" in text


def test_env_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("OCPP_PORT=9090\nWEB_PORT=9000\nADMIN_OIDC_ISSUER=\n")
    monkeypatch.setenv("WEB_PORT", "9100")
    s = load_settings(env_file=env)
    assert s.OCPP_PORT == 9090
    assert s.WEB_PORT == 9100
    assert s.ADMIN_OIDC_ISSUER is None  # empty means unset


def test_database_url_scheme_is_checked():
    with pytest.raises(ConfigError, match="must start with postgresql://"):
        make(DATABASE_URL="mysql://x@y/z").require("database")
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        make(DATABASE_URL=None).require("database")


def test_oidc_half_configured_is_an_error():
    with pytest.raises(ConfigError) as exc:
        make(ADMIN_OIDC_ISSUER="https://id.example.com").require("web")
    assert "ADMIN_OIDC_CLIENT_ID is not set" in str(exc.value)
    assert "ADMIN_OIDC_CLIENT_SECRET is not set" in str(exc.value)


def test_optional_integrations_off_are_listed():
    off = make().disabled_features()
    assert any("OIDC" in line for line in off)
    assert any("push" in line for line in off)
    assert any("outbox" in line for line in off)
    assert make(APNS_KEY_ID="k", APNS_TEAM_ID="t", APNS_KEY_BASE64="eA==", APNS_TOPIC="app").apns_enabled


def test_metervalue_key_falls_back_to_preauth_key():
    s = make()
    assert s.metervalue_hmac_key.get_secret_value() == "p" * 64


def test_tls_cert_and_key_go_together(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="must be set together"):
        make(OCPP_TLS_CERT=str(cert)).require("ocpp")


@pytest.mark.parametrize(
    ("domain", "host", "ok"),
    [
        (".example.com", "manage.example.com", True),
        ("example.com", "example.com", True),
        (".example.com", "example.com", True),
        (".example.com", "manage.other.org", False),
        (".example.com", "badexample.com", False),
    ],
)
def test_cookie_domain_match(domain, host, ok):
    assert cookie_domain_covers(domain, host) is ok


def test_the_original_names_are_read_and_unused_ones_named(monkeypatch, tmp_path):
    from polaris.config import original_names_in_use

    env = tmp_path / "original.env"
    env.write_text("PORT=9000\nDEBUG_LEVEL=WARN\nAUTH_URL=https://polaris.example.com\n"
                   "DENO_ENV=production\nMAPTILER_KEY=abc\n")
    s = load_settings(env_file=env)
    assert (s.WEB_PORT, s.LOG_LEVEL, s.CUSTOMER_BASE_URL) == (9000, "WARNING", "https://polaris.example.com")
    assert (s.SYNC_ON_STARTUP, s.SSE_TRANSPORT) == (False, "memory")  # the original's defaults
    lines = original_names_in_use(env)
    assert "PORT (the original's name) is read as WEB_PORT" in lines
    assert any(line.startswith("DENO_ENV is not used here: ") for line in lines)
    assert any(line.startswith("MAPTILER_KEY is not used here: ") for line in lines)
    assert len(lines) == 5
    monkeypatch.setenv("WEB_PORT", "8100")  # ours wins
    assert load_settings(env_file=env).WEB_PORT == 8100
    assert "PORT (the original's name) is read as WEB_PORT (ignored: WEB_PORT is set too)" in original_names_in_use(env)
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.delenv("WEB_PORT")
    with pytest.raises(ConfigError, match="PORT is invalid.*HTTP port"):
        load_settings(env_file=None)
