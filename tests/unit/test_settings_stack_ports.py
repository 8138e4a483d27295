"""Without an option or a variable, commands use the ports the local stack was started on.

``griddispatch up`` / ``stack up`` may run Kafka and Redis on other ports than 9092 and 6379;
a command that fell back to the plain defaults would silently talk to another broker. The
ports file is written here with the stack's own ``StackPorts``, so a renamed key fails here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from engine.cli import main, report_cmd
from engine.cli.stack import StackPorts
from engine.runtime.report_source import CasesRead
from engine.runtime.settings import DEFAULT_KAFKA, DEFAULT_REDIS, Settings

VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "GRIDDISPATCH_STACK_DIR")


def write_ports(folder: Path, kafka: int = 19092, redis: int = 16379) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ports.json").write_text(json.dumps(asdict(StackPorts(
        kafka=kafka, kafka_controller=kafka + 1, redis=redis))) + "\n")
    return folder


@pytest.fixture(autouse=True)
def no_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A clean environment, in an empty folder (no .stack of a developer's `make run`)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_stack_ports_in_dot_stack_are_the_defaults(tmp_path: Path) -> None:
    write_ports(tmp_path / ".stack")
    settings = Settings.from_env()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.redis_url == "redis://127.0.0.1:16379/0"


def test_griddispatch_stack_dir_moves_the_stack(tmp_path: Path) -> None:
    write_ports(tmp_path / ".stack")
    elsewhere = write_ports(tmp_path / "other", kafka=29092, redis=26379)
    settings = Settings.from_env({"GRIDDISPATCH_STACK_DIR": str(elsewhere)})
    assert settings.kafka_bootstrap == "127.0.0.1:29092"
    assert settings.redis_url == "redis://127.0.0.1:26379/0"


def test_variables_win_over_the_stack_each_on_its_own(tmp_path: Path) -> None:
    write_ports(tmp_path / ".stack")
    kafka_only = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "broker:9093"})
    assert (kafka_only.kafka_bootstrap, kafka_only.redis_url) == (
        "broker:9093", "redis://127.0.0.1:16379/0")
    redis_only = Settings.from_env({"REDIS_URL": "redis://cache:6380/2"})
    assert (redis_only.kafka_bootstrap, redis_only.redis_url) == (
        "127.0.0.1:19092", "redis://cache:6380/2")
    empty = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": ""})  # unset, as in the tests
    assert empty.kafka_bootstrap == "127.0.0.1:19092"


@pytest.mark.parametrize("content", [None, "", "not json", "[9092]", '{"kafka": "19092"}',
                                     '{"kafka": true}', '{"kafka": 70000}'])
def test_no_usable_ports_file_means_the_plain_defaults(tmp_path: Path,
                                                       content: str | None) -> None:
    if content is not None:
        (tmp_path / ".stack").mkdir()
        (tmp_path / ".stack" / "ports.json").write_text(content)
    settings = Settings.from_env()
    assert (settings.kafka_bootstrap, settings.redis_url) == (DEFAULT_KAFKA, DEFAULT_REDIS)


def test_every_command_gets_them_and_options_still_win(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``main``, as ``report`` (and ``dept``, ``timers``…) receive them."""
    write_ports(tmp_path / ".stack")
    seen: list[Settings] = []

    def read_cases(settings: Settings, timeout: float) -> CasesRead:
        seen.append(settings)
        return CasesRead([], 0)

    monkeypatch.setattr(report_cmd, "read_cases", read_cases)
    rules = ["--rules-dir", str(Path(__file__).resolve().parents[2] / "rules")]
    assert main(["report", *rules]) == 0
    assert main(["--bootstrap", "127.0.0.1:9999", "--redis", "redis://h:1/0", "report",
                 *rules]) == 0
    assert [(s.kafka_bootstrap, s.redis_url) for s in seen] == [
        ("127.0.0.1:19092", "redis://127.0.0.1:16379/0"), ("127.0.0.1:9999", "redis://h:1/0")]


def test_the_global_help_says_where_the_default_comes_from(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("default: $KAFKA_BOOTSTRAP_SERVERS, else the port 'up' chose (.stack/ports.json), "
            "else 127.0.0.1:9092") in text
    assert "default: $REDIS_URL, else the port 'up' chose" in text




def test_a_secure_stack_lends_its_admin_credentials_unless_told_otherwise(
        tmp_path: Path) -> None:
    stack = write_ports(tmp_path / "stack")
    (stack / "kafka").mkdir()
    (stack / "kafka" / "secrets.json").write_text('{"admin": "pw", "controller": "c"}')
    env = {"GRIDDISPATCH_STACK_DIR": str(stack)}
    assert dict(Settings.from_env(env).kafka_extra) == {
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "admin", "sasl.password": "pw"}
    # credentials of one's own win; another cluster's bootstrap takes none of the stack's
    mine = {**env, "GRIDDISPATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "GRIDDISPATCH_KAFKA_SASL_USERNAME": "330110005.zhzf"}
    assert dict(Settings.from_env(mine).kafka_extra)["sasl.username"] == "330110005.zhzf"
    assert Settings.from_env({**env, "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}).kafka_extra == ()
