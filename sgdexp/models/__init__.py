"""Networks (MLP, CNN, ResNet, VGG, linear, any timm architecture) built for the dataset's input shape and output count."""
from sgdexp.models.networks import MODELS, build_model
from sgdexp.models import timm_models  # noqa: F401,E402  (registers model=timm)

__all__ = ["MODELS", "build_model"]
