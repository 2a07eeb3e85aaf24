"""The application: command line, TOML configurations, run folders, shipped models, the demo,
the Ising and image evaluations, reports and figures.

It uses the library (:mod:`lineardiff`, :mod:`lineardiff.training`, :mod:`lineardiff.metrics`,
:mod:`lineardiff.data`) and nothing in the library uses it. Import its modules directly, e.g.
``from lineardiff.app.cli import main``; shipped models load through
:mod:`lineardiff.pretrained`.
"""
