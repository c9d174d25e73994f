"""Offline evaluation: holdout splits, top-K metrics, paired comparisons and the publish gate."""
