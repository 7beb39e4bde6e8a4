"""The packaging files that cannot run here, checked here: linted with the tools the test extra installs,
plus assertions about what they must say.

- .github/workflows/*.yml against GitHub's published workflow schema (check-jsonschema), and every bash
  `run:` block in them through shellcheck;
- the Dockerfile with hadolint, and the config.toml it bakes in through the server's own config loader;
- every shell script (installer/*.sh, .ci/run, anything else with a shell shebang) with shellcheck;
- installer/windows.iss, installer/macos.sh, deploy/voka-bridge.service: the promises they make (per-user
  install, no hard-coded version, signing only with secrets, data kept on uninstall, hardening ...).

The Windows and macOS jobs and the Docker image build run only on GitHub's runners or a Docker daemon;
installer/windows_compile_check.sh compiles the .iss under Wine (see the last test).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from server import APP_NAME, __version__
from server.autostart import RUN_KEY, RUN_VALUE
from server.config import load_config
from tests.unavailable import unavailable

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DOCKERFILE = ROOT / "Dockerfile"
ISS = ROOT / "installer" / "windows.iss"
MACOS_SH = ROOT / "installer" / "macos.sh"
UNIT = ROOT / "deploy" / "voka-bridge.service"
DOCKER_CONFIG = ROOT / "deploy" / "docker" / "config.toml"
APP_GUID = "6B0E6E3C-58F4-4C8B-9B7A-0F4C1D2E9A11"  # never changes: upgrades find the installed copy by it
SECRETS = ("WINDOWS_CERT_PFX_BASE64", "WINDOWS_CERT_PASSWORD", "MACOS_CERT_P12_BASE64", "MACOS_CERT_PASSWORD",
           "MACOS_SIGN_IDENTITY", "APPLE_ID", "APPLE_TEAM_ID", "APPLE_APP_PASSWORD")
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "build", "dist", "__pycache__", ".pytest_cache",
                ".ruff_cache", ".hypothesis", ".mypy_cache"}
SHELL_SHEBANG = re.compile(rb"^#!\s*(/usr/bin/env\s+)?(/\S*/)?(ba|da|k)?sh\b")


def tool(name: str) -> str:
    """A linter from the test extra: beside this Python (the venv's bin/ or Scripts/), else on PATH."""
    here = Path(sys.executable).parent
    for candidate in (here / name, here / f"{name}.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (it comes with the test extra: "
                    "pip install -c constraints.txt -e '.[test]')")
    return found


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def shell_scripts() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix == ".sh":
                found.append(path)
            elif not path.suffix and path.stat().st_size < 1_000_000:
                with path.open("rb") as handle:
                    if SHELL_SHEBANG.match(handle.readline()):
                        found.append(path)
    return sorted(found)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---- GitHub workflows ------------------------------------------------------------------------------------

def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "installers.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=rel)
def test_workflow_matches_githubs_schema(workflow: Path) -> None:
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)])
    assert result.returncode == 0, result.stdout + result.stderr


def _bash_run_blocks(workflow: Path) -> list[tuple[str, str]]:
    try:
        import yaml  # PyYAML comes with the test extra (through schemathesis)
    except ImportError:
        unavailable("PyYAML is not installed (it comes with the test extra)")
    document = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    blocks = []
    top_shell = (document.get("defaults") or {}).get("run", {}).get("shell")
    for job_name, job in document["jobs"].items():
        job_shell = (job.get("defaults") or {}).get("run", {}).get("shell", top_shell)
        for index, step in enumerate(job.get("steps", [])):
            if "run" not in step:
                continue
            shell = step.get("shell", job_shell) or "bash"  # bash is the default outside Windows
            if shell == "bash":
                blocks.append((f"{job_name} step {index + 1} ({step.get('name', 'unnamed')})", step["run"]))
    return blocks


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=rel)
def test_workflow_bash_steps_pass_shellcheck(workflow: Path) -> None:
    shellcheck = tool("shellcheck")
    problems = []
    for where, script in _bash_run_blocks(workflow):
        # ${{ ... }} is filled in by GitHub before bash sees the script
        text = "#!/usr/bin/env bash\nset -eo pipefail\n" + re.sub(r"\$\{\{.*?\}\}", "GITHUB_EXPRESSION", script)
        result = run([shellcheck, "--shell=bash", "-"], input=text)
        if result.returncode != 0:
            problems.append(f"{where}:\n{result.stdout}{result.stderr}")
    assert not problems, "\n".join(problems)


def test_ci_workflow_runs_the_ci_entry_point() -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert re.search(r"run:\s*bash \.ci/run\b", text)


