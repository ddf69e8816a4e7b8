"""The MLflow pyfunc flavor against a local file-based tracking store (no server, no network): logged,
loaded with mlflow.pyfunc.load_model and through mlflow.pyfunc.spark_udf on a real local SparkSession,
equal to the in-process engine and to gliclass_udf."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no SQL store; no server needed
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
mlflow = pytest.importorskip("mlflow")
pd = pytest.importorskip("pandas")

pytest.register_assert_rewrite("integrations_support")
from integrations_support import LABELS, TEXTS, assert_same, expected  # noqa: E402

from gliclass_pipelines.errors import ConfigError  # noqa: E402

TAXONOMY = {"labels": LABELS, "thresholds": {"games": 0.3}}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri((tmp_path_factory.mktemp("mlruns")).as_uri())
    mlflow.set_experiment("gliclass-tests")
    yield
    mlflow.set_tracking_uri(before)


@pytest.fixture(scope="module")
def logged(tracking, tiny_checkpoint):
    """Model URIs, one per output kind, each logged in its own run."""
    from gliclass_pipelines.mlflow_flavor import log_model

    uris = {}
    for output in ("labels", "top", "scores"):
        with mlflow.start_run():
            uris[output] = log_model(tiny_checkpoint, "gliclass", labels=TAXONOMY, output=output).model_uri
    return uris


def test_pyfunc_predict_equals_engine(logged, tiny_checkpoint):
    model = mlflow.pyfunc.load_model(logged["labels"])
    frame = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS}, index=range(10, 10 + len(TEXTS)))
    got = model.predict(frame)
    assert isinstance(got, list)
    assert_same(got, expected(str(tiny_checkpoint), TEXTS, TAXONOMY), "labels")
    local = mlflow.artifacts.download_artifacts(logged["labels"])
    assert os.path.isfile(os.path.join(local, "artifacts", "checkpoint", "config.json"))


PAYLOADS = {
    "inputs": {"inputs": ["TEXT0", "TEXT1", 3]},
    "instances": {"instances": ["TEXT0", "TEXT1", 3]},
    "inputs_columns": {"inputs": {"text": ["TEXT0", "TEXT1", 3]}},
    "instances_records": {"instances": [{"text": "TEXT0"}, {"text": "TEXT1"}, {"text": 3}]},
    "dataframe_split": {"dataframe_split": {"columns": ["text"], "data": [["TEXT0"], ["TEXT1"], [3]]}},
    "dataframe_records": {"dataframe_records": [{"text": "TEXT0"}, {"text": "TEXT1"}, {"text": 3}]},
}


def payload(shape: str, texts: list[str]) -> str:
    import json

    return json.dumps(PAYLOADS[shape]).replace("TEXT0", texts[0]).replace("TEXT1", texts[1])


@pytest.mark.parametrize("shape", sorted(PAYLOADS))
def test_every_serving_payload_gives_plain_rows(logged, tiny_checkpoint, shape):
    """Each JSON payload, parsed by MLflow's scoring server code into what it hands predict (an ndarray, a
    dict of columns, a DataFrame): one plain result per row, and a number is a failed row with a reason."""
    import json

    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    model = mlflow.pyfunc.load_model(logged["labels"])
    texts = [t for t in TEXTS if t and t.strip()][:2]
    got = model.predict(
        infer_and_parse_data(json.loads(payload(shape, texts)), model.metadata.get_input_schema())
    )
    assert isinstance(got, list) and len(got) == 3
    assert_same(got[:2], expected(str(tiny_checkpoint), texts, TAXONOMY), "labels")
    if shape == "instances_records":  # MLflow's own parser makes an array of str of these: 3 arrives as "3"
        assert isinstance(got[2], list)
    else:
        assert set(got[2]) == {"error"} and "int" in got[2]["error"]


def test_a_wrongly_named_column_is_an_error(logged):
    import json

    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    model = mlflow.pyfunc.load_model(logged["labels"])
    data = infer_and_parse_data(
        json.loads('{"dataframe_records": [{"body": "a"}]}'), model.metadata.get_input_schema()
    )
    with pytest.raises(mlflow.exceptions.MlflowException, match="text"):
        model.predict(data)


@pytest.mark.spark
def test_spark_udf_equals_gliclass_udf(logged, spark, tiny_checkpoint):
    """Every output kind in one job: spark_udf's JSON, parsed, is the column gliclass_udf gives."""
    from gliclass_pipelines.mlflow_flavor import parse_json
    from gliclass_pipelines.spark.udf import gliclass_udf

    frame = spark.createDataFrame(list(enumerate(TEXTS)), "id int, text string").repartition(2)
    columns = ["id"]
    for output, uri in logged.items():
        udf = mlflow.pyfunc.spark_udf(
            spark, uri, result_type="string", env_manager="local", model_config={"result_format": "json"}
        )
        columns.append(parse_json(udf("text"), output).alias(f"mlflow_{output}"))
        ours = gliclass_udf("text", labels=TAXONOMY, model=str(tiny_checkpoint), output=output)
        columns.append(ours.alias(f"udf_{output}"))
    rows = frame.select(*columns).orderBy("id").collect()
    for output in logged:
        got = [r[f"mlflow_{output}"] for r in rows]
        assert got == [r[f"udf_{output}"] for r in rows], output
        assert_same(got, expected(str(tiny_checkpoint), TEXTS, TAXONOMY, output), output)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": []},
        {"labels": LABELS, "output": "best"},
        {"labels": LABELS, "threshold": 2},
        {"labels": LABELS, "result_format": "xml"},
        {"labels": LABELS, "num_beams": 3},
    ],
)
def test_bad_settings_raise_before_anything_is_logged(tracking, tiny_checkpoint, kwargs):
    from gliclass_pipelines.mlflow_flavor import log_model

    with mlflow.start_run() as run, pytest.raises(ConfigError):
        log_model(tiny_checkpoint, "bad", **kwargs)
    assert mlflow.MlflowClient().list_artifacts(run.info.run_id) == []


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_a_symlink_out_of_the_checkpoint_is_refused(tracking, tiny_checkpoint, tmp_path):
    from gliclass_pipelines.mlflow_flavor import save_model

    hostile = tmp_path / "hostile"
    hostile.mkdir()
    for name in os.listdir(tiny_checkpoint):
        os.symlink(tiny_checkpoint / name, hostile / name)  # points outside `hostile`
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the tracking server")
    with pytest.raises(ConfigError, match="not a regular file inside"):
        save_model(tmp_path / "out", hostile, LABELS)
    assert not (tmp_path / "out").exists()


def test_int8_is_logged_and_restored(tracking, tiny_checkpoint):
    pytest.importorskip("onnxruntime")
    from gliclass_pipelines.mlflow_flavor import log_model

    with mlflow.start_run():
        uri = log_model(tiny_checkpoint, "int8", labels=LABELS, output="scores", precision="int8").model_uri
    model = mlflow.pyfunc.load_model(uri)
    assert model.model_config["settings"]["precision"] == "int8"
    restored = model.unwrap_python_model().config
    assert restored.precision == "int8"
    assert type(restored.classifier().forward_pass.inner.encoder_model).__name__ == "Int8Encoder"
    got = list(model.predict(pd.DataFrame({"text": TEXTS})))
    want = expected(str(tiny_checkpoint), TEXTS, output="scores", precision="int8")
    assert_same(got, want, "scores")
    float32 = expected(str(tiny_checkpoint), TEXTS, output="scores")
    assert max(abs(w[k] - f[k]) for w, f in zip(want, float32) if w for k in w) > 1e-3  # really int8
