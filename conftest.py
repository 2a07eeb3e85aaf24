"""Root pytest configuration: keep Sphinx's conf.py out of doctest collection."""

collect_ignore = ["docs/conf.py", "docs/_build"]
