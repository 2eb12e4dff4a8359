# An example search space written the way CANDLE/Supervisor writes them (e.g. the NT3 and P1B1
# workflows): ParamHelpers parameters with trafos, string and number discretes, and a logical.
# The optimizer searches the untransformed values; the pilot receives the transformed ones:
#   batch_size = 2^5 .. 2^10 (integer), learning_rate = 10^-5 .. 10^-1.
# Note: this example uses hyperparameter names of a Keras model, not of the bench pilot.
param.set <- makeParamSet(
  makeIntegerParam("batch_size", lower = 5, upper = 10, trafo = function(x) 2L^x),
  makeNumericParam("learning_rate", lower = -5, upper = -1, trafo = function(x) 10^x),
  makeNumericParam("dropout", lower = 0, upper = 0.9),
  makeIntegerParam("epochs", lower = 2, upper = 20),
  makeDiscreteParam("activation", values = c("relu", "elu", "sigmoid", "tanh")),
  makeDiscreteParam("optimizer", values = c("adam", "sgd", "rmsprop")),
  makeDiscreteParam("dense", values = c(64, 128, 256, 512)),
  makeLogicalParam("batch_normalization")
)
