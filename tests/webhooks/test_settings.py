"""Webhook endpoints in the settings: TOML tables, JSON in the environment, and clear problems without secrets."""

from __future__ import annotations

import json

import pytest

from controller import config
from controller.config import ConfigError, Secret, load_settings
from controller.webhooks import EVENT_TYPES, WebhookEndpoint

SECRET = "whsec-Settings-8d7c6b5a4f3e"
OLD = "whsec-Previous-1a2b3c4d5e6f"
PLAIN_HTTP = "url must be https:// (http:// only for a loopback host): events carry call data"


@pytest.fixture(autouse=True)
def fixed_hostname(monkeypatch):
    monkeypatch.setattr(config.socket, "gethostname", lambda: "test-host")


def _problems(env=None, path=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env or {}, path)
    message = str(info.value)
    assert SECRET not in message and OLD not in message
    return message


def test_endpoints_from_toml_tables_and_from_json_in_the_environment(tmp_path):
    path = tmp_path / "voxgate.toml"
    path.write_text(f'''
[[voxgate.webhooks]]
url = "https://crm.example.com/voxgate/events?token=q-9f8e"
secret = "{SECRET}"
events = ["call.started", "call.ended"]

[[voxgate.webhooks]]
url = "http://127.0.0.1:8099/hook"
name = "local-audit"
secret = "{SECRET}"
previous_secret = "{OLD}"
''')
    settings = load_settings({}, path)
    crm, local = settings.webhooks
    assert crm == WebhookEndpoint("https://crm.example.com/voxgate/events?token=q-9f8e", Secret(SECRET),
                                  frozenset({"call.started", "call.ended"}))
    assert crm.label == "crm.example.com" and crm.wants("call.ended") and not crm.wants("turn.completed")
    assert crm.signing_secrets() == (SECRET,)
    assert local.label == "local-audit" and local.events == frozenset(EVENT_TYPES)
    assert local.signing_secrets() == (SECRET, OLD)  # current first, then the one being rotated out

    shown = "\n".join(settings.describe())
    assert SECRET not in shown and OLD not in shown and "q-9f8e" not in shown
    assert "webhooks = (WebhookEndpoint('crm.example.com', events=call.ended,call.started), " \
           "WebhookEndpoint('local-audit', events=all))" in shown

    env = {"VOXGATE_WEBHOOKS": json.dumps([{"url": "https://hooks.example.net/x", "secret": SECRET,
                                            "events": ["turn.completed"]}])}
    (only,) = load_settings(env, path).webhooks  # the environment wins, whole
    assert only.label == "hooks.example.net" and only.events == {"turn.completed"}
    assert load_settings({}).webhooks == ()
    assert load_settings({"VOXGATE_WEBHOOKS": " "}).webhooks == ()


def test_ports_and_ipv6_hosts_name_the_endpoint():
    (endpoint,) = load_settings({"VOXGATE_WEBHOOKS": json.dumps(
        [{"url": "http://[::1]:8443/hook", "secret": SECRET}])}).webhooks
    assert endpoint.label == "[::1]:8443"


@pytest.mark.parametrize("url, why", [
    ("http://crm.example.com/hook", f"{PLAIN_HTTP}, got http://crm.example.com"),
    ("http://10.0.0.5/hook", f"{PLAIN_HTTP}, got http://10.0.0.5"),
    ("ftp://crm.example.com/hook", "url must be an https:// URL with a host"),
    ("https:///hook", "url must be an https:// URL with a host"),
    ("https://user:pw-123@crm.example.com/hook", "url must not carry credentials"),
    ("https://crm.example.com/hook#frag", "url must not have a #fragment"),
    ("https://crm.example.com:99999/hook", "url is not a valid URL"),
])
def test_urls_must_be_https_unless_loopback(url, why):
    message = _problems({"VOXGATE_WEBHOOKS": json.dumps([{"url": url, "secret": SECRET}])})
    assert f"VOXGATE_WEBHOOKS: webhook 1: {why}" in message
    assert "pw-123" not in message


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "[::1]"])
def test_plain_http_is_allowed_on_loopback(host):
    env = {"VOXGATE_WEBHOOKS": json.dumps([{"url": f"http://{host}:8080/hook", "secret": SECRET}])}
    assert len(load_settings(env).webhooks) == 1


def test_every_problem_is_its_own_line_naming_the_endpoint(tmp_path):
    path = tmp_path / "voxgate.toml"
    path.write_text('''
[[voxgate.webhooks]]
url = "https://crm.example.com/hook"
secret = "too-short-123"
events = ["call.ended", "call.exploded"]
retries = 3

[[voxgate.webhooks]]
urll = "https://other.example.com/hook"
events = []

[[voxgate.webhooks]]
url = "https://third.example.com/hook"
secret = "whsec-Settings-8d7c6b5a4f3e"
events = "call.ended"
previous_secret = ""
''')
    message = _problems(path=path)
    where = f"webhooks in {path}"
    assert f"{where}: webhook 1: unknown key 'retries'" in message
    assert f"{where}: webhook 1: secret must be at least 16 characters" in message
    assert f"{where}: webhook 1: unknown event type(s) 'call.exploded' (known: call.started, " in message
    assert f"{where}: webhook 2: unknown key 'urll' (did you mean url?)" in message
    assert f"{where}: webhook 2: needs a url (a string)" in message
    assert f"{where}: webhook 2: needs a secret (a string)" in message
    assert f"{where}: webhook 3: events must be a list of event types" in message
    assert f"{where}: webhook 3: previous_secret must be a non-empty string" in message
    assert "too-short-123" not in message


def test_empty_event_lists_short_previous_secrets_and_bad_json_are_refused():
    def problems(entries) -> str:
        return _problems({"VOXGATE_WEBHOOKS": entries if isinstance(entries, str) else json.dumps(entries)})

    url = "https://crm.example.com/hook"
    assert "webhook 1: events is empty: leave it out to receive every event type" in problems(
        [{"url": url, "secret": SECRET, "events": []}])
    assert "webhook 1: previous_secret must be at least 16 characters" in problems(
        [{"url": url, "secret": SECRET, "previous_secret": "short-old"}])
    assert "VOXGATE_WEBHOOKS: not valid JSON" in problems(f'[{{"url": "{url}", "secret": "{SECRET}"')
    assert "VOXGATE_WEBHOOKS: must be a list of webhooks" in problems({"url": url, "secret": SECRET})
    assert "webhook 1: must be a table with url, secret" in problems(["https://crm.example.com/hook"])
