"""`python -m sgdexp [overrides]`: compose the config with Hydra and run the chosen task."""
import hydra
from omegaconf import DictConfig

from sgdexp.app import run
from sgdexp.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    main()
