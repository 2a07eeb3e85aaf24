"""Sphinx configuration for lineardiff."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "lineardiff"
author = "the lineardiff developers"
copyright = "2026, the lineardiff developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# No intersphinx: the docs build offline (CI has no network) and -W turns a failed
# inventory fetch into an error.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options: dict = {}
nitpicky = False

html_theme = "furo"
html_title = "lineardiff"
exclude_patterns = ["_build"]
