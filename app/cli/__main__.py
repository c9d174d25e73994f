"""`python -m app.cli` (and `spark-submit app/cli/__main__.py ...`, which needs a .py file): the cinerec CLI."""
from app.cli import main

main()
