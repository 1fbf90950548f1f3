"""The benchmark harness: how agents are played, measured, compared and reported on SFL-Env.

``evaluate.py`` and ``train_agent.py`` are thin command lines on top of it; ``agents`` (the agent
protocol, algorithms, baselines and registry) and ``sfl_env`` know nothing of it. Imports go one way:
``solvers`` <- ``sfl_env`` <- ``agents`` <- ``evaluation`` <- the scripts.

Modules:
  rollout      play an agent for whole episodes (``run_episode``, ``play_episodes``) and record what a
               benchmark reports about each one (``Episode``); the test and validation seeds
  stats        IQM, stratified-bootstrap confidence intervals, probability of improvement, paired
               differences, and the normalised score (R - R_random) / (R_ref - R_random), the
               reference being the planner (or the oracle), with its tie rule
  protocol     the modes (agents, schemes, cuts, all), the env seed of every episode, and which agents,
               schemes and cuts run on which env (``Entry``, ``plan_mode``)
  results      results.csv and traces.jsonl: playing a mode's entries into them, reading them back,
               resuming without replaying finished rows
  leaderboard  per-agent aggregates of results.csv and leaderboard.md
  claims       the paper's claims and their verdicts (claims.md)
  figures      PNG figures of evaluation episodes (accuracy, latency, traffic, cuts, the cut sweep)
  benchmark    the whole run: every mode's results, leaderboard and figures, then claims.md
  compare      ``python -m evaluation.compare``: one episode of several agents side by side
  tracking     run logs of train_agent.py (metrics.jsonl, CSVs), versions and hardware, the optional
               Weights & Biases mirror (the only module that imports wandb, lazily)

Importing the package imports none of its modules; import the one you need.
"""
