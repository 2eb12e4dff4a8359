"""emews-py: hyperparameter search of Keras models on an MPI farm (README.md).

For notebooks: ``emews_py.trials(db, experiment)`` and ``emews_py.events(db, experiment)`` return
an experiment's trials and Keras events as pandas DataFrames (emews_py/data.py).
"""
# The submodule emews_py.trials (the status enums) is imported first, so that the function bound
# below is what `emews_py.trials` names; `from emews_py.trials import TrialStatus` still works.
from emews_py import trials as _trials_module  # noqa: F401
from emews_py.data import events, trials  # noqa: F401,E402

__all__ = ["trials", "events"]
