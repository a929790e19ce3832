"""docker/compose.yaml read with PyYAML and checked against the repository and controller.config (no engine here)."""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import PurePosixPath
from typing import Any

import pytest

from controller.config import Settings, load_settings
from tests.docker.files import (
    COMPOSE,
    DOCKER,
    REPO,
    compose,
    dockerfile,
    entrypoint_list,
    env_file,
    env_pairs,
    interpolate,
    interpolated_names,
    secret_env_names,
    settings_env_names,
)

VOXGATES = ("voxgate", "voxgate-2")
FS_CONF = PurePosixPath("/usr/local/freeswitch/conf")
# what the entrypoint would read from each secret file: valid values, so load_settings judges the rest
SECRET_STANDINS = {"VOXGATE_DATABASE_URL": "postgresql+psycopg://voxgate:pw@postgres:5432/voxgate",
                   "VOXGATE_API_TOKEN": "api-token-standin-0123456789",
                   "VOXGATE_TOKEN_SECRET": "token-secret-standin-0123456789"}


def _services() -> dict[str, Any]:
    return compose()["services"]


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, f"not a compose duration this test reads: {duration}"
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def _settings(service: str, variables: dict[str, str]) -> Settings:
    """The Settings `voxgate serve` would load in that container: image ENV, then compose's, secrets read."""
    image = {k: v for i in dockerfile() if i.keyword == "ENV" for k, v in env_pairs(i).items()}
    env = {k: v for k, v in image.items() if k.startswith("VOXGATE_")}
    for name, value in _services()[service]["environment"].items():
        if name.endswith("_FILE") and name.removesuffix("_FILE") in entrypoint_list("SECRETS"):
            env[name.removesuffix("_FILE")] = SECRET_STANDINS[name.removesuffix("_FILE")]
        else:
            env[name] = interpolate(value, variables)
    return load_settings(env)


def _fs_xml(relative: str) -> ET.Element:
    return ET.parse(REPO / relative).getroot()


def test_the_services_and_what_each_waits_for():
    services = _services()
    assert set(services) == {"voxgate", "voxgate-2", "postgres", "freeswitch"}
    assert "profiles" not in services["voxgate"] and services["voxgate-2"]["profiles"] == ["scale"]
    for name in VOXGATES:
        depends = services[name]["depends_on"]
        assert set(depends) == {"postgres", "freeswitch"}
        for target, rule in depends.items():
            assert rule == {"condition": "service_healthy"}, (name, target)
            test = services[target]["healthcheck"]["test"]
            assert test[0] == "CMD" and len(test) > 1, test  # exec form: no shell between Docker and the probe
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["postgres"]["image"].startswith("postgres:")


def test_voxgate_is_the_dockerfile_built_from_the_repository_and_stops_gracefully():
    for name in VOXGATES:
        service = _services()[name]
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO and (context / build["dockerfile"]).is_file()
        assert service["init"] is True  # tini as PID 1: the entrypoint execs serve, which gets the SIGTERM
        drain_s = _settings(name, {}).drain_s
        assert _seconds(service["stop_grace_period"]) >= drain_s + 10, "Docker would SIGKILL a draining serve"
        assert service["restart"] == "unless-stopped"


def test_every_published_port_is_on_the_hosts_loopback_and_the_api_is_published():
    services = _services()
    published = {}
    for name, service in services.items():
        if service.get("network_mode", "").startswith("service:"):
            assert "ports" not in service, f"{name} shares a namespace: compose refuses its own ports"
        for port in service.get("ports", []):
            match = re.fullmatch(r"127\.0\.0\.1:(\d+):(\d+)(/udp|/tcp)?", port)
            assert match, f"{name}: {port!r} is not published on 127.0.0.1 only"
            published[(name, int(match.group(2)), match.group(3) or "/tcp")] = int(match.group(1))
    owner = services["voxgate"]["network_mode"].removeprefix("service:")
    assert published[(owner, _settings("voxgate", {}).api_port, "/tcp")] == 8088
    assert ("postgres", 5432, "/tcp") not in published


def test_instances_in_the_shared_namespace_listen_on_ports_of_their_own():
    """voxgate shares FreeSWITCH's namespace, so every listener there must differ, and the fork URL must match."""
    owner = {_services()[name]["network_mode"] for name in VOXGATES}
    assert owner == {"service:freeswitch"}
    event_socket = _fs_xml("freeswitch-conf/event_socket.conf.xml")
    taken = {int(event_socket.find(".//param[@name='listen-port']").get("value")), 5060, 5080, 5081}
    for name in VOXGATES:
        settings = _settings(name, {})
        ports = {settings.esl_outbound_port, settings.ws_port, settings.api_port}
        assert len(ports) == 3 and not ports & taken, (name, ports, taken)
        taken |= ports
        assert settings.bind_host == "0.0.0.0"
        assert settings.audio_fork_base_url == f"ws://127.0.0.1:{settings.ws_port}"


def test_the_shipped_dialplan_reaches_the_first_instance():
    socket_data = [action.get("data") for action in _fs_xml("dialplan/freeswitch/voxgate.xml").iter("action")
                   if action.get("application") == "socket"]
    settings = _settings("voxgate", {})
    assert f"127.0.0.1:{settings.esl_outbound_port} async full" in socket_data


