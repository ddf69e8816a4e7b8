"""Taxonomy: flattening like the reference package, validation, loading, thresholds, round trips."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import pickle
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.labels import MARKERS, flatten_labels, normalize_label
from gliclass_pipelines.taxonomy.rules import Example
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

reference = pytest.importorskip("gliclass.pipeline")
oracle = reference.flatten_hierarchical_labels

# --------------------------------------------------------------------------------------------------
# Flattening matches the reference


NESTED = [
    ["positive", "negative", "neutral"],
    {"sentiment": ["positive", "negative", "neutral"], "topic": ["product", "service", "shipping"]},
    {"category": {"electronics": ["phone", "laptop"], "clothing": ["shirt", "pants"]}},
    {"a": "single", "b": {"c": "leaf", "d": ["x", "y"]}, "e": ["z"]},
    {"deep": {"er": {"still": {"deeper": ["bottom"]}}}, "flat": ["one"]},
    {"Mixed Case": ["Label With Spaces", "ünïcödé"], "z": {"y": "x"}},
]


@pytest.mark.parametrize("labels", NESTED)
def test_flatten_matches_reference(labels: object) -> None:
    assert flatten_labels(labels) == oracle(labels)
    assert list(Taxonomy.from_labels(labels).labels) == oracle(labels)


@pytest.mark.parametrize("separator", ["/", "::", " > ", "_"])
def test_flatten_matches_reference_with_other_separators(separator: str) -> None:
    labels = {"sentiment": ["positive", "negative"], "topic": {"a": ["x"], "b": "y"}}
    assert flatten_labels(labels, separator) == oracle(labels, separator=separator)
    assert list(Taxonomy.from_labels(labels, separator=separator).labels) == oracle(
        labels, separator=separator
    )


_names = st.text(alphabet="abcdefghij", min_size=1, max_size=4)
_leaves = st.one_of(st.lists(_names, min_size=1, max_size=4, unique=True), _names)
_trees = st.recursive(
    _leaves,
    lambda children: st.dictionaries(_names, children, min_size=1, max_size=4),
    max_leaves=20,
)
_hierarchies = st.dictionaries(_names, _trees, min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(_hierarchies)
def test_flatten_matches_reference_on_generated_hierarchies(labels: dict) -> None:
    expected = oracle(labels)
    assert flatten_labels(labels) == expected
    if expected:  # an all-empty hierarchy has no labels, which a Taxonomy refuses
        taxonomy = Taxonomy.from_labels(labels)
        assert list(taxonomy.labels) == expected
        assert Taxonomy.from_dict(taxonomy.to_dict()) == taxonomy
        assert Taxonomy.from_dict(taxonomy.to_dict()).to_dict() == taxonomy.to_dict()


def test_nested_lists_flatten_in_order_without_a_prefix() -> None:
    labels = ["a", ["b", ["c"]], {"g": ["d", ["e"]], "h": "f"}, "z"]
    assert flatten_labels(labels) == ["a", "b", "c", "g.d", "g.e", "h.f", "z"]
    assert flatten_labels({"p": ["a", ["b"], {"q": "c"}]}) == ["p.a", "p.b", "p.q.c"]
    assert flatten_labels(("a", ("b",))) == ["a", "b"]


def test_labels_keep_their_text_verbatim() -> None:
    taxonomy = Taxonomy.from_labels([" padded ", "Tab\tInside"])
    assert taxonomy.labels == (" padded ", "Tab\tInside")


# --------------------------------------------------------------------------------------------------
# Validation


def _raises(match: str):
    return pytest.raises(ConfigError, match=match)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Taxonomy.from_labels([])


@pytest.mark.parametrize("labels", [[], {}, {"a": []}, ()])
def test_no_labels(labels: object) -> None:
    with _raises("no labels"):
        Taxonomy.from_labels(labels)
    with _raises("no labels"):
        Taxonomy(labels=())


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["ok", 3], r"label 3 at labels\[1\] has type int"),
        (["ok", None], "label None"),
        (["ok", True], "label True .*Quote it"),
        ({"group": [1.5]}, r"labels\['group'\]\[0\]"),
        ({1: ["a"]}, "group name 1 .* not a str"),
        ({True: ["a"]}, "group name True"),
        ({"sentiment": None}, "group 'sentiment' .* has no labels"),
        ({"": ["a"]}, "empty group name"),
        ({"g": ["a", ""]}, r"empty label '' at labels\['g'\]\[1\]"),
        (["a", "   "], "empty label '   '"),
        ("positive", "single string 'positive'"),
        (42, "got int"),
    ],
)
def test_bad_labels(labels: object, match: str) -> None:
    with _raises(match):
        Taxonomy.from_labels(labels)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (("a", 3), "label #1 has type int, not a str: 3"),
        (("a", ""), "label #1 is empty or whitespace only"),
        (("a", " \t"), r"label #1 is empty or whitespace only \(' \\t'\)"),
        ("ab", "must be a list or tuple of str, got str"),
        ({"g": ["a"]}, "use Taxonomy.from_labels"),
    ],
)
def test_direct_construction_is_validated(labels: object, match: str) -> None:
    with _raises(match):
        Taxonomy(labels=labels)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "first", "second"),
    [
        (["Positive", "positive"], "Positive", "positive"),
        (["positive", " positive "], "positive", " positive "),
        (["very  good", "Very Good"], "very  good", "Very Good"),
        (["STRASSE", "straße"], "STRASSE", "straße"),
        ({"a": ["b"], "x": ["y"], "A": ["B "]}, "a.b", "A.B "),
    ],
)
def test_duplicates_after_normalisation_name_both_spellings(labels: object, first: str, second: str) -> None:
    with pytest.raises(ConfigError, match="duplicate label") as info:
        Taxonomy.from_labels(labels)
    assert repr(first) in str(info.value)
    assert repr(second) in str(info.value)


def test_exact_duplicate() -> None:
    with _raises("duplicate label: 'a' is given twice"):
        Taxonomy(labels=("a", "b", "a"))
    with _raises("duplicate label: 'g.x'"):
        Taxonomy.from_labels({"g": ["x", "x"]})


def test_normalize_label() -> None:
    assert normalize_label("  Very \t Good\n") == "very good"


@pytest.mark.parametrize("marker", MARKERS)
def test_markers_are_refused(marker: str) -> None:
    with pytest.raises(ConfigError, match="marker") as info:
        Taxonomy.from_labels(["fine", f"bad {marker} label"])
    assert marker in str(info.value)
    with _raises("marker"):
        Taxonomy.from_labels({f"group{marker}": ["x"]})


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (1.5, "between 0 and 1, got 1.5"),
        (-0.1, "got -0.1"),
        (float("nan"), "got nan"),
        (float("inf"), "got inf"),
        (True, "got bool True"),
        ("0.5", "got str '0.5'"),
        (None, "got NoneType None"),
    ],
)
def test_bad_threshold_values(value: object, match: str) -> None:
    with pytest.raises(ConfigError, match="threshold for 'a'") as info:
        Taxonomy.from_labels(["a", "b"], thresholds={"a": value})
    assert info.match(match)


def test_threshold_bounds_are_inclusive_and_ints_are_numbers() -> None:
    taxonomy = Taxonomy.from_labels(["a", "b"], thresholds={"a": 0, "b": 1})
    assert taxonomy.thresholds == (("a", 0.0), ("b", 1.0))
    assert all(type(value) is float for _, value in taxonomy.thresholds)


def test_threshold_key_must_name_a_label_or_group() -> None:
    labels = {"sentiment": ["positive", "negative"]}
    with pytest.raises(ConfigError, match="'sentimnt' names neither a label nor a group") as info:
        Taxonomy.from_labels(labels, thresholds={"sentimnt": 0.3})
    assert "Did you mean 'sentiment'" in str(info.value)
    with _raises("'positive' names neither"):
        Taxonomy.from_labels(labels, thresholds={"positive": 0.3})
    with _raises("'sentiment.' names neither"):
        Taxonomy.from_labels(labels, thresholds={"sentiment.": 0.3})
    with _raises("'senti' names neither"):  # a group prefix ends at a separator, not mid-name
        Taxonomy.from_labels(labels, thresholds={"senti": 0.3})
    with _raises("threshold key 3 has type int"):
        Taxonomy.from_labels(labels, thresholds={3: 0.3})  # type: ignore[dict-item]


def test_thresholds_must_be_a_mapping() -> None:
    with _raises("thresholds must be a mapping"):
        Taxonomy.from_labels(["a"], thresholds=[0.5])  # type: ignore[arg-type]
    with _raises("thresholds must be a mapping"):
        Taxonomy(labels=("a",), thresholds=0.5)  # type: ignore[arg-type]
    with _raises("given twice"):
        Taxonomy(labels=("a",), thresholds=(("a", 0.5), ("a", 0.6)))


@pytest.mark.parametrize("separator", ["", None, 3])
def test_bad_separator(separator: object) -> None:
    with _raises("separator must be a non-empty str"):
        Taxonomy.from_labels(["a"], separator=separator)  # type: ignore[arg-type]
    with _raises("separator must be a non-empty str"):
        Taxonomy(labels=("a",), separator=separator)  # type: ignore[arg-type]


def test_bad_prompt() -> None:
    with _raises("prompt must be a str"):
        Taxonomy.from_labels(["a"], prompt=["classify"])  # type: ignore[arg-type]
    assert Taxonomy.from_labels(["a"], prompt="").prompt is None


@pytest.mark.parametrize(
    ("example", "match"),
    [
        ({"labels": ["a"]}, "without text"),
        ({"text": "", "labels": ["a"]}, "without text"),
        ({"text": "  ", "labels": ["a"]}, "without text"),
        ({"text": 5, "labels": ["a"]}, "without text"),
        ({"text": "hi", "labels": "a"}, "labels must be a list of str, got str 'a'. Wrap"),
        ({"text": "hi", "labels": [1]}, "labels must be str, got 1"),
        ({"text": "hi", "labels": None}, "labels must be a list of str, got NoneType"),
        ({"text": "hi"}, "has no 'labels'"),
        ({"text": "hi", "labels": ["a"], "true_labels": ["a"]}, "both 'labels' and 'true_labels'"),
        ({"text": "hi", "label": ["a"]}, "unknown key.*'label'.*Did you mean 'labels'"),
        ("just text", "must be a mapping"),
    ],
)
def test_bad_examples(example: object, match: str) -> None:
    with _raises(match):
        Taxonomy.from_labels(["a"], examples=[example])  # type: ignore[list-item]


def test_examples_must_be_a_list() -> None:
    with _raises("examples must be a list"):
        Taxonomy.from_labels(["a"], examples={"text": "hi", "labels": ["a"]})  # type: ignore[arg-type]
    with _raises("examples must be a list"):
        Taxonomy.from_labels(["a"], examples="hi")  # type: ignore[arg-type]


def test_example_direct_construction_is_validated() -> None:
    assert Example("hi", ["a"]).labels == ("a",)  # type: ignore[arg-type]
    with _raises("without text"):
        Example("", ("a",))
    with _raises("labels must be str"):
        Example("hi", ("a", 2))  # type: ignore[arg-type]


def test_structure_must_flatten_to_labels() -> None:
    with _raises("structure flattens to 'g.a'"):
        Taxonomy(labels=("a",), structure={"g": ["a"]})
    assert Taxonomy(labels=("g.a",), structure={"g": ["a"]}).to_dict() == {"labels": {"g": ["a"]}}


# --------------------------------------------------------------------------------------------------
# Thresholds


def test_group_prefix_thresholds_and_most_specific_wins() -> None:
    labels = {
        "sentiment": ["positive", "negative", "neutral"],
        "topic": {"product": ["quality", "price"], "shipping": ["late"]},
    }
    taxonomy = Taxonomy.from_labels(
        labels,
        thresholds={
            "sentiment": 0.3,
            "sentiment.neutral": 0.8,
            "topic": 0.4,
            "topic.product": 0.6,
            "topic.product.price": 0.7,
        },
    )
    assert taxonomy.labels == (
        "sentiment.positive",
        "sentiment.negative",
        "sentiment.neutral",
        "topic.product.quality",
        "topic.product.price",
        "topic.shipping.late",
    )
    assert taxonomy.thresholds == (
        ("sentiment.positive", 0.3),
        ("sentiment.negative", 0.3),
        ("sentiment.neutral", 0.8),
        ("topic.product.quality", 0.6),
        ("topic.product.price", 0.7),
        ("topic.shipping.late", 0.4),
    )
    assert taxonomy.threshold_for("sentiment.neutral", 0.5) == 0.8
    assert taxonomy.threshold_for("not a label", 0.5) == 0.5
    assert taxonomy.thresholds_for(0.5) == [0.3, 0.3, 0.8, 0.6, 0.7, 0.4]


def test_thresholds_only_for_overridden_labels_in_label_order() -> None:
    taxonomy = Taxonomy.from_labels(["c", "b", "a"], thresholds={"a": 0.1, "c": 0.9})
    assert taxonomy.thresholds == (("c", 0.9), ("a", 0.1))
    assert taxonomy.threshold_for("b", 0.42) == 0.42
    assert taxonomy.thresholds_for(0.5) == [0.9, 0.5, 0.1]
    assert Taxonomy.from_labels(["a"]).thresholds_for(0.25) == [0.25]


def test_thresholds_for_checks_the_default() -> None:
    with _raises("default threshold must be a number between 0 and 1, got 2"):
        Taxonomy.from_labels(["a"]).thresholds_for(2)


def test_group_prefix_follows_the_separator() -> None:
    taxonomy = Taxonomy.from_labels({"a": {"b": ["c"]}}, separator="/", thresholds={"a": 0.2, "a/b/c": 0.9})
    assert taxonomy.labels == ("a/b/c",)
    assert taxonomy.thresholds == (("a/b/c", 0.9),)
    with _raises("'a.b' names neither"):
        Taxonomy.from_labels({"a": {"b": ["c"]}}, separator="/", thresholds={"a.b": 0.2})


def test_direct_construction_resolves_and_orders_thresholds() -> None:
    taxonomy = Taxonomy(labels=("g.a", "g.b", "h"), thresholds=(("h", 0.9), ("g", 0.2)))
    assert taxonomy.thresholds == (("g.a", 0.2), ("g.b", 0.2), ("h", 0.9))
    assert taxonomy == Taxonomy(labels=("g.a", "g.b", "h"), thresholds={"g.b": 0.2, "g.a": 0.2, "h": 0.9})


def _brute_force(labels: tuple[str, ...], thresholds: dict[str, float], separator: str) -> list[float | None]:
    out: list[float | None] = []
    for label in labels:
        keys = [k for k in thresholds if label == k or label.startswith(k + separator)]
        out.append(thresholds[max(keys, key=len)] if keys else None)
    return out


@settings(max_examples=150, deadline=None)
@given(_hierarchies, st.data())
def test_most_specific_wins_on_generated_hierarchies(labels: dict, data: st.DataObject) -> None:
    flat = flatten_labels(labels)
    if not flat:
        return
    prefixes = sorted(
        {".".join(label.split(".")[:i]) for label in flat for i in range(1, label.count(".") + 2)}
    )
    keys = data.draw(st.lists(st.sampled_from(prefixes), unique=True, max_size=6))
    values = data.draw(st.lists(st.floats(0, 1), min_size=len(keys), max_size=len(keys)))
    thresholds = dict(zip(keys, values))
    taxonomy = Taxonomy.from_labels(labels, thresholds=thresholds)
    expected = _brute_force(taxonomy.labels, thresholds, ".")
    assert taxonomy.thresholds_for(0.5) == [0.5 if e is None else e for e in expected]
    assert [label for label, _ in taxonomy.thresholds] == [
        label for label, e in zip(taxonomy.labels, expected) if e is not None
    ]


# --------------------------------------------------------------------------------------------------
# Equality, hashing, pickling


def test_hashable_and_equal_for_equal_content() -> None:
    one = Taxonomy.from_labels(
        {"g": ["a", "b"]}, thresholds={"g": 0.4}, prompt="p", examples=[{"text": "t", "labels": ["g.a"]}]
    )
    two = Taxonomy.from_labels(
        ["g.a", "g.b"], thresholds={"g.b": 0.4, "g.a": 0.4}, prompt="p", examples=[Example("t", ("g.a",))]
    )
    assert one == two  # the nested structure is not part of equality
    assert hash(one) == hash(two)
    assert len({one, two}) == 1
    assert one != Taxonomy.from_labels({"g": ["a", "b"]}, thresholds={"g": 0.5}, prompt="p")
    assert Taxonomy.from_labels(["a"]) != Taxonomy.from_labels(["a"], prompt="p")
    assert Taxonomy.from_labels(["a"]) != Taxonomy.from_labels(["a"], separator="/")


def test_frozen_and_independent_of_the_input() -> None:
    labels = {"g": ["a", "b"]}
    taxonomy = Taxonomy.from_labels(labels)
    labels["g"].append("c")
    assert taxonomy.to_dict() == {"labels": {"g": ["a", "b"]}}
    taxonomy.to_dict()["labels"]["g"].append("d")
    assert taxonomy.to_dict() == {"labels": {"g": ["a", "b"]}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        taxonomy.labels = ("x",)  # type: ignore[misc]


def test_pickle_and_replace() -> None:
    taxonomy = Taxonomy.from_labels({"g": ["a", "b"]}, thresholds={"g.a": 0.7})
    copy = pickle.loads(pickle.dumps(taxonomy))
    assert copy == taxonomy
    assert copy.thresholds_for(0.5) == [0.7, 0.5]
    assert copy.to_dict() == taxonomy.to_dict()
    replaced = dataclasses.replace(taxonomy, prompt="new")
    assert replaced.prompt == "new"
    assert replaced.threshold_for("g.a", 0.5) == 0.7


def test_len() -> None:
    assert len(Taxonomy.from_labels({"a": ["x", "y"], "b": "z"})) == 3


# --------------------------------------------------------------------------------------------------
# Examples, prompt


def test_examples_as_dicts() -> None:
    taxonomy = Taxonomy.from_labels(
        ["a", "b"],
        examples=[
            {"text": "one", "labels": ["a"]},
            {"text": "two", "true_labels": ["a", "b"]},
            Example("x", ()),
        ],
    )
    assert taxonomy.examples == (Example("one", ("a",)), Example("two", ("a", "b")), Example("x", ()))
    assert taxonomy.examples_as_dicts() == [
        {"text": "one", "labels": ["a"]},
        {"text": "two", "labels": ["a", "b"]},
        {"text": "x", "labels": []},
    ]
    assert Taxonomy.from_labels(["a"]).examples_as_dicts() is None


def test_examples_as_dicts_feed_the_reference_formatter() -> None:
    taxonomy = Taxonomy.from_labels(["a", "b"], examples=[{"text": "one", "labels": ["a", "b"]}])
    formatted = reference.format_examples_prompt(taxonomy.examples_as_dicts())
    assert formatted == "<<EXAMPLE>>one \nLabels:\n a, b<<SEP>>"


# --------------------------------------------------------------------------------------------------
# to_dict / from_dict


def test_round_trip_full() -> None:
    taxonomy = Taxonomy.from_labels(
        {"sentiment": ["positive", "negative"], "topic": {"a": ["x"]}},
        thresholds={"sentiment": 0.3, "topic/a/x": 0.9},
        prompt="Classify the review.",
        examples=[{"text": "Great!", "labels": ["sentiment.positive"]}],
        separator="/",
    )
    data = taxonomy.to_dict()
    assert data == {
        "labels": {"sentiment": ["positive", "negative"], "topic": {"a": ["x"]}},
        "thresholds": {"sentiment/positive": 0.3, "sentiment/negative": 0.3, "topic/a/x": 0.9},
        "prompt": "Classify the review.",
        "examples": [{"text": "Great!", "labels": ["sentiment.positive"]}],
        "separator": "/",
    }
    again = Taxonomy.from_dict(data)
    assert again == taxonomy
    assert again.to_dict() == data
    assert Taxonomy.from_dict(json.loads(json.dumps(data))) == taxonomy


def test_to_dict_minimal_and_direct() -> None:
    assert Taxonomy.from_labels(["a", "b"]).to_dict() == {"labels": ["a", "b"]}
    assert Taxonomy(labels=("x.a",)).to_dict() == {"labels": ["x.a"]}
    assert Taxonomy.from_labels(("a", ("b",))).to_dict() == {"labels": ["a", ["b"]]}


def test_from_dict_accepts_bare_labels() -> None:
    assert Taxonomy.from_dict(["a", "b"]).labels == ("a", "b")
    assert Taxonomy.from_dict({"g": ["a", "b"]}).labels == ("g.a", "g.b")
    # a group named "labels" has to be nested under the "labels" key
    assert Taxonomy.from_dict({"labels": {"labels": ["a"]}}).labels == ("labels.a",)


def test_from_dict_none_values_count_as_absent() -> None:
    data = {"labels": ["a"], "thresholds": None, "prompt": None, "examples": None, "separator": None}
    assert Taxonomy.from_dict(data) == Taxonomy.from_labels(["a"])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"labels": ["a"], "threshold": {"a": 0.5}}, "unknown key.*'threshold'.*Did you mean 'thresholds'"),
        ({"labels": ["a"], "sentiment": ["b"]}, "unknown key.*'sentiment'.*nest it under 'labels'"),
        ({"prompt": "p"}, "no 'labels'"),
        ({"labels": None}, "no 'labels'"),
        ({"labels": ["a"], "thresholds": [0.5]}, "thresholds must be a mapping"),
        ("a", "must be a mapping"),
        (3, "must be a mapping"),
    ],
)
def test_from_dict_errors(data: object, match: str) -> None:
    with _raises(match):
        Taxonomy.from_dict(data)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# YAML / JSON / text files


YAML_TEXT = """\
labels:
  sentiment: [positive, negative]
  topic:
    product: [quality, "yes"]
