"""Named recipes: the official runs as presets that explicit fields override."""

import pytest
from pydantic import ValidationError

from recu_core.config import MODEL_NAMES, TrainConfig
from recu_core.recipes import RECIPES


def test_cifar_recipe_is_the_official_command():
    config = TrainConfig(recipe="cifar10_resnet18")
    assert config.model == "resnet18"
    assert (config.epochs, config.batch_size) == (600, 256)
    opt = config.optimizer
    assert (opt.name, opt.lr, opt.momentum, opt.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
    assert (opt.lr_schedule, config.warmup_epochs) == ("epoch", 5.0)
    assert (config.tau.kind, config.tau.tau_s, config.tau.tau_e) == ("exponential", 0.85, 0.99)
    assert (config.dataset.name, config.dataset.crop_padding, config.dataset.flip) == (
        "cifar10",
        4,
        True,
    )


def test_imagenet_recipe_is_the_official_command():
    config = TrainConfig(recipe="imagenet_resnet34")
    assert config.model == "resnet34_imagenet"
    assert (config.epochs, config.batch_size, config.optimizer.weight_decay) == (200, 512, 1e-4)
    assert (config.dataset.image_size, config.dataset.loader) == (224, "streaming")
    assert config.dataset.crop_scale == (0.08, 1.25)


def test_explicit_fields_override_the_preset_field_by_field():
    config = TrainConfig.model_validate(
        {"recipe": "cifar10_vgg_small", "epochs": 20, "optimizer": {"lr": 0.05}}
    )
    assert (config.model, config.epochs, config.batch_size) == ("vgg_small", 20, 256)
    assert (config.optimizer.lr, config.optimizer.weight_decay) == (0.05, 5e-4)


def test_a_resolved_recipe_round_trips_unchanged():
    config = TrainConfig.model_validate({"recipe": "imagenet_resnet18", "epochs": 10})
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config


def test_unknown_recipe_names_the_allowed_values():
    with pytest.raises(ValidationError, match=r"recipe\n.*'cifar10_resnet20'"):
        TrainConfig.model_validate({"recipe": "cifar10_resnet50"})


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_builds_a_valid_config_of_a_registered_model(name):
    recipe = RECIPES[name]
    config = TrainConfig(recipe=name)
    assert config.model in MODEL_NAMES
    assert 60 < recipe.published_top1 < 95
    assert config.model.split("_imagenet")[0] in recipe.official.replace("_1w1a", "")
