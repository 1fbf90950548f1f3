"""The envs pass Gymnasium's and SB3's checks with the newest gymnasium release too, not only with the
1.2.2 that RLlib pins (the suite's own environment when the rllib extra is installed).

``make test`` installs the newest release into ``.venv/gymnasium-latest``; the checks run in a
subprocess that puts that folder first on its path, next to the suite's torch and SB3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest

ROOT = Path(__file__).resolve().parents[1]
LATEST = Path(sys.prefix) / "gymnasium-latest"

CHECKS = """
import gymnasium, sys
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
import sfl_env, sfl_env.rllib
assert gymnasium.__file__.startswith(sys.argv[1]), gymnasium.__file__
fast = {"preset": "digits", "num_train": 200, "num_test": 100, "num_clients": 3, "local_iters": 1, "max_rounds": 5}
envs = [gymnasium.make("SFLEnvAnalytic-v0", preset="digits"), gymnasium.make("SFLEnv-v0", **fast),
        gymnasium.make("SFLEnvBudgetAnalytic-v0"), sfl_env.rllib.make_env("SFLEnvAnalytic-v0", {"preset": "digits"})]
for env in envs:
    check_env(env.unwrapped if not isinstance(env.observation_space, gymnasium.spaces.Dict) else env,
              skip_render_check=True)
    sb3_check_env(env, warn=False)
print(gymnasium.__version__)
"""


@pytest.mark.slow
@pytest.mark.skipif(not (LATEST / "gymnasium").is_dir(), reason=f"no newest gymnasium in {LATEST} (make test puts it)")
def test_gymnasium_and_sb3_checks_pass_with_the_newest_gymnasium_release():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(LATEST), str(ROOT)]))
    result = subprocess.run([sys.executable, "-c", CHECKS, str(LATEST)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    newest = result.stdout.split()[-1]
    assert tuple(map(int, newest.split(".")[:2])) >= (1, 2)
    print(f"checked with gymnasium {newest} (the suite runs {gymnasium.__version__})")
