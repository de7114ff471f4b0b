"""Config values checked against annotations, and factory options read from signatures."""

from typing import Literal

import pytest

from ssl_pretrain.errors import ConfigError
from ssl_pretrain.options import option_signature, resolve_options
from ssl_pretrain.typecheck import check_value, describe


def test_values_are_checked_and_numbers_read_as_users_type_them():
    assert check_value(3, float, "k") == 3.0 and check_value("1e-3", float, "k") == 0.001
    assert check_value([1, "2e-1"], list[float], "k") == [1.0, 0.2]
    assert check_value("a", Literal["a", "b"], "k") == "a"
    assert check_value(None, int | None, "k") is None
    for value, annotation in [("x", float), ("nan", float), (True, int), (1.5, int), ("c", Literal["a"])]:
        with pytest.raises(ConfigError, match="^k: expected"):
            check_value(value, annotation, "k")
    assert describe(list[int] | None) == "list of int or null"


def _factory(channels: int, *, width: int = 8, kind: Literal["a", "b"] = "a", sizes: list[int] = (1, 2)):
    return channels, width, kind, sizes


def test_options_are_the_keyword_only_parameters_with_defaults_filled():
    assert option_signature(_factory)["sizes"] == (list[int], [1, 2])
    assert resolve_options(_factory, {"width": 4}, "model") == {"width": 4, "kind": "a", "sizes": [1, 2]}
    with pytest.raises(ConfigError) as err:
        resolve_options(_factory, {"depth": 3}, "model")
    assert err.value.key == "model.depth" and "width" in str(err.value)
    with pytest.raises(ConfigError, match="model.kind: expected one of 'a', 'b'"):
        resolve_options(_factory, {"kind": "c"}, "model")
