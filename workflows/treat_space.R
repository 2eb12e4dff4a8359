# Default search space of the treat pilot (multi-task DNN, like CANDLE P3B1), in CANDLE/Supervisor
# ParamHelpers style. The optimizer searches the untransformed values; the pilot receives the
# transformed ones (batch_size 8..64, learning_rate 1e-4..1e-1, layer widths powers of two).
# Sized for a small machine: a trial takes about 3-20 s on 2 cores, so `make workflow PILOT=treat
# ALGO=mlrMBO` with a budget of 16-24 trials on 3 workers finishes in a few minutes.
# Parameter names are those of pilots/treat/treat_default_model.txt.
param.set <- makeParamSet(
  makeNumericParam("learning_rate", lower = -4, upper = -1, trafo = function(x) 10^x),
  makeIntegerParam("batch_size", lower = 3, upper = 6, trafo = function(x) 2L^x),
  makeIntegerParam("epochs", lower = 3, upper = 12),
  makeNumericParam("dropout", lower = 0, upper = 0.6),
  makeDiscreteParam("activation", values = c("relu", "elu", "tanh", "sigmoid")),
  makeDiscreteParam("loss", values = c("categorical_crossentropy", "categorical_focal_crossentropy",
                                       "mean_squared_error")),
  makeDiscreteParam("optimizer", values = c("adam", "sgd", "rmsprop", "adagrad")),
  makeIntegerParam("n_fold", lower = 1, upper = 2),
  # neurons in the shared layer (64..512) and in each task-specific layer (16..256)
  makeIntegerParam("shared_nnet_spec", lower = 6, upper = 9, trafo = function(x) 2L^x),
  makeIntegerParam("ind_nnet_spec", lower = 4, upper = 8, trafo = function(x) 2L^x)
)
