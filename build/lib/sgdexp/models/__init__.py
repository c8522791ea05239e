"""Networks (MLP, CNN, ResNet, VGG, linear) built for the dataset's input shape and output count."""
from sgdexp.models.networks import MODELS, build_model

__all__ = ["MODELS", "build_model"]
