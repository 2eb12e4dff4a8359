# Default search space of the drug pilot (tumor vs normal from expression, like CANDLE NT3), in
# CANDLE/Supervisor ParamHelpers style. The optimizer searches the untransformed values; the pilot
# receives the transformed ones (batch_size 8..32, learning_rate 1e-4..1e-1).
# conv is NT3's list of (filters, kernel length, stride) triples, one triple per convolution
# layer; dense lists the dense layer sizes. Sized for a small machine: a trial takes about
# 3-20 s on 2 cores (default data set bladderbatch, 2,000 most variable probes), so
# `make workflow PILOT=drug ALGO=mlrMBO` with a budget of 16-24 trials on 3 workers finishes in
# a few minutes. Parameter names are those of pilots/drug/drug_default_model.txt.
param.set <- makeParamSet(
  makeNumericParam("learning_rate", lower = -4, upper = -1, trafo = function(x) 10^x),
  makeIntegerParam("batch_size", lower = 3, upper = 5, trafo = function(x) 2L^x),
  makeIntegerParam("epochs", lower = 3, upper = 12),
  makeNumericParam("dropout", lower = 0, upper = 0.5),
  makeDiscreteParam("activation", values = c("relu", "elu", "tanh", "sigmoid")),
  makeDiscreteParam("loss", values = c("categorical_crossentropy", "mean_squared_error")),
  makeDiscreteParam("optimizer", values = c("adam", "sgd", "rmsprop")),
  makeDiscreteParam("conv", values = c("16,20,1,16,10,1", "32,20,1,32,10,1", "64,20,1,64,10,1",
                                       "32,10,1,32,5,1", "32,20,2,32,10,1", "32,20,5")),
  makeDiscreteParam("dense", values = c("200,20", "100,20", "500,50", "200", "50"))
)
