"""hrdash.settings: the one settings table, its precedence and its one-line errors."""

from __future__ import annotations

import dataclasses

import pytest

from hrdash.settings import SETTINGS, SettingError, Settings, redact_url


def test_defaults_are_written_once_in_the_table() -> None:
    """Each Settings field's default is its table row's raw default parsed like a user value, so
    the dataclass, load() and the README (tests/test_docs.py) cannot disagree."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for setting in SETTINGS:
        assert fields[setting.name].default == setting.parse(setting.default), setting.name
    assert Settings() == Settings.load(env={})


def test_contract_defaults_and_what_follows_from_them() -> None:
    """The defaults deployments rely on (changing one is a breaking change, not a refactor) and
    what follows from them: the simulator's URL and the bridge's default allowed origins."""
    s = Settings.load(env={})
    assert s.upstream_url == ""
    assert s.uses_simulator
    assert (s.host, s.port) == ("127.0.0.1", 8050)
    assert (s.bridge_host, s.bridge_port) == ("127.0.0.1", 8765)
    assert s.simulator_port == 8766
    assert s.effective_upstream_url == "ws://127.0.0.1:8766/"
    assert s.window == 20
    assert s.order == "newest-last"
    assert s.buffer == 3600
    assert s.public_ws_url == ""
    assert s.allowed_origins == ()
    assert s.effective_origins == ("http://127.0.0.1:8050", "http://localhost:8050")
    assert (s.value_field, s.time_field) == ("", "")


def test_every_setting_is_an_env_var_and_a_flag() -> None:
    """Each row of the table has an HRDASH_* variable and a --flag derived from its name, and
    the table and the Settings fields are the same set."""
    assert {s.name for s in SETTINGS} == set(Settings.__dataclass_fields__)
    for setting in SETTINGS:
        assert setting.env == "HRDASH_" + setting.name.upper()
        assert setting.flag == "--" + setting.name.replace("_", "-")


def test_environment_overrides_defaults() -> None:
    """An HRDASH_* variable replaces the default."""
    s = Settings.load(
        env={
            "HRDASH_UPSTREAM_URL": "wss://example.org/hr",
            "HRDASH_PORT": "9000",
            "HRDASH_WINDOW": "50",
            "HRDASH_ORDER": "newest-first",
            "HRDASH_ALLOWED_ORIGINS": "https://a.example, http://b.example:8080/",
            "HRDASH_VALUE_FIELD": "data.hr",
        }
    )
    assert s.upstream_url == "wss://example.org/hr"
    assert not s.uses_simulator
    assert s.effective_upstream_url == "wss://example.org/hr"
    assert (s.port, s.window, s.order) == (9000, 50, "newest-first")
    assert s.allowed_origins == ("https://a.example", "http://b.example:8080")
    assert s.effective_origins == s.allowed_origins
    assert s.value_field == "data.hr"
    assert s.effective_origins != Settings.load(env={}).effective_origins


def test_default_origins_follow_the_dash_port() -> None:
    """Without an allow-list the bridge accepts the Dash server's own origins on its port."""
    s = Settings.load(env={"HRDASH_PORT": "9001"})
    assert s.effective_origins == ("http://127.0.0.1:9001", "http://localhost:9001")


def test_flag_overrides_environment() -> None:
    """A CLI flag beats the variable; a flag given as None counts as not given."""
    env = {"HRDASH_WINDOW": "50", "HRDASH_BRIDGE_PORT": "9100"}
    s = Settings.load(env=env, overrides={"window": "30", "bridge_port": None})
    assert s.window == 30
    assert s.bridge_port == 9100


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """load() without ``env`` reads the process environment."""
    monkeypatch.setenv("HRDASH_WINDOW", "42")
    assert Settings.load().window == 42


