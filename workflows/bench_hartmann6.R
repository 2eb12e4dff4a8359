# Search space for the analytic bench pilot, Hartmann 6-D on [0, 1]^6.
# Global minimum -3.32237. The one-valued "function" parameter tells the pilot which function.
param.set <- makeParamSet(
  makeDiscreteParam("function", values = "hartmann6"),
  makeNumericParam("x1", lower = 0, upper = 1),
  makeNumericParam("x2", lower = 0, upper = 1),
  makeNumericParam("x3", lower = 0, upper = 1),
  makeNumericParam("x4", lower = 0, upper = 1),
  makeNumericParam("x5", lower = 0, upper = 1),
  makeNumericParam("x6", lower = 0, upper = 1)
)
