import pytest

from automl.config import Params, load_params, parse_set
from automl.errors import ConfigError
from flows.params_doc import HELP, params_yaml
from tasks.settings import PipelineParams
from tests.conftest import REPO


def test_params_yaml_is_what_automl_params_writes_and_every_param_is_explained():
    assert set(HELP) == set(PipelineParams().flat())
    assert (REPO / "params.yaml").read_text() == params_yaml(PipelineParams())


def test_the_library_params_hold_no_pipeline_section_and_the_pipeline_checks_its_own():
    assert not {"data", "tracking", "runner", "paths"} & {k.split(".")[0] for k in Params().flat()}
    assert PipelineParams().replace(**{"search.time_limit": 5}).search_params() == \
        Params().replace(**{"search.time_limit": 5}).flat()
    with pytest.raises(ConfigError, match="runner.kind"):
        PipelineParams().replace(**{"runner.kind": "cloud"})


def test_overrides_are_typed_and_unknown_keys_list_the_valid_ones(tmp_path):
    params = load_params(tmp_path / "absent.yaml", parse_set(["search.time_limit=120", "train.flip=true"]))
    assert params.search.time_limit == 120.0 and params.train.flip is True
    with pytest.raises(ConfigError, match="unknown parameter 'search.time_limt'.*search.time_limit"):
        load_params(None, {"search.time_limt": "1"})
    with pytest.raises(ConfigError, match="expected a int"):
        Params().replace(**{"train.batch_size": "many"})


@pytest.mark.parametrize("key,value,message", [
    ("search.time_limit", "0", "time_limit must be positive"),
    ("split.test_fraction", "0.95", "split"),
    ("search.strategy", "magic", "strategy"),
    ("train.lr_schedule", "step", "lr_schedule"),
    ("final_fit.fitted_members", "2", "fitted_members must be between 1 and final_fit.ensemble"),  # ensemble 1
    ("search.extra_seed_widths", "128,wide", "extra_seed_widths must be whole numbers"),
    ("search.extra_seed_widths", "1024", "extra_seed_widths must be whole numbers between 1 and search.max_width"),
    ("train.label_smoothing", "1", "label_smoothing must be in"),
])
def test_out_of_range_values_are_refused(key, value, message):
    with pytest.raises(ConfigError, match=message):
        Params().replace(**{key: value})


def test_bad_set_syntax_and_yaml_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["search.time_limit"])
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [1, 2]\n")
    with pytest.raises(ConfigError, match=f"{bad}.*train.*mapping"):
        load_params(bad)
