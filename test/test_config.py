"""Service configuration: YAML, environment overrides, defaults (gim.pkg.config)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from gim.pkg import config
from gim.pkg.config import (
    BaseConfig,
    BusinessConfig,
    ConfigError,
    ConnectConfig,
    LogicConfig,
    load,
    split_host_port,
)


@dataclasses.dataclass(frozen=True)
class FlagConfig(BaseConfig):
    """A config with a bool key: none of the shipped ones has one."""

    flag: bool = False
    count: int = 1


def _yaml(tmp_path: Path, text: str, name: str = "svc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load(ConnectConfig, "connect", path=tmp_path / "absent.yaml", environ={})
    assert cfg == ConnectConfig()


def test_yaml_values_load(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "tcp_listen: '0.0.0.0:9000'\nmax_body_bytes: 8192\nidle_timeout: 30\nlog_level: debug\n",
    )
    cfg = load(ConnectConfig, "connect", path=path, environ={})
    assert cfg.tcp_listen == "0.0.0.0:9000"
    assert cfg.max_body_bytes == 8192
    assert cfg.idle_timeout == 30.0
    assert isinstance(cfg.idle_timeout, float)
    assert cfg.log_level == "debug"
    # Keys not in the file keep their defaults.
    assert cfg.ws_listen == ConnectConfig().ws_listen


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "# nothing set\n")
    assert load(LogicConfig, "logic", path=path, environ={}) == LogicConfig()


def test_precedence_service_env_beats_shared_env_beats_yaml_beats_default(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "redis_url: 'redis://yaml/0'\nredis_prefix: 'yaml:'\nlog_level: warning\n")
    environ = {
        "GIM_LOGIC_REDIS_URL": "redis://service/0",
        "GIM_REDIS_URL": "redis://shared/0",
        "GIM_REDIS_PREFIX": "shared:",
    }
    cfg = load(LogicConfig, "logic", path=path, environ=environ)
    assert cfg.redis_url == "redis://service/0"  # GIM_<SERVICE>_<KEY>
    assert cfg.redis_prefix == "shared:"  # GIM_<KEY> over YAML
    assert cfg.log_level == "warning"  # YAML over default
    assert cfg.log_format == LogicConfig().log_format  # default


def test_service_env_of_another_service_is_ignored(tmp_path: Path) -> None:
    environ = {"GIM_CONNECT_REDIS_URL": "redis://connect/0"}
    cfg = load(LogicConfig, "logic", path=tmp_path / "absent.yaml", environ=environ)
    assert cfg.redis_url == LogicConfig().redis_url


def test_env_values_are_coerced(tmp_path: Path) -> None:
    environ = {"GIM_CONNECT_MAX_BODY_BYTES": "1024", "GIM_SIGN_IN_TIMEOUT": "2.5"}
    cfg = load(ConnectConfig, "connect", path=tmp_path / "absent.yaml", environ=environ)
    assert cfg.max_body_bytes == 1024
    assert cfg.sign_in_timeout == 2.5


def test_unknown_yaml_key_is_an_error_naming_the_key(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "log_level: info\nmax_bdy_bytes: 10\n")
    with pytest.raises(ConfigError, match="max_bdy_bytes"):
        load(ConnectConfig, "connect", path=path, environ={})


def test_bad_int_from_env_names_the_variable(tmp_path: Path) -> None:
    environ = {"GIM_CONNECT_MAX_BODY_BYTES": "lots"}
    with pytest.raises(ConfigError, match="GIM_CONNECT_MAX_BODY_BYTES") as info:
        load(ConnectConfig, "connect", path=tmp_path / "absent.yaml", environ=environ)
    assert "lots" in str(info.value)


def test_bad_shared_int_from_env_names_the_variable(tmp_path: Path) -> None:
    environ = {"GIM_MESSAGE_SHARDS": "ten"}
    with pytest.raises(ConfigError, match="GIM_MESSAGE_SHARDS"):
        load(LogicConfig, "logic", path=tmp_path / "absent.yaml", environ=environ)


def test_bad_int_from_yaml_names_the_key(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "message_shards: many\n")
    with pytest.raises(ConfigError, match="message_shards"):
        load(LogicConfig, "logic", path=path, environ={})


def test_yaml_bool_for_an_int_key_is_an_error(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "sync_page_size: true\n")
    with pytest.raises(ConfigError, match="sync_page_size"):
        load(LogicConfig, "logic", path=path, environ={})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("0", False), ("false", False), ("off", False)],
)
def test_bools_parse_from_env(tmp_path: Path, raw: str, expected: bool) -> None:
    cfg = load(FlagConfig, "svc", path=tmp_path / "absent.yaml", environ={"GIM_SVC_FLAG": raw})
    assert cfg.flag is expected


def test_bools_parse_from_yaml(tmp_path: Path) -> None:
    assert load(FlagConfig, "svc", path=_yaml(tmp_path, "flag: true\n"), environ={}).flag is True
    assert load(FlagConfig, "svc", path=_yaml(tmp_path, "flag: 'false'\n"), environ={}).flag is False


def test_bad_bool_from_env_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GIM_FLAG"):
        load(FlagConfig, "svc", path=tmp_path / "absent.yaml", environ={"GIM_FLAG": "maybe"})


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "log_level: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load(ConnectConfig, "connect", path=path, environ={})


def test_yaml_that_is_not_a_mapping_is_a_config_error(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(ConnectConfig, "connect", path=path, environ={})


def test_overrides_beat_everything(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "count: 2\n")
    cfg = load(FlagConfig, "svc", path=path, environ={"GIM_SVC_COUNT": "3"}, count="4")
    assert cfg.count == 4


def test_config_dir_from_environment(tmp_path: Path) -> None:
    _yaml(tmp_path, "sync_page_size: 7\n", name="logic.yaml")
    environ = {"GIM_CONFIG_DIR": str(tmp_path)}
    assert config.config_dir(environ) == tmp_path
    assert load(LogicConfig, "logic", environ=environ).sync_page_size == 7
    assert config.config_dir({}) == config.REPO_ROOT / "config"


def test_advertised_addr_defaults_to_int_listen() -> None:
    assert ConnectConfig().advertised_addr == ConnectConfig().int_listen
    assert ConnectConfig(conn_addr="10.0.0.5:50100").advertised_addr == "10.0.0.5:50100"


# --- split_host_port --------------------------------------------------------------


def test_split_host_port_ipv4() -> None:
    assert split_host_port("127.0.0.1:8080") == ("127.0.0.1", 8080)


def test_split_host_port_bracketed_ipv6() -> None:
    assert split_host_port("[::1]:80") == ("::1", 80)


def test_split_host_port_empty_host_means_all_interfaces() -> None:
    assert split_host_port(":8080") == ("0.0.0.0", 8080)


@pytest.mark.parametrize("addr", ["nohost", "host:", "host:http", ""])
def test_split_host_port_rejects(addr: str) -> None:
    with pytest.raises(ConfigError, match="tcp_listen"):
        split_host_port(addr, "tcp_listen")


# --- the shipped files ------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "cls"),
    [("connect", ConnectConfig), ("logic", LogicConfig), ("business", BusinessConfig)],
)
def test_shipped_config_files_load_and_document_the_defaults(service: str, cls: type[BaseConfig]) -> None:
    path = config.REPO_ROOT / "config" / f"{service}.yaml"
    assert path.exists()
    cfg = load(cls, service, path=path, environ={})
    assert cfg == cls()
    # Every key is written out in the file.
    keys = set(yaml.safe_load(path.read_text()))
    assert keys == {f.name for f in dataclasses.fields(cls)}
