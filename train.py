"""Train a restoration model: ``python train.py task=deblur`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from restore.training import main as train  # heavy imports only once the config is valid

    return train(cfg)


if __name__ == "__main__":
    main()