BAD = [
    ("HRDASH_UPSTREAM_URL", "http://example.org/hr"),
    ("HRDASH_UPSTREAM_URL", "example.org"),
    ("HRDASH_UPSTREAM_URL", "ws://"),
    ("HRDASH_PORT", "0"),
    ("HRDASH_PORT", "70000"),
    ("HRDASH_PORT", "abc"),
    ("HRDASH_PORT", "80\n80"),
    ("HRDASH_BRIDGE_PORT", "0"),
    ("HRDASH_BRIDGE_PORT", "70000"),
    ("HRDASH_BRIDGE_PORT", "abc"),
    ("HRDASH_SIMULATOR_PORT", "0"),
    ("HRDASH_SIMULATOR_PORT", "-1"),
    ("HRDASH_WINDOW", "0"),
    ("HRDASH_WINDOW", "twenty"),
    ("HRDASH_BUFFER", "0"),
    ("HRDASH_ORDER", "oldest-first"),
    ("HRDASH_ORDER", ""),
    ("HRDASH_ALLOWED_ORIGINS", "example.org"),
    ("HRDASH_ALLOWED_ORIGINS", "ftp://example.org"),
    ("HRDASH_ALLOWED_ORIGINS", "http://example.org/page"),
    ("HRDASH_ALLOWED_ORIGINS", "http://ok.example,nonsense"),
    ("HRDASH_SIMULATOR_PERIOD", "0"),
    ("HRDASH_SIMULATOR_PERIOD", "nan"),
    ("HRDASH_PING_INTERVAL", "inf"),
    ("HRDASH_VALUE_FIELD", "data..hr"),
    ("HRDASH_PUBLIC_WS_URL", "http://example.org/ws"),
    ("HRDASH_LOG_LEVEL", "loud"),
    ("HRDASH_HOST", "my host"),
    ("HRDASH_REDIS_URL", "http://127.0.0.1:6379/0"),
    ("HRDASH_REDIS_URL", "localhost:6379"),
    ("HRDASH_REDIS_URL", "redis://"),
    ("HRDASH_REDIS_URL", "redis://127.0.0.1:99999/0"),
    ("HRDASH_REDIS_URL", "unix://"),
    ("HRDASH_EDGES", "0"),
    ("HRDASH_EDGES", "65"),
    ("HRDASH_EDGES", "two"),
]


def one_line_error(env: dict[str, str], overrides: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingError) as info:
        Settings.load(env=env, overrides=overrides)
    message = str(info.value)
    assert message
    assert "\n" not in message and "\r" not in message
    return message


@pytest.mark.parametrize(("var", "raw"), BAD)
def test_bad_variable_is_one_line_naming_it(var: str, raw: str) -> None:
    """A bad HRDASH_* value raises SettingError: one line that names the variable."""
    assert var in one_line_error({var: raw})


@pytest.mark.parametrize(("var", "raw"), BAD)
def test_bad_flag_is_one_line_naming_it(var: str, raw: str) -> None:
    """A bad flag value raises SettingError: one line that names the flag."""
    name = var.removeprefix("HRDASH_").lower()
    flag = "--" + name.replace("_", "-")
    assert flag in one_line_error({}, {name: raw})


def test_buffer_smaller_than_window() -> None:
    """A buffer that cannot hold one window is refused, naming both settings."""
    message = one_line_error({"HRDASH_BUFFER": "10", "HRDASH_WINDOW": "20"})
    assert "HRDASH_BUFFER" in message and "HRDASH_WINDOW" in message
    assert Settings.load(env={"HRDASH_BUFFER": "20", "HRDASH_WINDOW": "20"}).buffer == 20


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"HRDASH_BRIDGE_PORT": "8050"}, {"HRDASH_PORT", "HRDASH_BRIDGE_PORT"}),
        ({"HRDASH_SIMULATOR_PORT": "8765"}, {"HRDASH_BRIDGE_PORT", "HRDASH_SIMULATOR_PORT"}),
        ({"HRDASH_SIMULATOR_PORT": "8050"}, {"HRDASH_PORT", "HRDASH_SIMULATOR_PORT"}),
    ],
)
def test_duplicate_ports(env: dict[str, str], names: set[str]) -> None:
    """Two servers on one port are refused, naming both settings."""
    message = one_line_error(env)
    assert all(name in message for name in names)


def test_simulator_port_is_free_to_collide_when_unused() -> None:
    """With an upstream URL there is no simulator, so its port cannot collide."""
    env = {"HRDASH_UPSTREAM_URL": "ws://example.org/", "HRDASH_SIMULATOR_PORT": "8765"}
    assert Settings.load(env=env).simulator_port == 8765


def test_to_env_round_trips_defaults() -> None:
    """Default settings passed to a child through to_env() load back identical."""
    s = Settings.load(env={})
    env = s.to_env()
    assert set(env) == {setting.env for setting in SETTINGS}
    assert Settings.load(env=env) == s


