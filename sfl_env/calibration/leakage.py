"""Measures the privacy leakage of every cut of a preset's model, for the episode's leakage budget.

Leakage at a cut is the distance correlation between a probe batch of test images and its smashed data
there (:func:`sfl_env.privacy.leakage_per_cut`, the estimator of ``privacy_rule="leakage"``), measured
on freshly initialised models and averaged over model seeds. Both envs read the table this writes
(``sfl_env/calibration/leakage.json``), so a round at a cut spends the same leakage in real training and
in the twin; the analytic env needs no data to price it.

    python -m sfl_env.calibration.leakage --preset shapes --preset digits
    python -m sfl_env.calibration.leakage --preset mnist --data-dir mnist-8000-2000
"""

from __future__ import annotations

import argparse
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import LANGUAGE_MODELS, SFLConfig
from ..errors import ConfigError
from ..storage import write_text

PROBE_SIZE = 256
MODEL_SEEDS = (0, 1, 2)
TABLE = Path(__file__).with_name("leakage.json")


def model_key(config: SFLConfig) -> str:
    """The options that decide a model's leakage: dataset, its sample shape, the model and its size."""
    from ..data import dataset_shape

    if config.model in LANGUAGE_MODELS:
        options = config.model_options
        return (f"{config.dataset}/context{dataset_shape(config)[0][0]}/{config.model}/{config.model_width:g}"
                f"/depth{options['depth']}/heads{options['heads']}")
    shape = "default" if config.image_shape is None else "x".join(map(str, config.image_shape))
    return f"{config.dataset}/{shape}/{config.model}/{config.model_width:g}"


@functools.lru_cache(maxsize=None)
def _table() -> dict[str, Any]:
    source = resources.files("sfl_env.calibration").joinpath("leakage.json")
    return json.loads(source.read_text()) if source.is_file() else {}


def leakage_table(config: SFLConfig) -> np.ndarray:
    """The recorded leakage of each cut of ``config``'s model; a ConfigError names how to record it."""
    entry = _table().get(model_key(config))
    if entry is None:
        raise ConfigError(
            f"leakage_budget needs the measured leakage of every cut of {model_key(config)}, which is not recorded; "
            "run python -m sfl_env.calibration.leakage with this preset, or leave leakage_budget=None"
        )
    return np.array(entry["leakage"])


def measure(config: SFLConfig) -> dict[str, Any]:
    from ..data import load_config_dataset
    from ..models import build_model
    from ..privacy import leakage_per_cut

    data = load_config_dataset(config)
    probe = data.x_test[:PROBE_SIZE]
    runs = [leakage_per_cut(build_model(config.model, data.input_shape, data.num_classes, **config.model_options,
                                        seed=seed), probe) for seed in MODEL_SEEDS]
    samples = "token windows, as one-hot bytes" if data.x_test.dtype == torch.int64 else "images"
    return {"leakage": np.mean(runs, axis=0).round(4).tolist(), "per_seed": np.round(runs, 4).tolist(),
            "probe": f"the first {PROBE_SIZE} test {samples}", "model_seeds": list(MODEL_SEEDS),
            "estimator": "bias-corrected distance correlation (Szekely and Rizzo 2013), initial weights"}


def main() -> None:
    from ..config import preset_options

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", required=True)
    parser.add_argument("--data-dir", help="for a file preset (mnist): the folder of its data")
    args = parser.parse_args()
    table = json.loads(TABLE.read_text()) if TABLE.is_file() else {}
    for preset in args.preset:
        options = {k: v for k, v in preset_options(preset).items() if k in SFLConfig.__dataclass_fields__}
        config = SFLConfig(**options, data_dir=args.data_dir if args.data_dir else None)
        table[model_key(config)] = measure(config)
        print(model_key(config), table[model_key(config)]["leakage"])
    write_text(TABLE, json.dumps(dict(sorted(table.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
