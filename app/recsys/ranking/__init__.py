"""The two-level model: first-level candidates (candidates), features (features), a LambdaRank ranker
(ranker), the model and its retrain stage (twolevel, stage), request-time ranking (online)."""
