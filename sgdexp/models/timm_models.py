"""`model=timm model.arch=<name>`: any architecture of timm, built untrained for the dataset at hand.

timm builds ImageNet networks; on 8x8 digits or 32x32 CIFAR images their down-sampling stem (a
strided first convolution, often followed by a max-pool) leaves almost nothing of the image. With
`model.small_input_stem=true` (the default) and images of at most 64 pixels a side, the stem is
adapted as for CIFAR ResNets: the first convolution becomes 3x3 with stride 1 and the stem's
max-pool is removed. Architectures whose first layer is a patch embedding (ViT and kin) take the
image size and, for small images, patches of 4 (2 on 8x8 images) where the architecture accepts it.
"""
from __future__ import annotations

import difflib
from typing import Tuple

from omegaconf import DictConfig
from torch import nn

from sgdexp.errors import ConfigError
from sgdexp.models.networks import MODELS, _image

SMALL_IMAGE = 64  # largest side (pixels) that counts as a small image


def check_arch(arch: str) -> None:
    """An unknown name: one line with the closest names timm has (difflib over `timm.list_models()`)."""
    import timm

    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError("model.arch", arch, f"a timm architecture (see timm.list_models()){hint}")


def adapt_stem(model: nn.Module) -> bool:
    """Make the first convolution 3x3 stride 1 and drop the stem's max-pool; False where the
    architecture does not allow it (a patch embedding, or a first layer that is not a strided conv)."""
    first = model.pretrained_cfg.get("first_conv") if hasattr(model, "pretrained_cfg") else None
    if not first or "patch_embed" in first:
        return False
    conv = model.get_submodule(first)
    if not isinstance(conv, nn.Conv2d) or max(conv.stride) == 1 and conv.kernel_size == (3, 3):
        return False
    strided = max(conv.stride) > 1
    parent, _, child = first.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child,
            nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=conv.bias is not None))
    if strided:
        # The stem's max-pool: the first one before any stage (ResNet `maxpool`, DenseNet `features.pool0`).
        for name, module in model.named_modules():
            if any(word in name.lower() for word in ("layer", "stage", "block")):
                break
            if isinstance(module, nn.MaxPool2d):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
                break
    return True


@MODELS.register("timm")
def timm_model(cfg: DictConfig, input_shape: Tuple[int, ...], num_outputs: int) -> nn.Module:
    import timm

    c, h, w = _image(input_shape, "timm")
    check_arch(cfg.arch)
    kwargs = dict(pretrained=False, in_chans=c, num_classes=num_outputs, drop_rate=cfg.drop_rate)
    small = cfg.small_input_stem and max(h, w) <= SMALL_IMAGE
    if "patch_embed" in str(timm.models.get_pretrained_cfg_value(cfg.arch, "first_conv") or ""):
        kwargs["img_size"] = (h, w)
        if small:  # the small-image ViT recipe: patches of 4 (32x32 CIFAR), or 2 on 8x8 digits
            kwargs["patch_size"] = next(p for p in (4, 2, 1) if h % p == w % p == 0 and min(h, w) >= 4 * p)
    try:
        model = timm.create_model(cfg.arch, **kwargs)
    except Exception as err:  # noqa: BLE001 - timm's own error, as the one line the user sees
        raise ConfigError("model.arch", cfg.arch,
                          f"an architecture timm can build for {c}x{h}x{w} images ({type(err).__name__}: {err})") from None
    if small:
        adapt_stem(model)
    return model