def test_to_env_round_trips_custom_values() -> None:
    """Every kind of value (URL, tuple, float, optional int, paths) survives to_env() → load()."""
    s = Settings.load(
        env={
            "HRDASH_UPSTREAM_URL": "wss://user:secret@example.org:8443/hr?token=abc",
            "HRDASH_PORT": "9000",
            "HRDASH_BRIDGE_PORT": "9001",
            "HRDASH_SIMULATOR_PORT": "9000",
            "HRDASH_SIMULATOR_PERIOD": "0.05",
            "HRDASH_SIMULATOR_SEED": "42",
            "HRDASH_WINDOW": "7",
            "HRDASH_ORDER": "newest-first",
            "HRDASH_BUFFER": "100",
            "HRDASH_PUBLIC_WS_URL": "/ws",
            "HRDASH_ALLOWED_ORIGINS": "https://a.example,http://b.example:8080",
            "HRDASH_VALUE_FIELD": "data.readings.0.hr",
            "HRDASH_TIME_FIELD": "data.ts",
            "HRDASH_SOURCE_NAME": "Ward 3, bed 2",
            "HRDASH_STALE_AFTER": "3.5",
            "HRDASH_PING_INTERVAL": "0.25",
            "HRDASH_UPSTREAM_SILENCE": "4",
            "HRDASH_VIEWER_BUFFER": "4096",
            "HRDASH_LOG_LEVEL": "debug",
        }
    )
    assert s != Settings.load(env={})
    assert Settings.load(env=s.to_env()) == s
    star = Settings.load(env={"HRDASH_ALLOWED_ORIGINS": "*"})
    assert star.effective_origins == ("*",)
    assert Settings.load(env=star.to_env()) == star


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://example.org/hr", "wss://example.org/hr"),
        ("wss://user:secret@example.org/hr", "wss://***@example.org/hr"),
        ("wss://token@example.org:8443/hr", "wss://***@example.org:8443/hr"),
        ("wss://example.org/hr?token=abc&patient=7", "wss://example.org/hr?token=***&patient=***"),
        ("ws://u:p@[::1]:9000/x?k=v", "ws://***@[::1]:9000/x?k=***"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """redact_url hides userinfo and every query value, keeping host, port, path and keys."""
    assert redact_url(url) == expected


def test_display_source_never_shows_secrets() -> None:
    """The source shown to people is redacted, or the simulator's name, or the chosen name."""
    url = "wss://user:secret@example.org/hr?token=abc"
    assert "secret" not in Settings.load(env={"HRDASH_UPSTREAM_URL": url}).display_source
    assert "abc" not in Settings.load(env={"HRDASH_UPSTREAM_URL": url}).display_source
    assert Settings.load(env={}).display_source == "Embedded simulator"
    named = Settings.load(env={"HRDASH_UPSTREAM_URL": url, "HRDASH_SOURCE_NAME": "Bed 2"})
    assert named.display_source == "Bed 2"


def test_redis_url_turns_the_fan_out_on() -> None:
    """Empty: one process, no Redis. A redis://, rediss:// or unix:// URL: uses_redis, and the
    URL is shown redacted (it may hold a password). Edges travel to children through to_env."""
    assert not Settings.load(env={}).uses_redis
    assert Settings.load(env={}).edges == 1
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.example:6380", "unix:///run/r.sock"):
        s = Settings.load(env={"HRDASH_REDIS_URL": f" {url} "})
        assert s.uses_redis and s.redis_url == url
    secret = "redis://:s3cret@10.0.0.5:6379/0?password=hunter2"
    s = Settings.load(env={"HRDASH_REDIS_URL": secret, "HRDASH_EDGES": "4"})
    assert s.shown_redis_url == "redis://***@10.0.0.5:6379/0?password=***"
    assert s.edges == 4
    assert Settings.load(env=s.to_env()) == s


def test_edges_need_redis() -> None:
    """Several edges mean nothing without Redis: one line naming both settings."""
    assert one_line_error({"HRDASH_EDGES": "2"}) == "HRDASH_EDGES needs HRDASH_REDIS_URL"
    assert one_line_error({}, {"edges": "3"}) == "HRDASH_EDGES needs HRDASH_REDIS_URL"
    assert Settings.load(env={"HRDASH_EDGES": "1"}).edges == 1


@pytest.mark.parametrize(
    "raw", ["http://user:s3cret@example.org:6379/0", "redis://:s3cret@:6379/0", "u:s3cret@host:1"]
)
def test_a_bad_redis_url_is_refused_without_its_password(raw: str) -> None:
    """The refusal names the setting and never shows the password it may hold."""
    message = one_line_error({"HRDASH_REDIS_URL": raw})
    assert message.startswith("HRDASH_REDIS_URL: ") and "s3cret" not in message