@pytest.mark.parametrize("variables", ["defaults", ".env.example"])
def test_each_instances_environment_is_valid_settings(variables):
    """The real load_settings judges each container's variables: names, values and the rules across them."""
    values = {} if variables == "defaults" else env_file()
    for name in VOXGATES:
        settings = _settings(name, values)
        assert settings.api and settings.api_token is not None and not settings.token_secret_ephemeral
        assert settings.database_url.reveal().startswith("postgresql")
        assert settings.instance_id == {"voxgate": "voxgate-1", "voxgate-2": "voxgate-2"}[name]


def test_voxgate_variables_are_settings_or_secret_files_the_entrypoint_reads():
    known = settings_env_names()
    secret_files = {f"{name}_FILE" for name in entrypoint_list("SECRETS")}
    for name in VOXGATES:
        for variable in _services()[name]["environment"]:
            assert variable in known or variable in secret_files, f"{name}: {variable} is no voxgate setting"


def test_the_entrypoint_reads_every_secret_setting_and_requires_the_ones_serve_needs():
    assert entrypoint_list("SECRETS") == secret_env_names()
    assert entrypoint_list("REQUIRED") == {"VOXGATE_API_TOKEN", "VOXGATE_TOKEN_SECRET", "VOXGATE_DATABASE_URL"}


def test_no_secret_is_written_in_compose():
    document = compose()
    secret_names = secret_env_names() | {"POSTGRES_PASSWORD"}
    for name, service in document["services"].items():
        mounted = set(service.get("secrets", []))
        for variable, value in service.get("environment", {}).items():
            assert variable not in secret_names, f"{name}: {variable} in plain text"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", str(value)), f"{name}: {variable} holds credentials"
            if variable.endswith("_FILE"):
                secret = PurePosixPath(value)
                assert secret.parent == PurePosixPath("/run/secrets") and secret.name in mounted, (name, variable)
    for secret in document["secrets"].values():
        assert PurePosixPath(secret["file"]).parent == PurePosixPath("secrets"), secret
    assert "secrets/" in (DOCKER / ".gitignore").read_text().split()
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_freeswitch_mounts_exist_read_only_and_fit_together():
    service = _services()["freeswitch"]
    mounts = {}
    for volume in service["volumes"]:
        assert volume["type"] == "bind" and volume["read_only"] is True, volume
        source = (DOCKER / volume["source"]).resolve()
        assert source.exists(), f"{volume['source']} is not in the repository"
        mounts[PurePosixPath(volume["target"])] = source
    assert mounts[FS_CONF / "autoload_configs/event_socket.conf.xml"] == REPO / "freeswitch-conf/event_socket.conf.xml"
    dialplan_dir = next(target for target, source in mounts.items() if source == REPO / "dialplan/freeswitch")
    # the context file's include is relative to its own folder and must land on the mounted dialplan folder
    context_target = next(target for target, source in mounts.items()
                          if target.parent == FS_CONF / "dialplan" and source.is_file())
    context_file = ET.parse(mounts[context_target]).getroot().find("context")
    include = context_file.find("X-PRE-PROCESS").get("data")
    assert include.startswith(f"{dialplan_dir.relative_to(context_target.parent)}/") and include.endswith("*.xml")
    assert list(mounts[dialplan_dir].glob("*.xml")), "the dialplan folder has no .xml file to include"
    profile_target = next(target for target in mounts if target.parent == FS_CONF / "sip_profiles")
    profile = ET.parse(mounts[profile_target]).getroot()
    assert profile.find(".//param[@name='context']").get("value") == context_file.get("name")
    sip_port = int(profile.find(".//param[@name='sip-port']").get("value"))
    assert {f"127.0.0.1:{sip_port}:{sip_port}/udp", f"127.0.0.1:{sip_port}:{sip_port}/tcp"} <= set(service["ports"])
    probe = service["healthcheck"]["test"]
    assert mounts.get(PurePosixPath(probe[-1])) == DOCKER / "freeswitch/healthcheck.sh"
    assert service["entrypoint"][0] == "freeswitch" and service["init"] is True


def test_the_env_example_names_real_settings_that_compose_fills_in():
    example = env_file()
    used = interpolated_names(COMPOSE.read_text())
    assert set(example) <= used, set(example) - used
    known = settings_env_names()
    assert all(name in known for name in example if name.startswith("VOXGATE_"))
    for name in used:  # compose works without a .env: every ${...} has a default
        assert re.search(rf"\$\{{{name}:-[^}}]+\}}", COMPOSE.read_text()), f"${{{name}}} has no default"


def test_the_freeswitch_health_check_asks_for_mod_audio_fork_with_the_mounted_password(tmp_path):
    """docker/freeswitch/healthcheck.sh against an fs_cli stand-in that records its arguments."""
    (tmp_path / "fs_cli").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\necho "$ANSWER"\n')
    (tmp_path / "fs_cli").chmod(0o755)
    conf = REPO / "freeswitch-conf/event_socket.conf.xml"
    password = ET.parse(conf).getroot().find(".//param[@name='password']").get("value")

    def probe(answer: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "ESL_CONF": str(conf), "ANSWER": answer,
               "ARGS_FILE": str(tmp_path / "args")}
        return subprocess.run(["sh", str(DOCKER / "freeswitch/healthcheck.sh")], env=env, capture_output=True,
                              text=True, timeout=10)

    assert probe("true").returncode == 0
    assert (tmp_path / "args").read_text().splitlines() == ["-p", password, "-x", "module_exists mod_audio_fork"]
    missing = probe("false")
    assert missing.returncode == 1 and "mod_audio_fork is not loaded" in missing.stderr
    assert os.access(DOCKER / "freeswitch/healthcheck.sh", os.X_OK)

