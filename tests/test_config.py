"""Configuration loading, overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmfast.config import LMFastConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def _problems(overrides: list[str]) -> dict[str, str]:
    from lmfast.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    return dict(info.value.problems)


def test_defaults_are_documented() -> None:
    cfg = load_config()
    assert cfg.model.reference == "smollm2-135m-instruct"
    assert cfg.training.lora.target_modules == "all-linear"
    assert cfg.training.target_effective_batch_size == 16

    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(LMFastConfig)


def test_yaml_then_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("training:\n  lora:\n    rank: 8\n  max_steps: 10\n")
    cfg = load_config(recipe, ["training.lora.rank=4", "model.dtype=float32", "serve.port=9000"])
    assert cfg.training.lora.rank == 4
    assert cfg.training.max_steps == 10
    assert cfg.model.dtype == "float32"
    assert cfg.serve.port == 9000


def test_errors_name_field_value_and_rule() -> None:
    problems = _problems(["training.lora.rank=0"])
    assert "training.lora.rank" in problems
    assert "greater than or equal to 1" in problems["training.lora.rank"]
    assert "got 0" in problems["training.lora.rank"]

    problems = _problems(["model.dtype=fp64"])
    assert "'bfloat16'" in problems["model.dtype"]  # lists what is allowed

    assert _problems(["training.lora.rnak=4"]) == {"training.lora.rnak": "unknown field"}


def test_contradictions_are_rejected() -> None:
    problems = _problems(["training.max_steps=10", "training.epochs=2"])
    assert "not both" in problems["training"]
    problems = _problems(
        [
            "training.micro_batch_size=4",
            "training.gradient_accumulation_steps=4",
            "training.effective_batch_size=8",
        ]
    )
    assert "4 x 4 = 16" in problems["training"]
    problems = _problems(["model.quantization=nf4", "training.lora.enabled=false"])
    assert "training.lora.enabled" in problems["(root)"]


def test_server_off_loopback_needs_key() -> None:
    problems = _problems(["serve.host=0.0.0.0"])
    assert "api_key" in problems["serve"]
    cfg = load_config(None, ["serve.host=0.0.0.0", "serve.api_key=s3cret"])
    assert cfg.serve.api_key is not None
    assert "s3cret" not in repr(cfg)  # secrets are not printed


def test_bad_files(tmp_path: Path) -> None:
    from lmfast.errors import ConfigError

    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"section\.field=value"):
        load_config(None, ["no-equals-sign"])


@pytest.mark.parametrize("recipe", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(recipe: Path) -> None:
    """Every recipe loads, and plans on the machine it is written for (T4 ones on a T4)."""
    from lmfast.hardware import PROFILES
    from lmfast.plan import plan_training
    from lmfast.training.pretrain import recipe_spec

    cfg = load_config(recipe)
    profile = PROFILES["t4" if "t4" in recipe.stem else "cpu"]
    plan = plan_training(cfg, profile, recipe_spec(cfg))
    assert plan.fits, plan.notes
    if recipe.stem == "qlora_t4":
        assert (plan.quantization, plan.dtype, plan.optimizer) == (
            "nf4",
            "float16",
            "paged_adamw_8bit",
        ) and plan.gradient_checkpointing
