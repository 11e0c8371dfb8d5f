"""Service configuration: YAML, environment overrides, defaults (gim.pkg.config)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
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

SHIPPED = {"connect": ConnectConfig, "logic": LogicConfig, "business": BusinessConfig}


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


# --- ranges and formats (issue 14, item 5) ----------------------------------------


def _error(cls: type[BaseConfig], service: str, environ: dict[str, str], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(cls, service, path=tmp_path / "absent.yaml", environ=environ)
    message = str(info.value)
    assert "\n" not in message, "one line"
    return message


@pytest.mark.parametrize(
    ("service", "var", "value", "expected"),
    [
        ("logic", "GIM_LOGIC_SYNC_PAGE_SIZE", "0", "expected an integer from 1 to 1000"),
        ("logic", "GIM_SYNC_PAGE_SIZE", "-5", "expected an integer from 1 to 1000"),
        ("logic", "GIM_LOGIC_SYNC_PAGE_SIZE", "1001", "expected an integer from 1 to 1000"),
        ("logic", "GIM_LOG_LEVEL", "verbose", "expected one of debug, info, warning, error"),
        ("connect", "GIM_LOG_FORMAT", "xml", "expected one of console, json"),
        ("business", "GIM_GRPC_STATUS", "grpc", "expected one of gim, standard"),
        ("logic", "GIM_LOGIC_EXT_LISTEN", "127.0.0.1:99999", "expected host:port (port 0..65535)"),
        ("connect", "GIM_CONNECT_TCP_LISTEN", "8080", "expected host:port (port 0..65535)"),
        ("connect", "GIM_CONNECT_WS_LISTEN", "localhost", "expected host:port"),
        ("logic", "GIM_LOGIC_RPC_TIMEOUT", "-1", "expected a finite number of seconds > 0"),
        ("connect", "GIM_CONNECT_IDLE_TIMEOUT", "0", "expected a finite number of seconds > 0"),
        ("connect", "GIM_SIGN_IN_TIMEOUT", "nan", "expected a finite number of seconds > 0"),
        ("connect", "GIM_CLOSE_TIMEOUT", "inf", "expected a finite number of seconds > 0"),
        ("logic", "GIM_AUTH_CACHE_SECONDS", "-0.5", "expected a finite number of seconds >= 0"),
        ("logic", "GIM_MESSAGE_SHARDS", "0", "expected an integer from 1 to 1000"),
        ("business", "GIM_BUSINESS_MESSAGE_SHARDS", "1001", "expected an integer from 1 to 1000"),
        ("connect", "GIM_MAX_BODY_BYTES", "70000", "expected an integer from 1 to 65535"),
        ("connect", "GIM_WRITE_BUFFER_LIMIT", "0", "expected an integer >= 1"),
        ("business", "GIM_TOKEN_TTL", "0", "expected an integer >= 1"),
        ("logic", "GIM_CACHE_TTL", "-1", "expected an integer >= 1"),
        ("logic", "GIM_MAX_CONTENT_BYTES", "65536", "expected an integer from 1 to 60000"),
        ("logic", "GIM_DATABASE_URL", "postgres://gim@db/gim", "unsupported database 'postgres': gim supports"),
        ("logic", "GIM_DATABASE_URL", "var/gim.db", "expected a database URL: gim supports"),
        ("logic", "GIM_DATABASE_URL", "mysql://gim@db:port/gim", "not a database URL"),
        ("connect", "GIM_REDIS_URL", "http://127.0.0.1:6379", "expected a URL starting redis://, rediss://, unix://"),
        ("connect", "GIM_CONNECT_LOGIC_INT_ADDR", "127.0.0.1:0", "expected host:port (port 1..65535)"),
        ("connect", "GIM_CONNECT_LOGIC_INT_ADDR", ":50000", "expected host:port (port 1..65535)"),
        ("business", "GIM_BUSINESS_LOGIC_INT_ADDR", "logic-1:50000,logic-2:50000", "'logic-1:50000': expected"),
        ("logic", "GIM_BUSINESS_INT_ADDR", "10.0.0.1:50300,10.0.0.2", "'10.0.0.2': expected"),
        ("connect", "GIM_CONNECT_CONN_ADDR", "10.0.0.1:50100,10.0.0.2:50100", "expected host:port (port 1..65535)"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_what_is_expected(
    tmp_path: Path, service: str, var: str, value: str, expected: str
) -> None:
    message = _error(SHIPPED[service], service, {var: value}, tmp_path)
    assert message.startswith(f"{var}={value}: "), message
    assert expected in message


def test_postgres_names_the_supported_schemes(tmp_path: Path) -> None:
    message = _error(LogicConfig, "logic", {"GIM_DATABASE_URL": "postgres://gim@db/gim"}, tmp_path)
    assert message == (
        "GIM_DATABASE_URL=postgres://gim@db/gim: unsupported database 'postgres': "
        "gim supports sqlite+aiosqlite://, sqlite://, mysql+asyncmy://, mysql://"
    )


def test_a_password_in_a_bad_url_is_not_shown(tmp_path: Path) -> None:
    message = _error(LogicConfig, "logic", {"GIM_DATABASE_URL": "postgres://gim:s3cret@db/gim"}, tmp_path)
    assert "s3cret" not in message
    assert "postgres://gim:***@db/gim" in message
    message = _error(ConnectConfig, "connect", {"GIM_REDIS_URL": "http://:s3cret@redis:6379/0"}, tmp_path)
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sync_page_size: 0\n", "sync_page_size=0"),
        ("sync_page_size: -5\n", "sync_page_size=-5"),
        ("message_shards: 0\n", "message_shards=0"),
        ("log_level: verbose\n", "log_level=verbose"),
        ("ext_listen: '127.0.0.1:99999'\n", "ext_listen=127.0.0.1:99999"),
        ("rpc_timeout: -1\n", "rpc_timeout=-1"),
        ("database_url: 'postgres://gim@db/gim'\n", "database_url=postgres://gim@db/gim"),
    ],
)
def test_a_bad_value_in_yaml_names_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = _yaml(tmp_path, text, name="logic.yaml")
    with pytest.raises(ConfigError) as info:
        load(LogicConfig, "logic", path=path, environ={})
    assert str(info.value).startswith(f"{path}: {key}: "), str(info.value)
    assert "\n" not in str(info.value)


def test_only_the_value_that_wins_is_checked(tmp_path: Path) -> None:
    """A bad value in the file that the environment overrides does not count (precedence
    is applied first, then the value in use is checked)."""
    path = _yaml(tmp_path, "sync_page_size: 0\n", name="logic.yaml")
    cfg = load(LogicConfig, "logic", path=path, environ={"GIM_LOGIC_SYNC_PAGE_SIZE": "20"})
    assert cfg.sync_page_size == 20


def test_a_bad_value_given_in_code_is_refused_too() -> None:
    with pytest.raises(ConfigError, match=r"^sync_page_size=0: expected an integer from 1 to 1000$"):
        LogicConfig(sync_page_size=0)
    with pytest.raises(ConfigError, match=r"^tcp_listen='8080': expected host:port"):
        ConnectConfig(tcp_listen="8080")
    with pytest.raises(ConfigError, match=r"^sync_page_size='5': expected an integer$"):
        LogicConfig(sync_page_size="5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^flag=2: expected true or false$"):
        FlagConfig(flag=2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^message_shards=0:"):
        load(LogicConfig, "logic", path=Path("/nonexistent.yaml"), environ={}, message_shards=0)


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (ConnectConfig, {"tcp_listen": "127.0.0.1:0", "ws_listen": ":0", "int_listen": "[::1]:0"}),
        (ConnectConfig, {"conn_addr": "", "logic_int_addr": "10.0.0.1:50000, 10.0.0.2:50000"}),
        (ConnectConfig, {"conn_addr": "connect-1:50100", "logic_int_addr": "logic:50000"}),
        (ConnectConfig, {"logic_int_addr": "[::1]:50000,[::2]:50000", "max_body_bytes": 65535}),
        (ConnectConfig, {"redis_url": "unix:///run/redis.sock?db=0", "log_level": "debug", "log_format": "json"}),
        (ConnectConfig, {"redis_url": "rediss://:pw@redis:6380/0", "idle_timeout": 0.5, "rpc_timeout": 1}),
        (LogicConfig, {"database_url": "mysql://gim:pw@db:3306/gim", "message_shards": 1, "sync_page_size": 1}),
        (LogicConfig, {"database_url": "mysql+asyncmy://gim@db/gim", "message_shards": 1000, "sync_page_size": 1000}),
        (LogicConfig, {"database_url": "sqlite:///var/gim.db", "auth_cache_seconds": 0, "grpc_status": "standard"}),
        (BusinessConfig, {"database_url": "sqlite+aiosqlite:///:memory:", "dev_code": "0000", "search_limit": 1}),
    ],
)
def test_values_at_the_edges_of_their_ranges_are_accepted(cls: type[BaseConfig], values: dict[str, object]) -> None:
    cfg = cls(**values)  # type: ignore[arg-type]
    assert {key: getattr(cfg, key) for key in values} == values


def test_every_key_of_every_service_has_a_check() -> None:
    """A new key gets its range or format in CHECKS, not just a type."""
    for cls in SHIPPED.values():
        for field in dataclasses.fields(cls):
            assert field.name in config.CHECKS, f"{cls.__name__}.{field.name} has no entry in CHECKS"


def test_the_defaults_pass_their_own_checks() -> None:
    for cls in SHIPPED.values():
        cfg = cls()
        for field in dataclasses.fields(cls):
            assert config.CHECKS[field.name](getattr(cfg, field.name)) is None, field.name


# --- GIM_* variables that are no setting ---------------------------------------------


def test_a_misspelled_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    message = _error(LogicConfig, "logic", {"GIM_LOGIC_SYNC_PAGESIZE": "10"}, tmp_path)
    assert message == "GIM_LOGIC_SYNC_PAGESIZE is not a gim setting (did you mean GIM_LOGIC_SYNC_PAGE_SIZE?)"


def test_a_misspelled_variable_of_another_service_is_reported_too(tmp_path: Path) -> None:
    message = _error(LogicConfig, "logic", {"GIM_CONECT_TCP_LISTEN": "127.0.0.1:8080"}, tmp_path)
    assert message == "GIM_CONECT_TCP_LISTEN is not a gim setting (did you mean GIM_CONNECT_TCP_LISTEN?)"


def test_a_key_under_a_service_that_lacks_it_is_reported(tmp_path: Path) -> None:
    message = _error(ConnectConfig, "connect", {"GIM_CONNECT_DATABASE_URL": "sqlite:///x.db"}, tmp_path)
    assert message == "GIM_CONNECT_DATABASE_URL is not a gim setting: connect has no key database_url"


def test_every_unknown_variable_is_reported_at_once(tmp_path: Path) -> None:
    environ = {"GIM_NOPE": "1", "GIM_LOG_LEVL": "info", "GIM_LOG_LEVEL": "info"}
    message = _error(ConnectConfig, "connect", environ, tmp_path)
    assert message == ("GIM_LOG_LEVL is not a gim setting (did you mean GIM_LOG_LEVEL?); GIM_NOPE is not a gim setting")


def test_settings_of_other_services_and_other_gim_variables_are_accepted(tmp_path: Path) -> None:
    environ = {
        "GIM_DATABASE_URL": "sqlite:///x.db",  # a key of logic and business, shared
        "GIM_LOGIC_DATABASE_URL": "sqlite:///y.db",  # a key of logic
        "GIM_BUSINESS_INT_ADDR": "127.0.0.1:50300",  # logic's business_int_addr, as GIM_<KEY>
        "GIM_BUSINESS_TOKEN_TTL": "60",
        "GIM_LOGIC_SYNC_PAGE_SIZE": "0",  # logic's to refuse, not connect's
        "lowercase_gim_is_not_ours": "x",
        **{var: "x" for var in config.OTHER_VARIABLES if var != "GIM_CONFIG_DIR"},
    }
    cfg = load(ConnectConfig, "connect", path=tmp_path / "absent.yaml", environ=environ)
    assert cfg == ConnectConfig()


def _variables_named_in_the_repository() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=config.REPO_ROOT, capture_output=True, check=True, timeout=30
    ).stdout.split(b"\0")
    names: set[str] = set()
    for name in filter(None, listed):
        path = config.REPO_ROOT / name.decode()
        if path.name == "test_config.py" or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        names.update(m for m in re.findall(r"\bGIM_[A-Z0-9_]*[A-Z0-9]\b", text))
    return names - {"GIM_CODE_KEY"}  # pkg/errors.py: a Python constant, not a variable


def test_every_gim_variable_the_repository_uses_is_accepted(tmp_path: Path) -> None:
    """A GIM_* variable set anywhere in the project (launcher, docs, compose, CI) is a
    setting or listed in OTHER_VARIABLES: else every service would refuse to start."""
    names = _variables_named_in_the_repository()
    assert {"GIM_CONFIG_DIR", "GIM_TEST_MYSQL_URL", "GIM_DATABASE_URL"} <= names
    for service, cls in SHIPPED.items():
        environ = dict.fromkeys(names, "x")
        environ["GIM_CONFIG_DIR"] = str(tmp_path)
        config._check_variables(environ, service, cls)  # raises on the first unknown one


# --- a service started with a bad value -----------------------------------------------


@pytest.mark.integration  # starts a gim process
@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("GIM_LOGIC_SYNC_PAGE_SIZE", "0", "GIM_LOGIC_SYNC_PAGE_SIZE=0: expected an integer from 1 to 1000"),
        ("GIM_LOGIC_SYNC_PAGESIZE", "10", "GIM_LOGIC_SYNC_PAGESIZE is not a gim setting (did you mean"),
        ("GIM_DATABASE_URL", "postgres://gim@db/gim", "GIM_DATABASE_URL=postgres://gim@db/gim: unsupported database"),
    ],
)
def test_a_service_with_a_bad_value_prints_one_line_and_exits_non_zero(
    tmp_path: Path, var: str, value: str, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    # Were the value accepted, the service would start on free ports and a throwaway
    # database, and be stopped when the wait below runs out.
    env |= {
        "GIM_CONFIG_DIR": str(tmp_path),
        "GIM_LOGIC_INT_LISTEN": "127.0.0.1:0",
        "GIM_LOGIC_EXT_LISTEN": "127.0.0.1:0",
        "GIM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}",
        var: value,
    }
    gim_logic = Path(sys.executable).with_name("gim-logic")
    proc = subprocess.Popen([gim_logic], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    lines = err.decode().splitlines()
    assert proc.returncode not in (0, None)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"gim-logic: bad configuration: {expected}"), lines
    assert out == b""


@pytest.mark.integration  # starts a gim process
def test_a_config_file_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    """`--config PATH` names a file: a wrong path is said, not taken for "use the defaults"."""
    exe = Path(sys.executable).with_name("gim-logic")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    done = subprocess.run(
        [str(exe), "--config", str(tmp_path / "logic.yml")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stderr.strip() == f"gim-logic: bad configuration: {tmp_path / 'logic.yml'}: no such file"
