# Search space for the analytic bench pilot, mixed function (docs: DESIGN.md):
#   (x1 - 0.3)^2 + (x2 + 0.1)^2 + 0.05 * (n - 7)^2 + {a: 0, b: 0.3, c: 0.6, d: 1.0}[cat]
# Global minimum 0 at x1 = 0.3, x2 = -0.1, n = 7, cat = "a".
param.set <- makeParamSet(
  makeDiscreteParam("function", values = "mixed"),
  makeNumericParam("x1", lower = -1, upper = 1),
  makeNumericParam("x2", lower = -1, upper = 1),
  makeIntegerParam("n", lower = 1L, upper = 20L),
  makeDiscreteParam("cat", values = c("a", "b", "c", "d"))
)
