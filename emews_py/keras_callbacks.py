"""Deprecated: use ``emews_py.pilotkit.keras`` (callbacks, Keras helpers), ``emews_py.pilotkit.params``
(parameter coercion) and ``emews_py.pilotkit.metrics`` (metrics) instead.

Kept so that user pilots written against this module keep working unchanged; every name it had is
re-exported. Importing it imports Keras, as it always did, and warns once (DeprecationWarning).
``check_choice`` here is the old Keras-name check, ``pilotkit.keras.check_keras_name``
(``pilotkit.params.check_choice`` checks a value against a list of choices instead).
"""
from __future__ import annotations

import warnings

from emews_py.pilotkit.keras import (KERAS_IMPORT_SECONDS, OPTIMIZERS as _OPTIMIZERS,  # noqa: F401
                                     StoreCallback, TimeLimit, callbacks_for, configure_threads,
                                     keras, log_import, make_optimizer, predict_np,
                                     start_classifier_trial)
from emews_py.pilotkit.keras import check_keras_name as check_choice  # noqa: F401
from emews_py.pilotkit.metrics import cross_entropy, macro_f1  # noqa: F401
from emews_py.pilotkit.params import parse_int_list, set_deadline, to_float, to_int  # noqa: F401

warnings.warn("emews_py.keras_callbacks is deprecated; import from emews_py.pilotkit.keras, "
              "emews_py.pilotkit.params and emews_py.pilotkit.metrics", DeprecationWarning,
              stacklevel=2)
