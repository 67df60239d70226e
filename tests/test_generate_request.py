"""GenerateRequest takes sampling settings flat (as the OpenAI API does) or in `params`, and
refuses what it does not know instead of ignoring it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lmfast.generation import GenerateRequest
from lmfast.inference import SamplingParams


def test_flat_sampling_settings_reach_the_params() -> None:
    request = GenerateRequest(prompt="hi", temperature=0, max_tokens=4, stop=["\n"])
    assert request.params.temperature == 0 and request.params.max_tokens == 4
    assert request.params.stop == ["\n"]
    nested = GenerateRequest(prompt="hi", params=SamplingParams(temperature=0), max_tokens=4)
    assert nested.params.temperature == 0 and nested.params.max_tokens == 4
    assert GenerateRequest(prompt="hi").params == SamplingParams()


def test_unknown_and_doubled_settings_are_named() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        GenerateRequest(prompt="hi", temprature=0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="temperature: given both"):
        GenerateRequest(prompt="hi", temperature=0, params={"temperature": 1.0})
    with pytest.raises(ValidationError, match="temperature"):
        GenerateRequest(prompt="hi", temperature=5)  # the params' bounds still apply
