"""Parts of the traffic simulator (`app.simulate` is the entry point)."""
