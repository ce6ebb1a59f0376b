"""What only the tests use: their harness, the checks they share, and the models of
the infrastructure (the Bicep checker and evaluator, the ARM stand-in, the broker
model) that the infra tests run against."""
