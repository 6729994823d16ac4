"""generators: models that generate network weights (tokenizer, autoencoders, priors, pipelines)."""
