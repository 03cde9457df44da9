"""``search.warm_start`` forms the pipeline resolves through MLflow: ``champion`` before there is one (the
first night starts cold), and a run that does not exist (a clear error, before any work)."""

import pytest

from automl.errors import ConfigError
from flows.cli import main
from tasks.warm import warm_roots


def test_champion_before_any_is_a_cold_start_and_an_unknown_run_is_refused_before_any_work(tmp_path, capsys,
                                                                                           digits_on_disk):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert warm_roots("champion", 3, uri, "automl-image-classifier") == []
    with pytest.raises(ConfigError, match="search.warm_start=0123456789abcdef: no such folder, MLflow run"):
        warm_roots("0123456789abcdef", 3, uri, "automl-image-classifier")
    csv_path, images = digits_on_disk
    code = main(["run", "--quiet", "--csv", str(csv_path), "--images", str(images), "--set", f"tracking.uri={uri}",
                 "--set", "search.warm_start=models:/nothing@champion", "--set", f"paths.work={tmp_path / 'work'}"])
    err = capsys.readouterr().err
    assert code == 2 and "search.warm_start=models:/nothing@champion: no such folder" in err and "Traceback" not in err
    assert not (tmp_path / "work" / "search").exists()  # refused before any work
