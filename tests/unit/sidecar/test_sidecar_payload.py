"""v2 and v1 payloads map to features and predictions; problems become violation kinds."""

import json

import pytest

from vigil.sidecar.payload import ArgMaxes, endpoint_of, parse_request, parse_response

F = ("a", "b", "c")


def _v2(shape, data, name="x"):
    return json.dumps(
        {"inputs": [{"name": name, "shape": shape, "datatype": "FP64", "data": data}]}
    ).encode()


def test_v2_single_tensor_columns_follow_feature_order_flat_or_nested():
    flat = parse_request("v2", _v2([2, 3], [1, 2, 3, 4, 5, 6]), "application/json", F)
    nested = parse_request("v2", _v2([2, 3], [[1, 2, 3], [4, 5, 6]]), "", F)
    for parsed in (flat, nested):
        assert parsed.violations == []
        assert parsed.rows == 2
        assert parsed.columns == {"a": [1, 4], "b": [2, 5], "c": [3, 6]}


def test_v2_one_tensor_per_feature_matches_by_name():
    body = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": [2], "datatype": "FP64", "data": [i, i + 10]}
                for i, n in enumerate(("c", "a", "b"))
            ]
        }
    ).encode()
    parsed = parse_request("v2", body, "application/json", F)
    assert parsed.columns == {"a": [1, 11], "b": [2, 12], "c": [0, 10]}


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", "malformed_json"),
        (b'{"foo": 1}', "unknown_payload"),
        (_v2([2, 3], [1, 2, 3]), "shape"),
        (_v2([1, 4], [1, 2, 3, 4]), "feature_count"),
        (_v2([1, 2, 2], [1, 2, 3, 4]), "shape"),
    ],
)
def test_v2_problems_are_reported_as_violations(body, kind):
    assert kind in parse_request("v2", body, "application/json", F).violations


def test_wrong_content_type_is_a_violation_but_json_is_still_read():
    parsed = parse_request("v2", _v2([1, 3], [1, 2, 3]), "text/plain", F)
    assert parsed.violations == ["content_type"] and parsed.rows == 1


def test_v1_rows_as_lists_or_objects():
    lists = parse_request("v1", b'{"instances": [[1, 2, 3], [4, 5, 6]]}', "", F)
    objs = parse_request("v1", b'{"instances": [{"a": 1, "b": 2, "c": 3}]}', "", F)
    assert lists.columns == {"a": [1, 4], "b": [2, 5], "c": [3, 6]}
    assert objs.columns == {"a": [1], "b": [2], "c": [3]}
    bad = parse_request("v1", b'{"instances": [[1, 2], [4, 5, 6]]}', "", F)
    assert bad.violations == ["feature_count"] and bad.columns["a"] == [4]


def test_without_reference_rows_are_still_counted():
    assert parse_request("v2", _v2([5, 2], list(range(10))), "", ()).rows == 5
    assert parse_request("v1", b'{"instances": [1, 2, 3]}', "", ()).rows == 3


def test_v2_response_predictions_and_argmax_for_probabilities():
    one = json.dumps(
        {"outputs": [{"name": "p", "shape": [3, 1], "datatype": "INT64", "data": [0, 2, 1]}]}
    ).encode()
    probs = json.dumps(
        {
            "outputs": [
                {
                    "name": "p",
                    "shape": [2, 3],
                    "datatype": "FP64",
                    "data": [0.1, 0.7, 0.2, 0.5, 0.3, 0.2],
                }
            ]
        }
    ).encode()
    assert parse_response("v2", one, "application/json", True).values == [0, 2, 1]
    assert parse_response("v2", probs, "application/json", True).values == [1, 0]
    assert parse_response("v2", probs, "application/json", False).values == [0.1, 0.5]
    assert parse_response("v2", b"{}", "", True).violations == ["unknown_payload"]


