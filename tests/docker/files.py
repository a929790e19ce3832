"""Readers for docker/: Dockerfile instructions, compose interpolation, the entrypoint's lists, the real Settings.

No Docker engine runs in the tests, so these read the files the way Docker and compose do, far enough to check
them against the repository and against controller.config itself.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from controller.config import ENV_PREFIX, Secret, Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
ENTRYPOINT = DOCKER / "entrypoint.sh"
ENV_EXAMPLE = DOCKER / ".env.example"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY...
    args: str  # continuation lines joined, as Docker joins them
    stage: int  # 0-based index of the FROM it belongs to
    line: int

    def exec_form(self) -> list[str]:
        return exec_form(self.args)

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading --name=value options and the rest (COPY --from=build a b, HEALTHCHECK --interval=5s CMD ...)."""
        options, rest = {}, self.args
        while match := re.match(r"--([a-z-]+)=(\S+)\s+", rest):
            options[match.group(1)] = match.group(2)
            rest = rest[match.end():]
        return options, rest


def exec_form(text: str) -> list[str]:
    """A JSON array of strings (ENTRYPOINT ["a", "b"]); shell form is refused: signals would reach /bin/sh."""
    value = json.loads(text)
    if not (isinstance(value, list) and value and all(isinstance(item, str) for item in value)):
        raise ValueError(f"not an exec-form JSON array: {text}")
    return value


def dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions, with comment lines dropped and backslash continuations joined."""
    result: list[Instruction] = []
    stage, pending, start = -1, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text, pending = pending + stripped, ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, args.strip(), stage, start))
    return result


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """ENV a=b c=d (the only ENV form the Dockerfile uses), quotes removed."""
    pairs = {}
    for word in shlex.split(instruction.args):
        name, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"line {instruction.line}: ENV without '=': {instruction.args}")
        pairs[name] = value
    return pairs


def image_path_to_repo(image_path: str, instructions: list[Instruction]) -> Path:
    """The repository file a final-stage `COPY src dest` put at image_path (a bare name: dest on PATH)."""
    last = max(i.stage for i in instructions)
    for copy in (i for i in instructions if i.keyword == "COPY" and i.stage == last):
        options, rest = copy.flags()
        if "from" in options:
            continue
        *sources, dest = rest.split()
        if dest == image_path or ("/" not in image_path and dest.rsplit("/", 1)[-1] == image_path):
            assert len(sources) == 1, copy
            return REPO / sources[0]
    raise AssertionError(f"no COPY in the final stage puts a file at {image_path}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=value lines of a compose .env file."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            pairs[key.strip()] = value.strip()
    return pairs


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME-default}; $$ is a literal $."""
    def one(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if name in variables and (variables[name] or operator != ":-"):
            return variables[name]
        if operator is None:
            raise AssertionError(f"${{{name}}} has no default and is not set")
        return default
    return _INTERPOLATION.sub(one, value).replace("$$", "$")


def interpolated_names(text: str) -> set[str]:
    return {match.group(1) for match in _INTERPOLATION.finditer(text)}


def settings_env_names() -> dict[str, str]:
    """VOXGATE_* variable name -> Settings field, for every field a user can set."""
    return {ENV_PREFIX + f.name.upper(): f.name for f in fields(Settings) if f.name != "token_secret_ephemeral"}


def secret_env_names() -> set[str]:
    """The VOXGATE_* names of every Settings field typed Secret (or Secret | None)."""
    hints = get_type_hints(Settings)
    return {ENV_PREFIX + name.upper() for name, kind in hints.items() if Secret in (kind, *get_args(kind))}


def entrypoint_list(name: str) -> set[str]:
    """The words of a NAME="..." list in docker/entrypoint.sh (SECRETS, REQUIRED)."""
    match = re.search(rf'^{name}="([^"]*)"', ENTRYPOINT.read_text(), re.MULTILINE)
    assert match, f"docker/entrypoint.sh has no {name}=\"...\" list"
    return set(match.group(1).split())
