"""Everything a pilot imports, one module per concern; only ``keras`` imports Keras.

* ``context``: ``TrialContext`` (what ``run(params, ctx)`` is handed), ``PilotError``,
  ``UnknownParameterError``, ``TrialTimeout``.
* ``defaults``: the pilot's default model file and ``pilot_params(__file__, params)``.
* ``params``: parameter coercion and checks (``to_int``, ``to_float``, ``to_bool``,
  ``parse_int_list``, ``check_choice``, ``set_deadline``); standard library only.
* ``metrics``: ``macro_f1``, ``cross_entropy``, ``roc_auc``; numpy only.
* ``cache``: data prepared once per machine (``data_cache_dir``, ``prepare_once``, ``prepare_lock``).
* ``keras``: Keras callbacks (``callbacks_for``) and Keras-specific helpers; imports Keras.

This package imports none of them, so importing one light module never pulls in another.
"""
