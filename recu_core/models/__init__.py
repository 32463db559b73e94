"""Model registry; importing this package registers every model."""

from recu_core.models import resnet_cifar, resnet_imagenet, vgg_small  # noqa: F401
from recu_core.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
