"""Self-tuning: each retrain searches the weighting and the models' main parameters on a
validation split carved from its own training part (docs/models.md "Self-tuning")."""
