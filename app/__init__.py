"""cinerec: the recommender platform of an online cinema."""
