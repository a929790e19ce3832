"""Settings loading: precedence, every validation error naming its setting, and no secret leaks."""

from __future__ import annotations

import dataclasses

import pytest

from controller import config
from controller.config import MASK, ConfigError, Secret, Settings, load_settings, redact_url

TOKEN_SECRET = "tok-Secret-9f8e7d6c5b4a"
DB_PASSWORD = "pg-Pa55word-zq81"
ESL_PASSWORD = "esl-Passw0rd-xk42"
PG_URL = f"postgresql+psycopg://voxgate:{DB_PASSWORD}@db.internal:5432/voxgate"


@pytest.fixture(autouse=True)
def fixed_hostname(monkeypatch):
    monkeypatch.setattr(config.socket, "gethostname", lambda: "test-host")


def _toml(tmp_path, text: str, name: str = "voxgate.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(env=None, path=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env or {}, path)
    message = str(info.value)
    assert message.splitlines() == list(info.value.problems)
    return message


# --- defaults and precedence ---------------------------------------------------------------

def test_defaults():
    settings = load_settings({})
    expected = dataclasses.replace(Settings(), instance_id="test-host", token_secret=settings.token_secret,
                                   token_secret_ephemeral=True)
    assert settings == expected
    assert settings.bind_host == "127.0.0.1"
    assert settings.audio_fork_base_url == "ws://127.0.0.1:8090"
    assert settings.database_url.reveal() == "sqlite:///var/voxgate.sqlite3"


def test_ephemeral_token_secret_is_random_and_long():
    first, second = load_settings({}), load_settings({})
    assert first.token_secret_ephemeral and second.token_secret_ephemeral
    assert first.token_secret != second.token_secret
    assert len(first.token_secret.reveal()) >= 32


def test_configured_token_secret_is_not_ephemeral():
    settings = load_settings({"VOXGATE_TOKEN_SECRET": TOKEN_SECRET})
    assert settings.token_secret == Secret(TOKEN_SECRET)
    assert not settings.token_secret_ephemeral


def test_every_setting_from_env():
    settings = load_settings({
        "VOXGATE_BIND_HOST": "::1",
        "VOXGATE_ESL_OUTBOUND_PORT": "0",
        "VOXGATE_ESL_INBOUND": "Yes",
        "VOXGATE_ESL_HOST": "fs.internal",
        "VOXGATE_ESL_PORT": "18021",
        "VOXGATE_ESL_PASSWORD": ESL_PASSWORD,
        "VOXGATE_ALLOW_DEFAULT_ESL_PASSWORD": "0",
        "VOXGATE_WS_PORT": "0",
        "VOXGATE_WS_PUBLIC_URL": "wss://voxgate.example.com/fork/",
        "VOXGATE_AUDIO_FORK_MODE": "Classic",
        "VOXGATE_AUDIO_FORK_RATE": "16000",
        "VOXGATE_AUDIO_FORK_MIX": "stereo",
        "VOXGATE_TOKEN_SECRET": TOKEN_SECRET,
        "VOXGATE_TOKEN_TTL_S": "12.5",
        "VOXGATE_INSTANCE_ID": "vg-2",
        "VOXGATE_DATABASE_URL": PG_URL,
        "VOXGATE_DEFAULT_FLOW": "survey",
        "VOXGATE_MAX_WS_MESSAGE": "1024",
        "VOXGATE_LOG_LEVEL": "debug",
        "VOXGATE_TMP_DIR": "/tmp/vg",
    })
    assert settings == Settings(
        bind_host="::1", esl_outbound_port=0, esl_inbound=True, esl_host="fs.internal", esl_port=18021,
        esl_password=Secret(ESL_PASSWORD), allow_default_esl_password=False, ws_port=0,
        ws_public_url="wss://voxgate.example.com/fork/", audio_fork_mode="classic", audio_fork_rate=16000,
        audio_fork_mix="stereo", token_secret=Secret(TOKEN_SECRET), token_ttl_s=12.5, instance_id="vg-2",
        database_url=Secret(PG_URL), default_flow="survey", max_ws_message=1024, log_level="DEBUG",
        tmp_dir="/tmp/vg")
    assert settings.audio_fork_base_url == "wss://voxgate.example.com/fork"


@pytest.mark.parametrize("raw,expected", [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("NO", False),
])
def test_boolean_spellings(raw, expected):
    assert load_settings({"VOXGATE_ALLOW_DEFAULT_ESL_PASSWORD": raw}).allow_default_esl_password is expected


def test_toml_flat_with_native_types(tmp_path):
    path = _toml(tmp_path, f'''
ws_port = 9000
esl_inbound = true
esl_password = "{ESL_PASSWORD}"
token_ttl_s = 5
audio_fork_rate = 16000
''')
    settings = load_settings({}, path)
    assert (settings.ws_port, settings.esl_inbound, settings.token_ttl_s) == (9000, True, 5.0)
    assert settings.esl_password == Secret(ESL_PASSWORD)
    assert settings.audio_fork_rate == 16000


def test_toml_voxgate_table(tmp_path):
    path = _toml(tmp_path, '[voxgate]\nws_port = 9001\ndefault_flow = "ivr"\n')
    settings = load_settings({}, path)
    assert (settings.ws_port, settings.default_flow) == (9001, "ivr")


def test_env_overrides_toml(tmp_path):
    path = _toml(tmp_path, 'ws_port = 9000\nlog_level = "ERROR"\n')
    settings = load_settings({"VOXGATE_WS_PORT": "9100"}, path)
    assert settings.ws_port == 9100
    assert settings.log_level == "ERROR"


def test_env_overrides_an_invalid_toml_value(tmp_path):
    path = _toml(tmp_path, 'ws_port = "nope"\n')
    assert load_settings({"VOXGATE_WS_PORT": "9100"}, path).ws_port == 9100


def test_config_path_from_env(tmp_path):
    path = _toml(tmp_path, "ws_port = 9002\n")
    assert load_settings({"VOXGATE_CONFIG": str(path)}).ws_port == 9002


def test_path_argument_beats_voxgate_config(tmp_path):
    chosen = _toml(tmp_path, "ws_port = 9003\n", "chosen.toml")
    assert load_settings({"VOXGATE_CONFIG": str(tmp_path / "missing.toml")}, chosen).ws_port == 9003


def test_ignored_environment():
    settings = load_settings({"VOXGATE_CONFIG": "", "VOXGATE_TEST_PBX": "1", "PATH": "/bin",
                              "voxgate_ws_port": "1"})
    assert settings.ws_port == 8090


def test_reads_os_environ_when_env_is_none(monkeypatch):
    monkeypatch.setenv("VOXGATE_DEFAULT_FLOW", "from-os-environ")
    assert load_settings().default_flow == "from-os-environ"


# --- unknown keys, files -----------------------------------------------------------------

def test_unknown_env_var_with_suggestion():
    message = _problems({"VOXGATE_WS_PROT": "9000"})
    assert message == "VOXGATE_WS_PROT: unknown setting (did you mean VOXGATE_WS_PORT?)"


def test_unknown_env_var_is_an_error_not_an_ephemeral_setting():
    message = _problems({"VOXGATE_TOKEN_SECRET_EPHEMERAL": "1"})
    assert message.startswith("VOXGATE_TOKEN_SECRET_EPHEMERAL: unknown setting")


def test_unknown_toml_keys(tmp_path):
    path = _toml(tmp_path, 'bind_hots = "127.0.0.1"\n[voxgate]\nzzz = 1\n[zebra]\nx = 1\n')
    lines = _problems(path=path).splitlines()
    assert f"bind_hots in {path}: unknown setting (did you mean bind_host?)" in lines
    assert f"zzz in {path}: unknown setting" in lines
    assert f"zebra in {path}: unknown setting" in lines


def test_toml_key_set_twice(tmp_path):
    path = _toml(tmp_path, "ws_port = 1\n[voxgate]\nws_port = 2\n")
    assert f"ws_port in {path}: set both at top level and in [voxgate]" in _problems(path=path)


def test_voxgate_key_must_be_a_table(tmp_path):
    path = _toml(tmp_path, "voxgate = 3\n")
    assert f"voxgate in {path}: must be a table" in _problems(path=path)


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.toml"
    message = _problems({"VOXGATE_CONFIG": str(missing)})
    assert message.startswith(f"VOXGATE_CONFIG={missing}: cannot read config file")
    assert f"config file {missing}: cannot read" in _problems(path=missing)


def test_invalid_toml(tmp_path):
    path = _toml(tmp_path, f'esl_password = "{ESL_PASSWORD}\n')
    message = _problems(path=path)
    assert f"config file {path}: not valid TOML" in message
    assert ESL_PASSWORD not in message


def test_all_problems_collected_one_per_line(tmp_path):
    path = _toml(tmp_path, "max_ws_message = 1\n")
    message = _problems({"VOXGATE_WS_PORT": "x", "VOXGATE_LOG_LEVEL": "loud", "VOXGATE_NOPE": "1"}, path)
    lines = message.splitlines()
    assert len(lines) == 4
    assert [line.split(":")[0] for line in lines] == [
        "VOXGATE_NOPE", "VOXGATE_WS_PORT", f"max_ws_message in {path}", "VOXGATE_LOG_LEVEL"]


# --- one test per validation error --------------------------------------------------------

@pytest.mark.parametrize("env,why", [
    ({"VOXGATE_BIND_HOST": "example.com"}, "must be an IP address or 'localhost'"),
    ({"VOXGATE_BIND_HOST": ""}, "must be an IP address or 'localhost'"),
    ({"VOXGATE_ESL_OUTBOUND_PORT": "65536"}, "must be between 0 and 65535, got 65536"),
    ({"VOXGATE_ESL_OUTBOUND_PORT": "-1"}, "must be between 0 and 65535"),
    ({"VOXGATE_ESL_OUTBOUND_PORT": "80.5"}, "expected an integer, got '80.5'"),
    ({"VOXGATE_ESL_INBOUND": "maybe"}, "expected true/false/yes/no/1/0, got 'maybe'"),
    ({"VOXGATE_ESL_HOST": "fs host"}, "must be a host name or IP address"),
    ({"VOXGATE_ESL_HOST": ""}, "must be a host name or IP address"),
    ({"VOXGATE_ESL_PORT": "0"}, "must be between 1 and 65535, got 0"),
    ({"VOXGATE_ESL_PASSWORD": ""}, "must not be empty"),
    ({"VOXGATE_ALLOW_DEFAULT_ESL_PASSWORD": "2"}, "expected true/false/yes/no/1/0, got '2'"),
    ({"VOXGATE_WS_PORT": "99999"}, "must be between 0 and 65535"),
    ({"VOXGATE_WS_PORT": "eighty"}, "expected an integer, got 'eighty'"),
    ({"VOXGATE_WS_PUBLIC_URL": "http://fs:8090"}, "must start with ws:// or wss://"),
    ({"VOXGATE_WS_PUBLIC_URL": "ws://"}, "has no host"),
    ({"VOXGATE_WS_PUBLIC_URL": "ws://h:port"}, "is not a valid URL"),
    ({"VOXGATE_WS_PUBLIC_URL": "ws://h:8090/?a=1"}, "must not have a query or fragment"),
    ({"VOXGATE_AUDIO_FORK_MODE": "bidirectional"}, "must be one of streaming, classic; got 'bidirectional'"),
    ({"VOXGATE_AUDIO_FORK_RATE": "44100"}, "must be one of 8000, 16000; got 44100"),
    ({"VOXGATE_AUDIO_FORK_RATE": "8k"}, "expected an integer, got '8k'"),
    ({"VOXGATE_AUDIO_FORK_MIX": "quad"}, "must be one of mono, stereo, mixed; got 'quad'"),
    ({"VOXGATE_TOKEN_SECRET": "short"}, "must be at least 16 characters"),
    ({"VOXGATE_TOKEN_TTL_S": "0"}, "must be greater than 0 and at most 3600, got 0.0"),
    ({"VOXGATE_TOKEN_TTL_S": "3600.5"}, "must be greater than 0 and at most 3600"),
    ({"VOXGATE_TOKEN_TTL_S": "soon"}, "expected a number, got 'soon'"),
    ({"VOXGATE_TOKEN_TTL_S": "nan"}, "expected a finite number, got 'nan'"),
    ({"VOXGATE_INSTANCE_ID": "has space"}, "must be 1-64 characters"),
    ({"VOXGATE_INSTANCE_ID": "x" * 65}, "must be 1-64 characters"),
    ({"VOXGATE_DATABASE_URL": "sqlite://relative.db"}, "a SQLite URL is sqlite:///relative/path"),
    ({"VOXGATE_DATABASE_URL": "postgresql://"}, "a PostgreSQL URL needs a host or database"),
    ({"VOXGATE_DATABASE_URL": "var/db.sqlite3"}, "must be a sqlite:/// or postgresql:// URL"),
    ({"VOXGATE_DEFAULT_FLOW": " "}, "must not be empty"),
    ({"VOXGATE_MAX_WS_MESSAGE": "1023"}, "must be between 1024 and 16777216, got 1023"),
    ({"VOXGATE_MAX_WS_MESSAGE": str(16 * 1024 * 1024 + 1)}, "must be between 1024 and"),
    ({"VOXGATE_LOG_LEVEL": "TRACE"}, "must be one of DEBUG, INFO, WARNING, ERROR; got 'TRACE'"),
    ({"VOXGATE_TMP_DIR": ""}, "must not be empty"),
])
def test_env_validation_error_names_the_env_var(env, why):
    (var, _), = env.items()
    assert _problems(env).startswith(f"{var}: {why}")


@pytest.mark.parametrize("toml,why", [
    ('ws_port = "9000x"', "expected an integer, got '9000x'"),
    ("ws_port = true", "expected an integer, got True"),
    ("ws_port = 1.5", "expected an integer, got 1.5"),
    ("esl_inbound = 2", "expected true/false/yes/no/1/0, got 2"),
    ("bind_host = 127", "expected a string, got 127"),
    ("token_ttl_s = false", "expected a number, got False"),
    ("esl_password = 1234", "expected a string, got an integer"),
    ('audio_fork_mix = "surround"', "must be one of mono, stereo, mixed"),
])
def test_toml_validation_error_names_key_and_file(tmp_path, toml, why):
    path = _toml(tmp_path, toml + "\n")
    key = toml.split(" ")[0]
    assert _problems(path=path).startswith(f"{key} in {path}: {why}")


def test_esl_password_required_for_inbound():
    assert _problems({"VOXGATE_ESL_INBOUND": "true"}) == \
        "esl_password (VOXGATE_ESL_PASSWORD): required when esl_inbound is true"
    assert load_settings({"VOXGATE_ESL_INBOUND": "true", "VOXGATE_ESL_PASSWORD": ESL_PASSWORD}).esl_inbound


def test_empty_esl_password_reported_once_for_inbound():
    assert _problems({"VOXGATE_ESL_INBOUND": "1", "VOXGATE_ESL_PASSWORD": ""}) == \
        "VOXGATE_ESL_PASSWORD: must not be empty"


def test_default_esl_password_rejected_unless_allowed(tmp_path):
    message = _problems({"VOXGATE_ESL_INBOUND": "1", "VOXGATE_ESL_PASSWORD": "ClueCon"})
    assert message.startswith("VOXGATE_ESL_PASSWORD: is FreeSWITCH's default 'ClueCon'")
    path = _toml(tmp_path, 'esl_password = "ClueCon"\n')
    assert _problems(path=path).startswith(f"esl_password in {path}: is FreeSWITCH's default")
    allowed = load_settings({"VOXGATE_ESL_INBOUND": "1", "VOXGATE_ESL_PASSWORD": "ClueCon",
                             "VOXGATE_ALLOW_DEFAULT_ESL_PASSWORD": "yes"})
    assert allowed.esl_password == Secret("ClueCon")


def test_ws_port_clashing_with_esl_outbound_port():
    message = _problems({"VOXGATE_WS_PORT": "8084"})
    assert message == "VOXGATE_WS_PORT: is the same as esl_outbound_port (8084); both listen on bind_host"
    message = _problems({"VOXGATE_ESL_OUTBOUND_PORT": "8090"})
    assert message.startswith("ws_port (VOXGATE_WS_PORT): is the same")
    assert load_settings({"VOXGATE_WS_PORT": "0", "VOXGATE_ESL_OUTBOUND_PORT": "0"}).ws_port == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_wildcard_bind_needs_public_url(host):
    assert _problems({"VOXGATE_BIND_HOST": host}) == \
        f"ws_public_url (VOXGATE_WS_PUBLIC_URL): required when bind_host is {host}: " \
        "FreeSWITCH cannot connect to a wildcard address"
    settings = load_settings({"VOXGATE_BIND_HOST": host, "VOXGATE_WS_PUBLIC_URL": "ws://10.0.0.5:8090"})
    assert settings.audio_fork_base_url == "ws://10.0.0.5:8090"


def test_unusable_hostname_as_default_instance_id(monkeypatch):
    monkeypatch.setattr(config.socket, "gethostname", lambda: "bad host")
    assert _problems({}).startswith("instance_id (VOXGATE_INSTANCE_ID): must be 1-64 characters")
    assert load_settings({"VOXGATE_INSTANCE_ID": "ok"}).instance_id == "ok"


# --- derived values ----------------------------------------------------------------------

@pytest.mark.parametrize("host,url", [
    ("127.0.0.1", "ws://127.0.0.1:8090"),
    ("localhost", "ws://localhost:8090"),
    ("::1", "ws://[::1]:8090"),
    ("10.1.2.3", "ws://10.1.2.3:8090"),
])
def test_derived_audio_fork_base_url(host, url):
    assert load_settings({"VOXGATE_BIND_HOST": host}).audio_fork_base_url == url


def test_bind_host_normalised():
    assert load_settings({"VOXGATE_BIND_HOST": "0:0:0:0:0:0:0:1"}).bind_host == "::1"


# --- secrets never leak --------------------------------------------------------------------

def test_secret_behaviour():
    secret = Secret("hunter2-hunter2")
    assert repr(secret) == str(secret) == f"{secret}" == "'**********'"
    assert secret.reveal() == "hunter2-hunter2"
    assert secret == Secret("hunter2-hunter2") and secret != Secret("other")
    assert secret != "hunter2-hunter2"
    assert hash(secret) == hash(Secret("hunter2-hunter2"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        secret._value = "x"


def _full_secret_settings() -> Settings:
    return load_settings({"VOXGATE_TOKEN_SECRET": TOKEN_SECRET, "VOXGATE_DATABASE_URL": PG_URL,
                          "VOXGATE_ESL_INBOUND": "1", "VOXGATE_ESL_PASSWORD": ESL_PASSWORD})


def test_settings_repr_and_str_hide_secrets():
    settings = _full_secret_settings()
    for text in (repr(settings), str(settings), f"{settings}"):
        for secret in (TOKEN_SECRET, DB_PASSWORD, ESL_PASSWORD):
            assert secret not in text
    assert "token_secret='**********'" in repr(settings)


def test_describe_masks_secrets():
    settings = _full_secret_settings()
    lines = settings.describe()
    text = "\n".join(lines)
    for secret in (TOKEN_SECRET, DB_PASSWORD, ESL_PASSWORD):
        assert secret not in text
    assert f"token_secret = {MASK}" in lines
    assert f"esl_password = {MASK}" in lines
    assert f"database_url = postgresql+psycopg://voxgate:{MASK}@db.internal:5432/voxgate" in lines
    assert "ws_public_url = ws://127.0.0.1:8090 (derived)" in lines
    assert "ws_port = 8090" in lines
    assert [line.split(" = ")[0] for line in lines] == list(config._SETTABLE)


def test_describe_notes_ephemeral_and_unset():
    lines = load_settings({}).describe()
    assert f"token_secret = {MASK} (ephemeral: tokens die with this process)" in lines
    assert "esl_password = (unset)" in lines
    assert "database_url = sqlite:///var/voxgate.sqlite3" in lines


@pytest.mark.parametrize("url,why", [
    (f"mysql://root:{DB_PASSWORD}@db/voxgate", "must be a sqlite:/// or postgresql:// URL"),
    (f"postgres://voxgate:{DB_PASSWORD}@db/voxgate", "use postgresql:// (SQLAlchemy rejects postgres://)"),
    (f"sqlite://u:{DB_PASSWORD}@x", "a SQLite URL is"),
    (f"voxgate:{DB_PASSWORD}@db", "must be a sqlite:/// or postgresql:// URL"),
])
def test_database_url_errors_do_not_echo_the_password(url, why):
    message = _problems({"VOXGATE_DATABASE_URL": url})
    assert message.startswith(f"VOXGATE_DATABASE_URL: {why}")
    assert DB_PASSWORD not in message
    assert MASK in message


def test_secret_errors_do_not_echo_the_value(tmp_path):
    short = "s3cr-short"
    message = _problems({"VOXGATE_TOKEN_SECRET": short, "VOXGATE_ESL_INBOUND": "1",
                         "VOXGATE_ESL_PASSWORD": "ClueCon"})
    assert short not in message
    path = _toml(tmp_path, "token_secret = 123456789\n")
    assert "123456789" not in _problems(path=path)


@pytest.mark.parametrize("url,redacted", [
    ("sqlite:///var/voxgate.sqlite3", "sqlite:///var/voxgate.sqlite3"),
    ("postgresql://vg:pw@h/db", f"postgresql://vg:{MASK}@h/db"),
    ("postgresql://vg@h/db", "postgresql://vg@h/db"),
    ("postgresql://vg:p@ss/w?rd@h:5432/db", f"postgresql://vg:{MASK}@h:5432/db"),
    ("postgresql://h/db?user=vg&password=pw&sslmode=require",
     f"postgresql://h/db?user=vg&password={MASK}&sslmode=require"),
    ("postgresql://h/db?sslpassword=pw", f"postgresql://h/db?sslpassword={MASK}"),
    ("vg:pw@h/db", MASK),
])
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_redaction_patterns_are_checked_at_load():
    assert load_settings({"VOXGATE_REDACT_PATTERNS": '{"order": "ORD-\\\\d+"}'}).redact_patterns
    with pytest.raises(ConfigError, match="REDACT_PATTERNS: redaction pattern 'bad' does not compile"):
        load_settings({"VOXGATE_REDACT_PATTERNS": '{"bad": "("}'})
    with pytest.raises(ConfigError, match="JSON object"):
        load_settings({"VOXGATE_REDACT_PATTERNS": '["x"]'})


# --- the route table ----------------------------------------------------------------------------

def test_routes_from_the_toml_table_and_from_json_in_the_env(tmp_path):
    from controller.routing import Route

    path = _toml(tmp_path, r'''
[voxgate]
default_flow = "greeting"

[[voxgate.routes]]
destination = "5000"
flow = "sales"

[[voxgate.routes]]
caller = '\+44.*'
flow = "uk_support"
''')
    settings = load_settings({}, path)
    assert settings.routes == (Route("sales", "5000"), Route("uk_support", caller=r"\+44.*"))
    assert "routes = 2 route(s)" in settings.describe()
    env = {"VOXGATE_ROUTES": '[{"destination": "6000", "flow": "support"}]'}
    assert load_settings(env, path).routes == (Route("support", "6000"),)  # the environment wins, whole
    assert load_settings({}).routes == ()


def test_every_route_problem_is_its_own_line_naming_where(tmp_path):
    path = _toml(tmp_path, '''
[[voxgate.routes]]
destination = "5["
flow = "sales"

[[voxgate.routes]]
destinaton = "5000"

[voxgate]
ws_port = "x"
''')
    message = _problems(path=path)
    assert f"routes in {path}: route 1: destination '5[' is not a valid regular expression" in message
    assert f"routes in {path}: route 2: unknown key 'destinaton' (did you mean destination?)" in message
    assert f"routes in {path}: route 2: needs a flow" in message
    assert f"ws_port in {path}: expected an integer" in message
    assert "VOXGATE_ROUTES: not valid JSON" in _problems({"VOXGATE_ROUTES": "destination=5000"})
