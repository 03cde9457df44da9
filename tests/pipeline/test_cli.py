"""The command line: help, parameter errors and data errors print a message, not a traceback."""

import subprocess
import sys

from tests.conftest import REPO


def automl(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_commands_and_defaults():
    out = automl("--help")
    assert out.returncode == 0
    assert all(command in out.stdout for command in ("run", "params", "predict", "report", "serve", "stage"))
    run = automl("run", "--help")
    assert "--set KEY=VALUE" in run.stdout and "--csv" in run.stdout and "automl params" in run.stdout
    flat = " ".join(run.stdout.split())
    assert flat.count("(default: ") >= 6 and "(default: params.yaml)" in flat
    for command in ("run", "check", "serve", "stage", "params", "predict", "report"):  # each its own examples
        assert f"examples:\n  automl {command}" in automl(command, "--help").stdout
    stage = automl("stage", "foo")
    assert stage.returncode == 2 and "invalid choice: 'foo' (choose from 'ingest'" in stage.stderr


def test_params_lists_every_param_with_its_default_value_and_meaning():
    from automl.config import valid_keys
    from tasks.settings import PipelineParams

    out = automl("params", "--set", "search.time_limit=60")
    assert out.returncode == 0
    assert "search.time_limit = 60.0 (default 300.0)\n    seconds for the whole search" in out.stdout
    assert all(f"\n{key} = " in "\n" + out.stdout for key in valid_keys(PipelineParams))


def test_unknown_set_key_is_an_error_listing_valid_keys():
    out = automl("run", "--set", "search.time_limt=5")
    assert out.returncode == 2
    assert "unknown parameter 'search.time_limt'" in out.stderr and "search.time_limit" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_user_csv_names_the_file_before_anything_starts(tmp_path):
    out = automl("run", "--csv", str(tmp_path / "nope.csv"), "--images", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and f"{tmp_path / 'nope.csv'}: labels CSV not found" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "mlflow.db").exists()


def test_a_non_positive_time_limit_is_refused_without_a_traceback():
    out = automl("run", "--set", "search.time_limit=-5")
    assert out.returncode == 2 and "search.time_limit must be positive" in out.stderr
    assert "Traceback" not in out.stderr


def test_servers_we_start_or_document_listen_on_loopback_only():
    import re

    from prefect.settings import get_current_settings

    assert get_current_settings().server.api.host == "127.0.0.1"  # the temporary server the flow starts
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^(?:mlflow (?:ui|server)|prefect server start).*$", readme, flags=re.M)
    assert commands and all("--host" not in c or "--host 127.0.0.1" in c for c in commands)
    assert all("--host 127.0.0.1" in c for c in commands if c.startswith("mlflow"))


def test_version_and_a_closed_pipe_are_not_errors():
    assert automl("--version").stdout.startswith("automl ")
    out = subprocess.run(f"{sys.executable} -m flows.cli params | true", shell=True, capture_output=True,
                         text=True, cwd=REPO)  # `true` has left before the first line is written
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_the_summary_points_at_where_the_runs_are_without_a_password():
    from flows.cli import browse_command

    assert browse_command("https://ann:secret@mlflow.example.org:5443/") == "https://mlflow.example.org:5443/"
    assert browse_command("sqlite:////work/mlflow.db").startswith("mlflow ui --backend-store-uri sqlite:////work/")
