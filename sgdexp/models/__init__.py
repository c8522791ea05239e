"""Networks (MLP, CNN, ResNet, VGG, linear, any timm architecture) built for the dataset's input shape and output count."""
from sgdexp.models.networks import MODELS, build_model
from sgdexp.models import timm_models  # noqa: F401,E402  (registers model=timm)


def model_key(model_cfg) -> tuple:
    """The config key and value that name the model in an error: timm's architecture, else the model."""
    return ("model.arch", model_cfg.arch) if model_cfg.name == "timm" else ("model", model_cfg.name)


__all__ = ["MODELS", "build_model", "model_key"]