thresholds:
  sentiment: 0.3
  topic.product.quality: 0.8
prompt: Classify the review.
examples:
  - text: Love it
    labels: [sentiment.positive]
"""

EXPECTED = Taxonomy.from_labels(
    {"sentiment": ["positive", "negative"], "topic": {"product": ["quality", "yes"]}},
    thresholds={"sentiment": 0.3, "topic.product.quality": 0.8},
    prompt="Classify the review.",
    examples=[{"text": "Love it", "labels": ["sentiment.positive"]}],
)


def test_from_yaml_text_and_path(tmp_path: pathlib.Path) -> None:
    assert Taxonomy.from_yaml(YAML_TEXT) == EXPECTED
    path = tmp_path / "taxonomy.yaml"
    path.write_text(YAML_TEXT, encoding="utf-8")
    assert Taxonomy.from_yaml(path) == EXPECTED
    assert Taxonomy.from_yaml(str(path)) == EXPECTED
    assert Taxonomy.from_file(path) == EXPECTED
    assert Taxonomy.from_yaml("[a, b]").labels == ("a", "b")
    assert Taxonomy.from_yaml("g: [a, b]\n").labels == ("g.a", "g.b")


def test_from_json_text_and_path(tmp_path: pathlib.Path) -> None:
    text = json.dumps(EXPECTED.to_dict())
    assert Taxonomy.from_json(text) == EXPECTED
    path = tmp_path / "taxonomy.json"
    path.write_text(text, encoding="utf-8")
    assert Taxonomy.from_json(path) == EXPECTED
    assert Taxonomy.from_json(str(path)) == EXPECTED
    assert Taxonomy.from_file(str(path)) == EXPECTED
    assert Taxonomy.from_json('["a", "b"]').labels == ("a", "b")


def test_from_file_by_extension_case_insensitive(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "TAXONOMY.YML"
    path.write_text(YAML_TEXT, encoding="utf-8")
    assert Taxonomy.from_file(path) == EXPECTED
    path = tmp_path / "taxonomy.JSON"
    path.write_text(json.dumps({"labels": ["a"]}), encoding="utf-8")
    assert Taxonomy.from_file(path).labels == ("a",)


@pytest.mark.parametrize("name", ["labels.txt", "labels", "labels.lst"])
def test_from_text_file(tmp_path: pathlib.Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(
        "\ufeff# my labels\npositive\n\n  negative  \r\n   # indented comment\nneutral\n", encoding="utf-8"
    )
    assert Taxonomy.from_file(path).labels == ("positive", "negative", "neutral")


def test_from_text_file_errors(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("# nothing here\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty.txt: the taxonomy has no labels"):
        Taxonomy.from_file(path)
    path = tmp_path / "dupes.txt"
    path.write_text("Good\ngood\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="dupes.txt: duplicate label: 'Good' and 'good'"):
        Taxonomy.from_file(path)
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with _raises("not UTF-8"):
        Taxonomy.from_file(path)


def test_missing_files(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.yaml"
    with _raises("taxonomy file not found"):
        Taxonomy.from_file(missing)
    with _raises("taxonomy file not found"):
        Taxonomy.from_yaml(missing)
    with _raises("taxonomy file not found"):
        Taxonomy.from_json(missing)
    with _raises("neither an existing file nor YAML text"):
        Taxonomy.from_yaml(str(missing))
    with _raises("neither an existing file nor JSON text"):
        Taxonomy.from_json(str(tmp_path / "missing.json"))
    with _raises("is a directory"):
        Taxonomy.from_file(tmp_path)
    with _raises("path must be a str"):
        Taxonomy.from_file(3)  # type: ignore[arg-type]
    with _raises("source must be a path"):
        Taxonomy.from_yaml(b"labels: [a]")  # type: ignore[arg-type]


def test_parse_errors_name_the_source(tmp_path: pathlib.Path) -> None:
    with _raises("<text>: not valid YAML"):
        Taxonomy.from_yaml("labels: [a, b\nprompt: x\n")
    with _raises("<text>: not valid JSON"):
        Taxonomy.from_json('{"labels": [')
    path = tmp_path / "bad.yaml"
    path.write_text("labels:\n  sentiment:\n  topic: [a]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml: group 'sentiment' .* has no labels"):
        Taxonomy.from_file(path)
    with _raises("the YAML document is empty"):
        Taxonomy.from_yaml("# only a comment\n")
    with _raises("label True .*Quote it"):
        Taxonomy.from_yaml("[positive, yes]")
    with _raises("group name 1 .* not a str"):
        Taxonomy.from_yaml("labels:\n  1: [a]\n")


def test_duplicate_keys_are_refused() -> None:
    with _raises("key 'sentiment' is given twice .*line 3"):
        Taxonomy.from_yaml("labels:\n  sentiment: [a]\n  sentiment: [b]\n")
    with _raises("key 'sentiment' is given twice"):
        Taxonomy.from_json('{"labels": {"sentiment": ["a"], "sentiment": ["b"]}}')
    # YAML merge keys need an anchor and an alias, which taxonomy files may not use
    text = "base: &base {a: [x]}\nlabels:\n  <<: *base\n  b: [y]\n"
    with _raises("anchors and aliases .*line 1"):
        Taxonomy.from_yaml(text)


def test_to_dict_survives_yaml(tmp_path: pathlib.Path) -> None:
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(EXPECTED.to_dict(), sort_keys=False), encoding="utf-8")
    assert Taxonomy.from_file(path) == EXPECTED
    assert Taxonomy.from_file(path).to_dict() == EXPECTED.to_dict()


# --------------------------------------------------------------------------------------------------
# coerce


def test_coerce() -> None:
    taxonomy = Taxonomy.from_labels(["a"])
    assert Taxonomy.coerce(taxonomy) is taxonomy
    assert Taxonomy.coerce(["a", "b"]).labels == ("a", "b")
    assert Taxonomy.coerce(("a", "b")).labels == ("a", "b")
    assert Taxonomy.coerce({"g": ["a"]}).labels == ("g.a",)
    assert Taxonomy.coerce({"g": ["a"]}, separator="/").labels == ("g/a",)
    # a config mapping is read as a config, not as a group named "labels"
    config = Taxonomy.coerce({"labels": {"g": ["a"]}, "prompt": "p"}, separator="/")
    assert config == Taxonomy.from_labels({"g": ["a"]}, prompt="p", separator="/")
    assert Taxonomy.coerce({"labels": ["a"], "separator": ":"}).separator == ":"


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ("labels.yaml", "cannot make a Taxonomy from str.*Taxonomy.from_file"),
        (pathlib.Path("labels.yaml"), "Taxonomy.from_file"),
        (None, "cannot make a Taxonomy from NoneType"),
        (42, "from int"),
        ({"a", "b"}, "a set has no order of its own"),
    ],
)
def test_coerce_refuses(obj: object, match: str) -> None:
    with _raises(match):
        Taxonomy.coerce(obj)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Import cost


def test_import_is_cheap() -> None:
    code = (
        "import sys; import gliclass_pipelines.taxonomy.taxonomy; "
        "heavy = {'yaml', 'torch', 'transformers', 'pyarrow', 'gliclass', 'numpy', 'difflib'}; "
        "heavy &= set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