def test_arg_maxes_of_scores_say_they_are_column_indices_of_so_many_columns():
    # The join store must know an index is no class label (feedback.prediction_values).
    probs = json.dumps(
        {"outputs": [{"name": "p", "shape": [2, 3], "data": [0.1, 0.7, 0.2, 0.5, 0.3, 0.2]}]}
    ).encode()
    v2 = parse_response("v2", probs, "application/json", True).values
    v1 = parse_response("v1", b'{"predictions": [[0.2, 0.8], [0.9, 0.1]]}', "", True).values
    for values, columns in ((v2, 3), (v1, 2)):
        assert isinstance(values, ArgMaxes) and values.columns == columns
    labels = json.dumps({"outputs": [{"name": "p", "shape": [2, 1], "data": [1, 0]}]}).encode()
    mixed = b'{"predictions": [[0.2, 0.8], 1]}'
    names = b'{"predictions": [["cat", "dog"]]}'
    for values in (
        parse_response("v2", labels, "", True).values,
        parse_response("v2", probs, "", False).values,
        parse_response("v1", mixed, "", True).values,
        parse_response("v1", names, "", True).values,
    ):
        assert not isinstance(values, ArgMaxes)


def test_v1_objects_without_a_key_count_that_feature_as_missing():
    # JSON clients leave null fields out: the row still counts, the feature as missing.
    parsed = parse_request("v1", b'{"instances": [{"a": 1, "b": 2, "c": 3}, {"a": 4}]}', "", F)
    assert parsed.rows == 2 and parsed.violations == []
    assert parsed.columns == {"a": [1, 4], "b": [2, None], "c": [3, None]}


def test_v1_response_predictions():
    assert parse_response("v1", b'{"predictions": [1, 0, 2]}', "", True).values == [1, 0, 2]
    assert parse_response("v1", b'{"predictions": [[0.2, 0.8]]}', "", True).values == [1]
    assert parse_response("v1", b'{"predictions": [{"x": 1}]}', "", True).violations == ["type"]


def test_endpoint_classification_by_protocol():
    assert endpoint_of("v2", "POST", "/v2/models/wine/infer") == "infer"
    assert endpoint_of("v2", "POST", "/v2/models/wine/versions/3/infer") == "infer"
    assert endpoint_of("v2", "GET", "/v2/models/wine") == "other"
    assert endpoint_of("v1", "POST", "/v1/models/wine:predict") == "infer"
    assert endpoint_of("v1", "POST", "/v2/models/wine/infer") == "other"
    assert endpoint_of("raw", "POST", "/anything") == "infer"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([[1, 2], [3, 4, 5, 6]], id="rows-of-unequal-length"),
        pytest.param([[1, 2, 3], 4, 5, 6], id="rows-and-scalars"),
        pytest.param([[1, [2], 3], [4, 5, 6]], id="a-list-among-values"),
    ],
)
def test_v2_ragged_nested_data_is_a_shape_violation_even_with_the_right_total(data):
    # Six values for a [2, 3] tensor, but not two rows of three: no column is right.
    parsed = parse_request("v2", _v2([2, 3], data), "application/json", F)
    assert parsed.violations == ["shape"] and parsed.columns == {}


def test_v2_ragged_nested_output_is_a_prediction_shape_violation():
    body = json.dumps(
        {"outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP64", "data": [[1], [2, 3, 4]]}]}
    ).encode()
    parsed = parse_response("v2", body, "application/json", True)
    assert parsed.violations == ["shape"] and parsed.values == []


def test_v2_nested_data_of_another_regular_shape_is_read_in_row_major_order():
    # The element order of a regular nested array is its flat order, whatever its rows.
    parsed = parse_request("v2", _v2([2, 3], [[1, 2, 3, 4, 5, 6]]), "", F)
    assert parsed.violations == [] and parsed.columns == {"a": [1, 4], "b": [2, 5], "c": [3, 6]}


@pytest.mark.parametrize("features", [F, ("a",), ()])
def test_v2_empty_batch_is_no_violation_and_counts_no_row(features):
    width = len(features) or 3
    parsed = parse_request("v2", _v2([0, width], []), "application/json", features)
    assert parsed.violations == [] and parsed.rows == 0
    assert parsed.columns == {name: [] for name in features}


def test_v2_empty_batch_of_the_wrong_width_is_still_a_feature_count_violation():
    assert parse_request("v2", _v2([0, 5], []), "", F).violations == ["feature_count"]


@pytest.mark.parametrize("shape", [[2, 0], [1, 2, 0], [0, 0]])
def test_v2_output_of_zero_width_rows_is_a_prediction_shape_violation(shape):
    # Rows without a value hold no prediction; reading one raised (and lost the batch).
    body = json.dumps({"outputs": [{"name": "p", "shape": shape, "data": []}]}).encode()
    for classification in (True, False):
        parsed = parse_response("v2", body, "application/json", classification)
        assert parsed.violations == ["shape"] and parsed.values == []