def test_installers_workflow_builds_tests_and_ships_every_installer() -> None:
    text = (ROOT / ".github" / "workflows" / "installers.yml").read_text(encoding="utf-8")
    runners = set(re.findall(r"^\s*-?\s*(?:os|runs-on):\s*(\S+)", text, re.M))
    assert "windows-latest" in runners
    assert {"macos-15", "macos-15-intel"} <= runners, "an arm64 and an x86_64 macOS runner"
    retired = runners & {"macos-12", "macos-13", "macos-14", "windows-2019", "ubuntu-20.04"}
    assert not retired, f"{retired}: retired runner images, the job would never start"
    assert 'python-version: "3.11"' in text
    assert '-c constraints.txt ".[installer]"' in text, "the pinned install"
    assert "pyinstaller --noconfirm installer/voka-bridge.spec" in text
    assert re.search(r"serve --demo .*--port", text) and "/health" in text and "curl --fail" in text
    assert "installer/windows.iss" in text and "/DAppVersion=" in text
    assert "installer/macos.sh" in text
    assert "actions/upload-artifact" in text and "if-no-files-found: error" in text
    assert "refs/tags/v" in text and "gh release upload" in text
    for secret in SECRETS:
        assert f"secrets.{secret}" in text, f"{secret} is not used"
    assert "unsigned build: no WINDOWS_CERT secret" in text


