"""YAML the project writes for Go readers keeps every string a string."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from vigil.common import kube_yaml

# Each read by kubectl (go-yaml through sigs.k8s.io/yaml) as a number, a boolean or null
# when written plainly; the first one is the e2e test's random tweak that failed a CI run.
READ_OTHERWISE_BY_GO = [
    "63e1", "1e10", "-1e-3", "+.5", "0o17", "0x1F", "0b101", "1_000", "0777", "1234",
    "y", "N", "yes", "ON", "off", "True", "null", "NULL", "~", ".inf", "-.Inf", ".NaN", "",
]  # fmt: skip
PLAIN = ["wine", "v1", "pvc://models/wine-1", "1.2.3", "63e1x", "e5", "0xZ", "abc-123", "1:20x"]


def scalar_style(text: str) -> str | None:
    """The style of the single mapping value in ``text`` (None when plain)."""
    node = yaml.compose(text)
    assert isinstance(node, yaml.MappingNode)
    (_, value) = node.value[0]
    return value.style


@pytest.mark.parametrize("value", READ_OTHERWISE_BY_GO)
def test_a_string_go_reads_as_another_type_is_quoted(value: str) -> None:
    text = kube_yaml.dump({"value": value})
    assert scalar_style(text) in {"'", '"'}, text
    assert yaml.safe_load(text) == {"value": value}


@pytest.mark.parametrize("value", PLAIN)
def test_other_strings_stay_as_pyyaml_writes_them(value: str) -> None:
    assert kube_yaml.dump({"value": value}) == yaml.safe_dump({"value": value})


def test_keys_and_lists_and_documents_are_quoted_alike() -> None:
    documents = [{"data": {"1e5": "y"}}, {"items": ["63e1", "wine"]}]
    text = kube_yaml.dump_all(documents, sort_keys=False)
    assert "'1e5': 'y'" in text and "- '63e1'" in text and "- wine" in text
    assert list(yaml.safe_load_all(text)) == documents


@given(st.text(alphabet="0123456789abcdefxXoOeE_+-.yYnN~ ", max_size=8))
def test_every_string_reads_back_as_itself_and_is_quoted_where_go_would_misread_it(
    value: str,
) -> None:
    text = kube_yaml.dump({"value": value})
    assert yaml.safe_load(text) == {"value": value}
    if kube_yaml.read_otherwise_by_go(value):
        assert scalar_style(text) is not None, text
