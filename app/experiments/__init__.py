"""Online experiments: two published model versions compared on the same days.

- `model`: the experiment as a value object (arms, share, metrics, plan, state).
- `assignment`: a user's arm, the same in every process, in SQL and in numpy.
- `stats`: pure statistics (intervals, sample-ratio check, sample size).
- `verdict`: the verdict from the figures, and what the rollout policy does with it.
- `queries` / `analysis`: per-user figures from ClickHouse, per-arm metrics and comparisons.
- `store`: experiments and decisions in ClickHouse, the running one mirrored to Redis.

Design and definitions: docs/experiments.md.
"""
