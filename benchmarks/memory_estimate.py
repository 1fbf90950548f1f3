"""The memory estimate against the memory one real round takes, on the lm preset at several contexts.

For each context it builds SFLEnv-v0 (real training), resets it, plays one round at the deepest cut and
prints how much the process's peak resident memory grew during the round, next to
``sfl_env.memory``'s estimate (and its parts). Each context runs in its own process, so the peaks do not
mix.

    python benchmarks/memory_estimate.py [--contexts 128,256,512] [--num-test 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

ROUND = """
import json, resource, sys
import gymnasium as gym, torch
import sfl_env
from sfl_env.data import dataset_shape
from sfl_env.config import EnvConfig
from sfl_env.memory import estimate_training_memory
torch.set_num_threads(1)
options = json.loads(sys.argv[1])
system = EnvConfig.from_kwargs(**options).system
shape, classes = dataset_shape(system)
estimate = estimate_training_memory(system.model, shape, classes, system.model_options, system.num_clients,
                                    system.batch_size, system.optimizer)
env = gym.make("SFLEnv-v0", **options)
env.reset(seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
env.step(env.action_space.n - 1)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"grown": grown, "total": estimate.total, "activations": estimate.activations,
                  "parameters": estimate.parameters}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", default="128,256,512")
    parser.add_argument("--num-test", type=int, default=16)
    args = parser.parse_args()
    print("| context | estimate MB | saved activations MB | parameters MB | peak grew MB | grew / (activations + parameters) |")
    print("|---|---|---|---|---|---|")
    for context in (int(c) for c in args.contexts.split(",")):
        options = {"preset": "lm", "context_length": context, "num_test": args.num_test}
        done = subprocess.run([sys.executable, "-c", ROUND, json.dumps(options)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"| {context} | failed: {done.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {context} | {r['total'] / 1e6:.0f} | {r['activations'] / 1e6:.0f} | {r['parameters'] / 1e6:.0f} | "
              f"{r['grown'] / 1e6:.0f} | {r['grown'] / (r['activations'] + r['parameters']):.2f} |")


if __name__ == "__main__":
    main()
