# Search space for the analytic bench pilot, Branin (the pilot's default function).
# Global minimum 0.397887 at (-pi, 12.275), (pi, 2.275), (9.42478, 2.475).
param.set <- makeParamSet(
  makeNumericParam("x1", lower = -5, upper = 10),
  makeNumericParam("x2", lower = 0, upper = 15)
)
