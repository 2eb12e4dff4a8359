# Default search space of the ras pilot (membrane autoencoder, like CANDLE P2B1), in
# CANDLE/Supervisor ParamHelpers style. The optimizer searches the untransformed values; the pilot
# receives the transformed ones (batch_size 16..128, learning_rate 1e-4..1e-2).
# Layer lists are discrete choices written as strings ("256,64,16"): values stay JSON-representable
# and the pilot parses them into lists (it also accepts "256 64 16", "[256, 64, 16]" or a list).
# conv_features: filters of the convolution layers (the first works per bead, the second per
# molecule); "" means no convolutions, as does conv_bool = FALSE.
# Sized for a small machine: a trial takes about 5-30 s on 2 cores.
# Parameter names are those of pilots/ras/ras_default_model.txt.
param.set <- makeParamSet(
  makeIntegerParam("batch_size", lower = 4, upper = 7, trafo = function(x) 2L^x),
  makeNumericParam("learning_rate", lower = -4, upper = -2, trafo = function(x) 10^x),
  makeIntegerParam("epochs", lower = 3, upper = 10),
  makeLogicalParam("conv_bool"),
  makeDiscreteParam("conv_features", values = c("32,16", "16,8", "64,32", "32", "64")),
  makeDiscreteParam("dense", values = c("256,64,16", "512,128,32", "128,32", "256,128,64,16",
                                        "512,64")),
  makeIntegerParam("molecular_nbrs", lower = 2, upper = 10),
  makeDiscreteParam("activation", values = c("relu", "elu", "tanh")),
  makeDiscreteParam("optimizer", values = c("adam", "rmsprop", "sgd")),
  makeNumericParam("dropout", lower = 0, upper = 0.3),
  makeNumericParam("noise_factor", lower = 0, upper = 0.2)
)