# ---- Docker ------------------------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint() -> None:
    result = run([tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_runs_serve_unprivileged_with_a_data_volume_and_a_healthcheck() -> None:
    steps = _instructions(DOCKERFILE)
    values = {}
    for keyword, rest in steps:
        values.setdefault(keyword, []).append(rest)
    assert values["FROM"][-1].startswith("python:3.11-slim")
    user = values["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the server must not run as root"
    assert steps.index(("USER", values["USER"][-1])) > max(i for i, (k, _) in enumerate(steps) if k == "RUN")
    assert any("/data" in v for v in values["VOLUME"])
    assert any("VOKA_BRIDGE_HOME=/data" in v for v in values["ENV"])
    healthcheck = values["HEALTHCHECK"][-1]
    assert "/health" in healthcheck and "curl" not in healthcheck
    assert any("-c constraints.txt" in v and "pip install" in v for v in values["RUN"])
    assert '"serve"' in values["CMD"][-1] and '"voka-bridge"' in values["ENTRYPOINT"][-1]


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    assert lines[lines.index("*")] == "*", "the context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for keyword, rest in _instructions(DOCKERFILE):
        if keyword != "COPY" or "--from" in rest:
            continue
        *sources, _destination = rest.split()
        for source in sources:
            source = source.rstrip("/")
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            parts = Path(source).parts
            assert any("/".join(parts[:n]) in allowed for n in range(1, len(parts) + 1)), \
                f"COPY {source}, but .dockerignore keeps it out of the build context"


def test_docker_config_is_valid_and_binds_all_interfaces_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = load_config(DOCKER_CONFIG)  # the server's own validation: unknown keys and bad values fail
    assert config.server.host == "0.0.0.0"
    assert config.server.tls or config.server.allow_insecure_http, \
        "off loopback the server needs TLS or the explicit override"
    assert "/etc/voka-bridge/config.toml" in DOCKERFILE.read_text(encoding="utf-8")
    port = tomllib.loads(DOCKER_CONFIG.read_text(encoding="utf-8"))["server"]["port"]
    assert f"127.0.0.1:{port}/health" in DOCKERFILE.read_text(encoding="utf-8")


# ---- shell scripts -----------------------------------------------------------------------------------------

def test_the_shell_scripts_are_found() -> None:
    names = {rel(p) for p in shell_scripts()}
    assert {".ci/run", "installer/macos.sh", "installer/windows_compile_check.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=rel)
def test_shell_script_passes_shellcheck(script: Path) -> None:
    result = run([tool("shellcheck"), "--external-sources", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr


# ---- Windows installer (Inno Setup) ------------------------------------------------------------------------

def _setting(text: str, name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", text, re.M)
    assert match, f"{name}= is missing"
    return match[1].strip()


def test_windows_installer_is_per_user_and_versioned_from_the_one_source() -> None:
    text = ISS.read_text(encoding="utf-8")
    assert _setting(text, "PrivilegesRequired") == "lowest"
    assert _setting(text, "DefaultDirName").startswith("{autopf}")
    assert _setting(text, "AppVersion") == "{#AppVersion}"
    assert not re.search(r'#define\s+AppVersion\s+"', text), "the version comes from /DAppVersion, never the script"
    assert __version__ not in text
    assert re.search(r"#ifndef AppVersion\s+#error", text), "compiling without /DAppVersion must fail"
    assert APP_GUID in text, "the AppId changed: an upgrade would no longer find the installed copy"
    assert "{#AppVersion}" in _setting(text, "OutputBaseFilename")
    assert _setting(text, "SetupIconFile") == "{#IconFile}" and r"build\icons\voka-bridge.ico" in text


def test_windows_installer_ships_both_programs_and_start_menu_entry() -> None:
    text = ISS.read_text(encoding="utf-8")
    assert '#define AppExe "VokaBridge.exe"' in text and '#define CliExe "voka-bridge-cli.exe"' in text
    assert re.search(r'^Source: "\{#DistDir\}\\\{#CliExe\}"', text, re.M)
    assert re.search(r'^Name: "\{autoprograms\}\\', text, re.M)


def test_windows_start_at_login_is_the_apps_own_run_key() -> None:
    text = ISS.read_text(encoding="utf-8")
    assert f'#define RunKey "{RUN_KEY}"' in text and f'#define RunValue "{RUN_VALUE}"' in text
    assert re.search(r"^Root: HKCU; Subkey: \"\{#RunKey\}\".*Tasks: startatlogin", text, re.M)


def test_windows_uninstall_keeps_the_owners_data_unless_asked() -> None:
    text = ISS.read_text(encoding="utf-8")
    # server/paths.py: platformdirs with appauthor=False puts config, data and logs in %LOCALAPPDATA%\<APP_NAME>
    assert f"{{localappdata}}\\{APP_NAME}" in text
    assert "appauthor=False" in (ROOT / "server" / "paths.py").read_text(encoding="utf-8")
    code = text[text.index("[Code]"):]
    assert "UninstallSilent()" in code and "MB_DEFBUTTON2" in code, "asks, with No as the default"
    assert re.search(r"DeleteOwnerData then\s+if not DelTree\(OwnerDataDir\(\)", code)
    assert "[UninstallDelete]" in text and "{localappdata}" not in text[text.index("[UninstallDelete]"):
                                                                       text.index("[Code]")]


def test_windows_installer_is_signed_only_when_a_certificate_is_given() -> None:
    text = ISS.read_text(encoding="utf-8")
    assert re.search(r"#ifdef SignToolName\s+SignTool=\{#SignToolName\}\s+SignedUninstaller=yes\s+#else\s+"
                     r'#pragma message "unsigned build: no WINDOWS_CERT secret', text)


def test_windows_iss_compiles_under_wine() -> None:
    """installer/windows_compile_check.sh, with Wine and Inno Setup on this machine (the script installs
    them; .ci/run runs it once before the suite, so under CI their absence is a failure)."""
    innosetup = Path(os.environ.get("INNOSETUP_DIR", "/opt/innosetup"))
    if not (shutil.which("wine") and (innosetup / "node_modules" / "innosetup" / "bin" / "ISCC.exe").is_file()):
        unavailable("Wine or Inno Setup is not installed: run installer/windows_compile_check.sh once (root)")
    result = run(["bash", str(ROOT / "installer" / "windows_compile_check.sh")],
                 env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"VokaBridge-Setup-{__version__}-x64.exe" in result.stdout


# ---- macOS ----------------------------------------------------------------------------------------------

def test_macos_script_signs_notarizes_and_names_the_dmg() -> None:
    text = MACOS_SH.read_text(encoding="utf-8")
    assert 'python -m pip install -c constraints.txt ".[installer]"' in text.replace('"$python"', "python")
    assert "installer/voka-bridge.spec" in text
    assert "import server; print(server.__version__)" in text
    assert re.search(r"codesign --force --options runtime --timestamp --entitlements", text)
    assert "codesign --deep" not in text.replace("--verify --deep", ""), "sign inside-out, not with --deep"
    assert "xcrun notarytool submit" in text and "--wait" in text and "xcrun stapler staple" in text
    assert "ln -s /Applications" in text and "hdiutil create" in text and "-srcfolder" in text
    assert re.search(r'dmg="dist/VokaBridge-\$version-macos-\$arch\.dmg"', text)
    assert "unsigned build:" in text and "not notarized:" in text
    assert "LSUIElement" in text


# ---- systemd ------------------------------------------------------------------------------------------------

def test_systemd_unit_runs_serve_hardened() -> None:
    text = UNIT.read_text(encoding="utf-8")
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    assert settings["User"] == ["voka"]
    assert settings["ExecStart"] == ["/opt/voka-bridge/venv/bin/voka-bridge serve --home /var/lib/voka-bridge"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["EnvironmentFile"], "DATABASE_URL and MCP_API_KEY come from an environment file"
    assert "DATABASE_URL=" in text and "MCP_API_KEY=" in text
    assert settings["NoNewPrivileges"] == ["yes"] and settings["ProtectSystem"] == ["strict"]
    assert settings["ReadWritePaths"] == ["/var/lib/voka-bridge"]


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (Debian package systemd); the unit is checked as text above")
    # The unit names the documented install location; point it at this environment's voka-bridge to verify.
    program = Path(sys.executable).parent / "voka-bridge"
    if not program.is_file():
        unavailable(f"{program} is missing (install the project into this Python)")
    unit = tmp_path / "voka-bridge.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/voka-bridge/venv/bin/voka-bridge", str(program)),
                    encoding="utf-8")
    result = run([analyze, "verify", str(unit)])
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr
